/* Shared by the benchmark images (bench_main.c, bench_latent.c): stage markers, the calibration
 * spin loop and decimal output without printf. */
#ifndef TINYCL_BENCH_UTIL_H
#define TINYCL_BENCH_UTIL_H
#include <stdint.h>

/* One marker per stage; distinct bodies so the linker never folds them together. */
static volatile uint32_t g_stage;
#define MARK(k, name) __attribute__((noinline, used)) void bench_mark_##name(void) { g_stage = k; }

/* exactly 2·n + constant instructions: subs + bne per iteration */
__attribute__((noinline)) static void spin(uint32_t n) {
    __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
}

/* Calibration of the counts (needs markers other, calib_a, calib_b): the two runs differ by exactly
 * 2·(101000 − 1000) instructions (tools/bench_firmware.py CALIB). */
#define BENCH_CALIBRATE()       \
    do {                        \
        bench_mark_other();     \
        bench_mark_calib_a();   \
        spin(1000);             \
        bench_mark_other();     \
        bench_mark_calib_b();   \
        spin(101000);           \
        bench_mark_other();     \
    } while (0)

static char *put_u(char *p, uint32_t v) {
    char tmp[11];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static char *put_i(char *p, int32_t v) {
    if (v < 0) { *p++ = '-'; return put_u(p, (uint32_t)(-(v + 1)) + 1u); }
    return put_u(p, (uint32_t)v);
}
#endif
