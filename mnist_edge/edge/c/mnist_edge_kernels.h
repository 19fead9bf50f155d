/* mnist_edge_kernels.h: what every mnist-edge C kernel shares: the float rules ONNX Runtime's results
   depend on, its rounding and its requantisation to uint8, and the shape of a Conv.

   The generator copies this file and the kernels the model calls into mnist_edge_model.c (without the
   #include lines), so the generated model stays one .c and one .h. Compiled on their own, the kernels
   include this header instead. */
#ifndef MNIST_EDGE_KERNELS_H
#define MNIST_EDGE_KERNELS_H

#include <stdint.h>

#if defined(__FAST_MATH__)
#error "mnist-edge kernels must not be compiled with -ffast-math: they rely on exact IEEE float32 rounding"
#endif
/* A fused multiply-add rounds once where ONNX Runtime rounds twice: keep them apart. (GCC: and no calls
   to memset for the few zeros an im2col row of padding needs; the call costs more than the stores.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize ("fp-contract=off", "no-tree-loop-distribute-patterns")
#endif

#if defined(__arm__) && !defined(__ARM_FP)
/* Cores without an FPU (Cortex-M0/M0+, M3): float arithmetic is a library call, and the add, subtract and
   compare routines the float version below needs are 2 KB of flash on a Cortex-M0. So the rounding is
   done on the float's bits: the same results for every float (clamping and rounding commute, because
   the bounds are integers and rounding keeps order; NaN goes to the low end, infinities to the ends). */
static inline uint8_t to_u8(float v, int32_t zp)
{
    union { float f; uint32_t u; } b;
    uint32_t mag, e, q;
    int32_t r;
    b.f = v;
    mag = b.u & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return 0u;  /* NaN */
    e = mag >> 23;
    if (e < 126u) {
        r = 0;  /* |v| < 0.5, zeros and subnormals */
    } else if (e > 157u) {
        r = 0x40000000;  /* |v| >= 2^31: beyond either end */
    } else {
        const uint32_t m = (mag & 0x7FFFFFu) | 0x800000u;  /* |v| = m * 2^(e - 150) */
        if (e >= 150u) {
            q = m << (e - 150u);
        } else {
            const uint32_t s = 150u - e, rest = m & ((1u << s) - 1u), half = 1u << (s - 1u);
            q = m >> s;
            if (rest > half || (rest == half && (q & 1u))) ++q;  /* half to even */
        }
        r = (int32_t)q;
    }
    r = (b.u >> 31 ? -r : r) + zp;
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}
#else
/* Round half to even, as ORT does (cvtps2dq): adding 1.5 * 2^23 leaves no fraction bits, so the FPU's
   default rounding (to nearest, ties to even) does the work. Exact for |v| < 2^22; callers clamp first. */
static inline int32_t round_half_even(float v)
{
    float t = v + 12582912.0f;
    t = t - 12582912.0f;
    return (int32_t)t;
}

/* v (already divided by the output scale) -> uint8 with zero point zp: clamp, round, shift.
   !(v >= lo) also sends NaN to lo, which is what MLAS's max() does. */
static inline uint8_t to_u8(float v, int32_t zp)
{
    const float lo = (float)(0 - zp), hi = (float)(255 - zp);
    if (!(v >= lo)) v = lo;
    if (v > hi) v = hi;
    return (uint8_t)(round_half_even(v) + zp);
}
#endif

#endif /* MNIST_EDGE_KERNELS_H */
