/* gemm.c: fully connected y = W a + b on uint8 input, int8 weights stored [out][in], int32 accumulation,
   then ORT's requantisation (one float multiply by (a_scale * w_scale) / y_scale per output). */
#include "mnist_edge_kernels.h"

static void gemm(const uint8_t *restrict a, int32_t k, int32_t azp, const int8_t *restrict wt,
                 const int32_t *restrict bias, const float *restrict mult, int32_t n, int32_t yzp,
                 uint8_t *restrict y)
{
    int32_t j, i;
    for (j = 0; j < n; ++j) {
        const int8_t *row = wt + j * k;
        int32_t acc = bias[j];
        for (i = 0; i < k; ++i) acc += (int32_t)row[i] * ((int32_t)a[i] - azp);
        y[j] = to_u8((float)acc * mult[j], yzp);
    }
}
