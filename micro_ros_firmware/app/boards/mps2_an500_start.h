/* QEMU mps2-an500 start-up pieces shared by the micro-ROS firmware (boards/mps2_an500.c) and the
 * benchmark image (bench/startup.c): semihosting calls and the memory + FPU set-up of the reset handler. */
#ifndef TINYCL_MPS2_AN500_START_H
#define TINYCL_MPS2_AN500_START_H
#include <stdint.h>

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;

static inline long mps2_semihost(long op, const void *arg) {
    register long r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit, SYS_EXIT as a fallback */
static inline void mps2_exit(int code) {
    const uint32_t args[2] = {0x20026u, (uint32_t)code};
    mps2_semihost(0x20, args);
    mps2_semihost(0x18, (const void *)0x20026u);
    for (;;) {}
}

/* .data from flash, .bss zeroed, CP10/CP11 (the FPU) enabled before any hard-float code */
static inline void mps2_init_memory_fpu(void) {
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) *dst++ = *src++;
    for (dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
}
#endif
