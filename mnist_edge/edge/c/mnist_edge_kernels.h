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

#endif /* MNIST_EDGE_KERNELS_H */
