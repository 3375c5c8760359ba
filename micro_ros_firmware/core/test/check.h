/* CHECK for the C unit tests: counts failures and names the line, never stops the test. */
#ifndef TINYCL_TEST_CHECK_H
#define TINYCL_TEST_CHECK_H
#include <stdio.h>

static int failures = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)
#endif
