/* Board layer of the emulated board: QEMU mps2-an500 (Arm MPS2 + AN500 Cortex-M7 image, 25 MHz).
 *
 *  - vector table and reset: .data/.bss set-up, FPU on (CPACR) before any hard-float code;
 *  - clock: SysTick at 1 kHz (25,000 cycles of the 25 MHz processor clock) → board_millis() and the
 *    clock_gettime() that rcutils and the XRCE client call (the library is built with CLOCK_MONOTONIC=0);
 *  - transport: the CMSDK APB UART0 (0x40004000, polled) as micro-ROS custom serial transport with XRCE
 *    framing; QEMU connects it to its first -serial backend (a host pty for MicroXRCEAgent serial);
 *  - sensor: frames of a real dataset stream (generated tinycl_stream.c: MNIST test images in a seeded
 *    order), one every TINYCL_FRAME_PERIOD_MS;
 *  - console: semihosting (SYS_WRITE0), exit through SYS_EXIT_EXTENDED;
 *  - identity: the FPGA image's id from the SCC's SCC_ID register (no unique id on an MPS2, emulated or not);
 *  - storage: the learner's state in a host file (semihosting file calls; TINYCL_STATE_FILE, an absolute path set
 *    by CMake), written to TINYCL_STATE_FILE.tmp and renamed over it (host rename: the switch is atomic).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rmw_microros/rmw_microros.h>
#include <uxr/client/profile/transport/custom/custom_transport.h>

#include "board.h"
#include "mps2_an500_start.h"

#ifndef TINYCL_FRAME_PERIOD_MS
#define TINYCL_FRAME_PERIOD_MS 100u
#endif
#define SYSCLK_HZ 25000000u

extern const uint32_t tinycl_stream_n;    /* tinycl_stream.c (generated) */
extern const uint8_t tinycl_stream_images[];

/* ------------------------------------------------------------------------------ semihosting */
void board_log(const char *line) {
    mps2_semihost(0x04, line); /* SYS_WRITE0 */
    mps2_semihost(0x04, "\n");
}

void board_finish(int code) { mps2_exit(code); }

/* ------------------------------------------------------------------------------ identity */
/* An MPS2 has no unique id (every board with the AN500 image is the same to its software, and so is every QEMU
 * instance). What identifies it is the board and the FPGA image, and that is read from the hardware: the Serial
 * Communication Controller (0x4002F000) holds the image's id in SCC_ID (offset 0xFFC; 0x41045000 for AN500:
 * implementer 0x41 Arm, image 0x500), so a firmware run on another image or machine says so in its hardware_id. */
#define SCC_ID (*(volatile uint32_t *)0x4002FFFCu)

const char *board_id(void) {
    static char id[32];
    if (!id[0]) snprintf(id, sizeof id, "mps2-an500 scc-id 0x%08lx", (unsigned long)SCC_ID);
    return id;
}

/* ------------------------------------------------------------------------------ storage: semihosting files */
#ifndef TINYCL_STATE_FILE
#define TINYCL_STATE_FILE "tinycl_state.bin"
#endif
#define SH_OPEN 0x01
#define SH_CLOSE 0x02
#define SH_WRITE 0x05
#define SH_READ 0x06
#define SH_SEEK 0x0A
#define SH_FLEN 0x0C
#define SH_REMOVE 0x0E
#define SH_RENAME 0x0F
#define SH_MODE_RB 1u
#define SH_MODE_WB 5u
static const char k_state[] = TINYCL_STATE_FILE, k_state_tmp[] = TINYCL_STATE_FILE ".tmp";
static long g_wr = -1, g_rd = -1;
static int g_wr_failed;

static long sh_open(const char *name, uint32_t len, uint32_t mode) {
    const uint32_t a[3] = {(uint32_t)name, mode, len};
    return mps2_semihost(SH_OPEN, a);
}

static void sh_close(long *fd) {
    if (*fd < 0) return;
    const uint32_t a[1] = {(uint32_t)*fd};
    mps2_semihost(SH_CLOSE, a);
    *fd = -1;
}

