/* global_mean.c: global average pool on uint8 CHW as ORT runs it: DequantizeLinear, float ReduceMean
   (summed in the order of Eigen's 4-float packet reduction), QuantizeLinear. */
#include "mnist_edge_kernels.h"

/* Sum of v[0..n) in the order of Eigen's vectorised reduction with 4-float packets, which is what
   ONNX Runtime's float ReduceMean runs (math::RowwiseSum). Float addition is not associative, so the
   order matters: `mis` is how many floats the row starts past a 16-byte boundary in ORT's buffer. */
static float eigen_sum4(const float *v, int32_t n, int32_t mis)
{
    int32_t start = (4 - mis) & 3, end1, end2, i, j;
    float p0[4], p1[4], res;
    if (start > n) start = n;
    end1 = start + (n - start) / 4 * 4;
    end2 = start + (n - start) / 8 * 8;
    if (end1 == start) {  /* too short for one packet: plain left-to-right */
        res = v[0];
        for (i = 1; i < n; ++i) res += v[i];
        return res;
    }
    for (j = 0; j < 4; ++j) p0[j] = v[start + j];
    if (end1 - start > 4) {
        for (j = 0; j < 4; ++j) p1[j] = v[start + 4 + j];
        for (i = start + 8; i < end2; i += 8)
            for (j = 0; j < 4; ++j) {
                p0[j] += v[i + j];
                p1[j] += v[i + 4 + j];
            }
        for (j = 0; j < 4; ++j) p0[j] += p1[j];
        if (end1 > end2)
            for (j = 0; j < 4; ++j) p0[j] += v[end2 + j];
    }
    res = (p0[0] + p0[2]) + (p0[1] + p0[3]);  /* Eigen's predux of a 4-float packet */
    for (i = 0; i < start; ++i) res += v[i];
    for (i = end1; i < n; ++i) res += v[i];
    return res;
}

/* x (c, hw) with zero point xzp and scale xs -> y (c,) with scale ys, zero point yzp; tmp: hw floats. */
static void global_mean(const uint8_t *x, int32_t c, int32_t hw, int32_t xzp, float xs,
                        float ys, int32_t yzp, uint8_t *y, float *tmp)
{
    int32_t ch, i;
    for (ch = 0; ch < c; ++ch) {
        float mean;
        for (i = 0; i < hw; ++i) tmp[i] = (float)((int32_t)x[ch * hw + i] - xzp) * xs;
        /* rows start at multiples of hw floats from ORT's 64-byte aligned buffer (for the first
           image of a batch; later images too whenever c * hw is a multiple of 4) */
        mean = eigen_sum4(tmp, hw, (int32_t)(((uint32_t)ch * (uint32_t)hw) & 3u)) / (float)hw;
        y[ch] = to_u8(mean / ys, yzp);
    }
}
