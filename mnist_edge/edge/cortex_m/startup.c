/* startup.c: the smallest Cortex-M start: vector table, .data copied from flash, .bss zeroed, the FPU
   (and on Armv8.1-M the vector extension) switched on, then main(); its return value ends the
   emulation through semihosting. Any fault ends it with status 127. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[], __stack_top[];
int main(void);
void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((section(".vectors"), used))
void (*const vector_table[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0,  /* NMI..UsageFault */
    Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,  /* SVC, DebugMon, PendSV, SysTick */
};

void Fault_Handler(void)
{
    sh_puts("fault\n");
    sh_exit(127);
}

void Reset_Handler(void)
{
    uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end) *dst++ = *src++;
    for (dst = __bss_start; dst < __bss_end; ) *dst++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;  /* CPACR: full access to CP10 and CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    sh_exit(main());
}
