/* runner.c: the firmware mnist-edge's Cortex-M runtime builds around a generated C model.

   Reads normalised float32 images from the host file "in.bin" (semihosting), classifies each with
   mnist_edge_predict_normalized and appends to "out.bin": its logits and the SysTick readings taken
   before the call, after every layer (the model's MNIST_EDGE_MARK hook) and after the call. SysTick
   runs on the core clock; under QEMU's -icount shift=0 one instruction is one nanosecond, so ticks
   count instructions, and a loop of known length, timed first, gives how many per tick.

   The stack: main paints every word below its own frame with STACK_PAINT before the first call, and
   after the last one counts the words no longer painted from the stack's bottom up: the deepest the
   stack went in the whole run (the firmware's need) and, measured from the stack pointer at the call,
   the model's own share. Under QEMU both are the same on every run.

   out.bin: a header of 6 uint32 (magic, images, calibration ticks, calibration instructions, classes,
   marks per image), then per image: the logits (float32), the number of marks, and MAX_MARKS + 1
   tick counts since the call began (the last one: the call's end), then a trailer of 3 uint32: the
   reserved stack, the deepest stack use of the run and of the model's calls, in bytes. */
#include <stdint.h>

#include "mnist_edge_model.h"
#include "semihost.h"

#define MAX_MARKS 62
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CALIB_LOOPS 4000000u  /* 2 instructions each: 8 M, so that one tick is 5 ppm of them */
#define STACK_PAINT 0x5AC3A55Cu  /* a word the model is unlikely to leave on the stack */
/* A run whose stack wrote into its lowest 64 bytes fails (status 6): a frame may skip words it never
   writes, so a stack that ran past its end can leave the very last words painted. */
#define STACK_GUARD_WORDS 16

extern uint32_t __stack_bottom[], __stack_top[];  /* cortex_m.ld */

void mnist_edge_mark(int32_t step);

typedef struct {
    float logits[MNIST_EDGE_NUM_CLASSES];
    uint32_t n_marks;
    uint32_t ticks[MAX_MARKS + 1];
} record;

/* the runner's I/O, in a section of its own: not part of what the model needs */
static float image[MNIST_EDGE_INPUT_SIZE] __attribute__((section(".io")));
static record rec __attribute__((section(".io")));
static uint32_t start;

static uint32_t now(void) { return SYST_CVR; }
static uint32_t since(uint32_t t0) { return (t0 - now()) & 0xFFFFFFu; }  /* SysTick counts down, 24 bits */

void mnist_edge_mark(int32_t step)
{
    (void)step;
    if (rec.n_marks < MAX_MARKS) rec.ticks[rec.n_marks++] = since(start);
}

static uint32_t *stack_pointer(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Paints the free stack below `sp` except its top 64 bytes, where this function may save registers
   (GCC pushes them after the loop's bounds are known on some cores). The model's frames cover those
   64 bytes first, so what is measured below them is unchanged. */
static void paint_stack(uint32_t *sp)
{
    uint32_t *p;
    for (p = __stack_bottom; p < sp - 16; ++p) *p = STACK_PAINT;
}

/* The lowest word of the stack that was written since it was painted. */
static uint32_t *stack_low_water(void)
{
    uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == STACK_PAINT) ++p;
    return p;
}

/* GCC hands Thumb-1 (Armv6-M) inline assembly to the assembler in divided syntax: say unified */
static void spin(uint32_t n)
{
    __asm__ volatile(".syntax unified\n1:\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) :: "cc");
}

int main(void)
{
    uint32_t header[6], trailer[3], t0, short_run, long_run, *sp, *low;
    int32_t in, out, n, i;
    sp = stack_pointer();  /* main's frame is set up: what is below is free, and the call starts here */
    paint_stack(sp);
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u;  /* enabled, core clock, no interrupt */
    t0 = now(); spin(1u); short_run = since(t0);
    t0 = now(); spin(1u + CALIB_LOOPS); long_run = since(t0);

    in = sh_open("in.bin", SH_MODE_RB);
    out = sh_open("out.bin", SH_MODE_WB);
    if (in < 0 || out < 0) return 2;
    n = sh_flen(in) / (int32_t)sizeof image;
    header[0] = 0x4D43454Du; header[1] = (uint32_t)n; header[2] = long_run - short_run;
    header[3] = 2u * CALIB_LOOPS; header[4] = MNIST_EDGE_NUM_CLASSES; header[5] = MAX_MARKS;
    if (sh_write(out, header, sizeof header)) return 3;
    for (i = 0; i < n; ++i) {
        if (sh_read(in, image, sizeof image)) return 4;
        rec.n_marks = 0;
        start = now();
        (void)mnist_edge_predict_normalized(image, rec.logits);
        rec.ticks[MAX_MARKS] = since(start);
        if (sh_write(out, &rec, sizeof rec)) return 5;
    }
    low = stack_low_water();
    if (low < __stack_bottom + STACK_GUARD_WORDS) return 6;  /* the stack reached its guard band, or ran past it */
    trailer[0] = (uint32_t)((char *)__stack_top - (char *)__stack_bottom);
    trailer[1] = (uint32_t)((char *)__stack_top - (char *)low);
    trailer[2] = low < sp ? (uint32_t)((char *)sp - (char *)low) : 0u;
    if (sh_write(out, trailer, sizeof trailer)) return 5;
    sh_close(in);
    sh_close(out);
    return 0;
}
