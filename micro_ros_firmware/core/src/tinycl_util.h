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
#endif
