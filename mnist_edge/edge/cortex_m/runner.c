/* runner.c: the firmware mnist-edge's Cortex-M runtime builds around a generated C model.

   Reads normalised float32 images from the host file "in.bin" (semihosting), classifies each with
   mnist_edge_predict_normalized and appends to "out.bin": its logits and the SysTick readings taken
   before the call, after every layer (the model's MNIST_EDGE_MARK hook) and after the call. SysTick
   runs on the core clock; under QEMU's -icount shift=0 one instruction is one nanosecond, so ticks
   count instructions, and a loop of known length, timed first, gives how many per tick.

   out.bin: a header of 6 uint32 (magic, images, calibration ticks, calibration instructions, classes,
   marks per image), then per image: the logits (float32), the number of marks, and MAX_MARKS + 1
   tick counts since the call began (the last one: the call's end). */
#include <stdint.h>

#include "mnist_edge_model.h"
#include "semihost.h"

#define MAX_MARKS 62
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CALIB_LOOPS 4000000u  /* 2 instructions each: 8 M, so that one tick is 5 ppm of them */

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

static void spin(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) :: "cc");
}

int main(void)
{
    uint32_t header[6], t0, short_run, long_run;
    int32_t in, out, n, i;
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
    sh_close(in);
    sh_close(out);
    return 0;
}
