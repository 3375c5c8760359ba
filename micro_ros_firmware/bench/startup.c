/* Minimal Cortex-M7 start-up for the benchmark image: vector table, .data/.bss set-up, FPU on,
 * semihosting output and exit (QEMU: -semihosting-config enable=on,target=native). */
#include <stdint.h>

#include "mps2_an500_start.h"
#include "semihost.h"

int main(void);

void sh_puts(const char *s) { mps2_semihost(0x04, s); } /* SYS_WRITE0 */

void sh_exit(int code) { mps2_exit(code); }

void Reset_Handler(void);
void Reset_Handler(void) {
    mps2_init_memory_fpu();
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
