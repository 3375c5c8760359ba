/* Minimal Cortex-M7 start-up for the benchmark image: vector table, .data/.bss set-up, FPU on,
 * semihosting output and exit (QEMU: -semihosting-config enable=on,target=native). */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
int main(void);

static long semihost(long op, const void *arg) {
    register long r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_puts(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */

void sh_exit(int code) {
    const uint32_t args[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit */
    semihost(0x20, args);                                 /* SYS_EXIT_EXTENDED */
    semihost(0x18, (const void *)0x20026u);               /* SYS_EXIT fallback */
    for (;;) {}
}

void Reset_Handler(void) {
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) *dst++ = *src++;
    for (dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10, CP11 full access: the FPU */
    __asm__ volatile("dsb\n isb" ::: "memory");
    sh_exit(main());
}

static void Fault_Handler(void) {
    sh_puts("FAULT\n");
    sh_exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_stack_top), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
