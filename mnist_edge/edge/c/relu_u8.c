/* relu_u8.c: Relu between equal quantizations, in place: real 0 is the zero point. */
#include "mnist_edge_kernels.h"

static void relu_u8(uint8_t *x, int32_t n, uint8_t zp)
{
    int32_t i;
    for (i = 0; i < n; ++i) if (x[i] < zp) x[i] = zp;
}
