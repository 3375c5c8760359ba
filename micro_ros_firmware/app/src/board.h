/* What the app needs from a board: one implementation per board (app/boards/<board>.c or .cpp).
 * The app (main.c) is the same on every board; nothing board-specific lives in it. */
#ifndef TINYCL_BOARD_H
#define TINYCL_BOARD_H
#include <stdint.h>

/** Registers the micro-ROS transport of the board (rmw_uros_set_custom_transport, XRCE framing on a
 *  serial line). Returns 0 on success. */
int board_transport_init(void);
/** Milliseconds since start (monotonic, wraps after 49 days). */
uint32_t board_millis(void);
/** The next 28×28 mono8 frame of the sensor: 1 = a frame is in pixels, 0 = none yet (not due),
 *  -1 = the stream has ended (a replayed dataset; a camera never ends). */
int board_next_frame(uint8_t *pixels);
/** One line for a person (no newline needed): semihosting on the emulator, SWO/ITM or nothing on a board. */
void board_log(const char *line);
/** The app has nothing left to do (the replayed stream ended and was flushed); code is the exit status. */
void board_finish(int code);
#endif