int board_state_open_write(void) {
    sh_close(&g_wr);
    g_wr = sh_open(k_state_tmp, sizeof k_state_tmp - 1u, SH_MODE_WB);
    g_wr_failed = g_wr < 0;
    return g_wr < 0 ? -1 : 0;
}

int board_state_write(const uint8_t *data, uint32_t n) {
    const uint32_t a[3] = {(uint32_t)g_wr, (uint32_t)data, n};
    if (g_wr < 0 || mps2_semihost(SH_WRITE, a) != 0) g_wr_failed = 1; /* returns the bytes not written */
    return g_wr_failed ? -1 : 0;
}

int board_state_commit(int keep) {
    const int ok = g_wr >= 0 && !g_wr_failed && keep;
    sh_close(&g_wr);
    const uint32_t a[4] = {(uint32_t)k_state_tmp, sizeof k_state_tmp - 1u, (uint32_t)k_state, sizeof k_state - 1u};
    if (ok && mps2_semihost(SH_RENAME, a) == 0) return 0;
    mps2_semihost(SH_REMOVE, a); /* dropped, or the rename failed (e.g. a directory at TINYCL_STATE_FILE): no .tmp left */
    return -1;
}

long board_state_open_read(void) {
    sh_close(&g_rd);
    g_rd = sh_open(k_state, sizeof k_state - 1u, SH_MODE_RB);
    if (g_rd < 0) return -1;
    const uint32_t a[1] = {(uint32_t)g_rd};
    const long len = mps2_semihost(SH_FLEN, a);
    if (len < 0) sh_close(&g_rd);
    return len;
}

uint32_t board_state_read(uint32_t offset, uint8_t *dst, uint32_t n) {
    const uint32_t s[2] = {(uint32_t)g_rd, offset}, a[3] = {(uint32_t)g_rd, (uint32_t)dst, n};
    if (g_rd < 0 || mps2_semihost(SH_SEEK, s) != 0) return 0;
    const long left = mps2_semihost(SH_READ, a); /* the bytes not read */
    return left < 0 || (uint32_t)left > n ? 0u : n - (uint32_t)left;
}

void board_state_close(void) { sh_close(&g_rd); }

int board_state_set_aside(void) {
    static const char k_bad[] = TINYCL_STATE_FILE ".bad";
    const uint32_t a[4] = {(uint32_t)k_state, sizeof k_state - 1u, (uint32_t)k_bad, sizeof k_bad - 1u};
    sh_close(&g_rd);
    return mps2_semihost(SH_RENAME, a) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------ SysTick clock */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26) /* the SysTick exception is pending */
#define SYST_RELOAD (SYSCLK_HZ / 1000u - 1u)
static volatile uint32_t g_ms;

static void SysTick_Handler(void) { g_ms++; }

uint32_t board_millis(void) { return g_ms; }

/* Monotonic time from the millisecond count and the SysTick counter within the millisecond. The counter
 * reloads before its tick's exception has run (QEMU takes it at the end of the current translation block, or
 * later when the host deschedules the vCPU; a chip, while interrupts are masked), so the new millisecond's count
 * can pair with the old millisecond: a read up to 1 ms back in time. The XRCE client stamps each received
 * message with this clock and rmw_microxrcedds discards a buffered message stamped after "now" just before
 * taking it (rmw_uxrce_clean_expired_static_input_buffer): the take then fails (RCL_RET_ERROR) and the message
 * is lost. So a pending tick whose counter has reloaded is counted, and no read is earlier than the last one (a
 * vCPU descheduled for more than a tick). Only the main loop reads the clock (no interrupt handler does). */
