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
/** This board's identity, the hardware_id of its status on /diagnostics: a unique id the chip gives where it has one
 *  (STM32: its 96-bit unique id), else what names the board and how that was found. A NUL-terminated string that
 *  stays valid and does not change while the board runs; the app keeps at most its first 47 characters. */
const char *board_id(void);
/* Non-volatile storage of the learner's state (one blob, written as a stream). open_write starts a new copy
 * beside the saved one; commit(1) replaces the saved one by it in one step (a reset mid-write keeps the last
 * saved state; a commit that fails drops the new copy too), commit(0) drops it. All return 0 on success;
 * open_write returns BOARD_NO_STORAGE where the board has none at all (not a failure: the app says so once).
 * open_read returns the saved blob's size (−1: none), read copies up to n bytes at offset and returns how many. */
#define BOARD_NO_STORAGE (-2)
int board_state_open_write(void);
int board_state_write(const uint8_t *data, uint32_t n);
int board_state_commit(int keep);
long board_state_open_read(void);
uint32_t board_state_read(uint32_t offset, uint8_t *dst, uint32_t n);
void board_state_close(void);
/** Keep the saved blob aside (the app refused it: damaged, or another build's), so that the next save does not
 *  overwrite it and a person can still look at it; 0 on success (mps2-an500: renamed to TINYCL_STATE_FILE.bad,
 *  replacing an older one). */
int board_state_set_aside(void);
/** The app has nothing left to do (the replayed stream ended and was flushed); code is the exit status. */
void board_finish(int code);
#endif
