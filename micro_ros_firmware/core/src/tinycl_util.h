/* Helpers shared by the core's translation units (not part of the public API in tinycl.h). */
#ifndef TINYCL_UTIL_H
#define TINYCL_UTIL_H
#include <float.h>

#include "tinycl.h"

/* 1 when x is non-NULL and all TINYCL_N_FEATURES values are finite (no NaN, no ±inf). */
static inline int tinycl_finite_vec(const float *x) {
    if (!x) return 0;
    for (int i = 0; i < TINYCL_N_FEATURES; i++)
        if (!(x[i] == x[i]) || x[i] > FLT_MAX || x[i] < -FLT_MAX) return 0;
    return 1;
}

/* A count that stops at UINT32_MAX rather than wrap to 0: a blob may hold any u32 (a count of 2^32 − 1 then divided
 * by zero, or made a learned head "untrained" again); Python's counts, unbounded, reach that value only after
 * billions of samples. */
static inline uint32_t tinycl_sat_inc(uint32_t v) { return v == UINT32_MAX ? v : v + 1u; }
static inline uint32_t tinycl_sat_add(uint32_t a, uint32_t b) { return a > UINT32_MAX - b ? UINT32_MAX : a + b; }
#endif