int clock_gettime(clockid_t clk, struct timespec *tp) {
    static uint64_t last_ns;
    static uint32_t last_ms, wraps; /* g_ms wraps after 49.7 days */
    (void)clk;
    if (!tp) { errno = EINVAL; return -1; }
    uint32_t ms, cvr, pending;
    do { /* a tick between the reads would pair a new count with an old millisecond */
        ms = g_ms;
        cvr = SYST_CVR;
        pending = SCB_ICSR & ICSR_PENDSTSET;
    } while (ms != g_ms);
    if (pending && cvr > SYST_RELOAD / 2u) ms++; /* reloaded, its tick not counted yet */
    if (ms < last_ms) wraps++;
    last_ms = ms;
    uint64_t ns = (((uint64_t)wraps << 32) | ms) * 1000000u + (uint64_t)(SYST_RELOAD - cvr) * (1000000000u / SYSCLK_HZ);
    if (ns < last_ns) ns = last_ns;
    last_ns = ns;
    tp->tv_sec = (time_t)(ns / 1000000000u);
    tp->tv_nsec = (long)(ns % 1000000000u);
    return 0;
}

/* ------------------------------------------------------------------------------ UART0 transport */
#define UART0_DATA (*(volatile uint32_t *)0x40004000u)
#define UART0_STATE (*(volatile uint32_t *)0x40004004u)
#define UART0_CTRL (*(volatile uint32_t *)0x40004008u)
#define UART0_BAUDDIV (*(volatile uint32_t *)0x40004010u)
#define UART_TX_FULL 1u
#define UART_RX_FULL 2u

static bool uart_open(struct uxrCustomTransport *t) {
    (void)t;
    UART0_BAUDDIV = SYSCLK_HZ / 115200u;
    UART0_CTRL = 3u; /* TX and RX enabled */
    return true;
}

static bool uart_close(struct uxrCustomTransport *t) {
    (void)t;
    return true;
}

#define UART_TX_TIMEOUT_MS 20u

static size_t uart_write(struct uxrCustomTransport *t, const uint8_t *buf, size_t len, uint8_t *err) {
    (void)t;
    const uint32_t t0 = g_ms;
    for (size_t i = 0; i < len; i++) {
        while (UART0_STATE & UART_TX_FULL) {
            /* nobody reads the line (QEMU holds TX full while no agent has the pty open): give up, as a
             * real UART would transmit into the void; XRCE's reliable stream resends, the ping notices */
            if (g_ms - t0 > UART_TX_TIMEOUT_MS) {
                *err = 1;
                return i;
            }
        }
        UART0_DATA = buf[i];
    }
    return len;
}

static size_t uart_read(struct uxrCustomTransport *t, uint8_t *buf, size_t len, int timeout_ms, uint8_t *err) {
    (void)t;
    (void)err;
    const uint32_t t0 = g_ms;
    size_t n = 0;
    while (n < len) {
        if (UART0_STATE & UART_RX_FULL) {
            buf[n++] = (uint8_t)UART0_DATA;
        } else if (n > 0 || (int32_t)(g_ms - t0) >= timeout_ms) {
            break; /* return what has arrived; wait only while nothing has */
        }
    }
    return n;
}

int board_transport_init(void) {
    return rmw_uros_set_custom_transport(true, NULL, uart_open, uart_close, uart_write, uart_read) == RMW_RET_OK ? 0 : 1;
}

/* ------------------------------------------------------------------------------ sensor: dataset stream */
int board_next_frame(uint8_t *pixels) {
    static uint32_t next_i, due_ms;
    if (next_i >= tinycl_stream_n) return -1;
    if ((int32_t)(g_ms - due_ms) < 0) return 0;
    memcpy(pixels, tinycl_stream_images + (size_t)next_i * 28u * 28u, 28u * 28u);
    next_i++;
    due_ms = g_ms + TINYCL_FRAME_PERIOD_MS;
    return 1;
}

/* ------------------------------------------------------------------------------ start-up */
void setup(void);
void loop(void);

void __libc_init_array(void);
void _init(void);
void _init(void) {} /* called by __libc_init_array; nothing to do without crt0 */
void Reset_Handler(void);
void Reset_Handler(void) {
    mps2_init_memory_fpu();
    __libc_init_array(); /* C++ static initialisers: micro-ROS's typesupport dispatch tables */
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    setup();
    for (;;) loop();
}

static void Fault_Handler(void) {
    board_log("board: FAULT");
    board_finish(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_stack_top), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler,
};
