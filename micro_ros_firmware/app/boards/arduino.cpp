// Board layer for boards built with PlatformIO + micro_ros_platformio (framework arduino): the same
// app (src/main.c) as the emulated board, with the Arduino serial port as micro-ROS transport.
//  - transport: micro_ros_platformio's set_microros_serial_transports(Stream &) is a static inline C++
//    function, so this C++ file calls it for the C app (XRCE framing over Serial, 115200 baud);
//  - clock: Arduino millis() (the framework provides clock_gettime for micro-ROS);
//  - sensor: the replayed dataset stream generated into tinycl_stream.c (a camera driver would go here);
//  - console: none (Serial carries the XRCE stream; a log on it would corrupt the framing);
//  - identity: the STM32's 96-bit unique id (UID_BASE of the CMSIS device header: stm32duino's Arduino.h includes
//    it; elsewhere stm32h7xx.h where the core has it, as mbed's Portenta core should: not checked on one); a platform
//    without UID_BASE says so (below);
//  - storage: none yet (below): the learned state is not kept across a reset on these boards.
#include <Arduino.h>
#include <micro_ros_platformio.h>
#include <stdio.h>
#include <string.h>

#if !defined(UID_BASE) && defined(__has_include)
#if __has_include("stm32h7xx.h")
#include "stm32h7xx.h"  // the device header, where Arduino.h did not bring it (UID_BASE)
#endif
#endif

extern "C" {
#include "board.h"
extern const uint32_t tinycl_stream_n;
extern const uint8_t tinycl_stream_images[];
}

#ifndef TINYCL_FRAME_PERIOD_MS
#define TINYCL_FRAME_PERIOD_MS 100u
#endif

extern "C" int board_transport_init(void) {
    Serial.begin(115200);
    set_microros_serial_transports(Serial);
    return 0;
}

extern "C" uint32_t board_millis(void) { return millis(); }

extern "C" int board_next_frame(uint8_t *pixels) {
    static uint32_t next_i, due_ms;
    if (next_i >= tinycl_stream_n) return -1;
    if ((int32_t)(millis() - due_ms) < 0) return 0;
    memcpy(pixels, tinycl_stream_images + (size_t)next_i * 28u * 28u, 28u * 28u);
    next_i++;
    due_ms = millis() + TINYCL_FRAME_PERIOD_MS;
    return 1;
}

extern "C" void board_log(const char *line) { (void)line; }

// The hardware_id on /diagnostics. STM32 chips carry a 96-bit unique id, written at manufacture (wafer position,
// wafer and lot number) in three read-only words at UID_BASE (STM32H7: 0x1FF1E800), printed here in address order.
// UID_BASE comes with the device header Arduino.h includes on STM32 cores; another platform has no such id that this
// file knows how to read, and its id says exactly that rather than a made-up one.
extern "C" const char *board_id(void) {
#if defined(UID_BASE)
    static char id[40];
    if (!id[0]) {
        const volatile uint32_t *uid = reinterpret_cast<const volatile uint32_t *>(UID_BASE);
        snprintf(id, sizeof id, "stm32-uid-%08lx%08lx%08lx", static_cast<unsigned long>(uid[0]),
                 static_cast<unsigned long>(uid[1]), static_cast<unsigned long>(uid[2]));
    }
    return id;
#else
    return "arduino (no unique id known on this platform)";
#endif
}

/* No state storage on these boards yet (a flash page with wear levelling per board): the app logs that its state
 * is not saved and starts from its initial labelled samples after a reset. */
extern "C" int board_state_open_write(void) { return BOARD_NO_STORAGE; }
extern "C" int board_state_write(const uint8_t *data, uint32_t n) { (void)data; (void)n; return -1; }
extern "C" int board_state_commit(int keep) { (void)keep; return -1; }
extern "C" long board_state_open_read(void) { return -1; }
extern "C" uint32_t board_state_read(uint32_t offset, uint8_t *dst, uint32_t n) { (void)offset; (void)dst; (void)n; return 0; }
extern "C" void board_state_close(void) {}
extern "C" int board_state_set_aside(void) { return -1; }

extern "C" void board_finish(int code) {
    (void)code;
    for (;;) delay(1000);  // a board keeps its learned state; nothing more to replay
}
