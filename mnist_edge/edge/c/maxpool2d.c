/* maxpool2d.c: MaxPool (no padding, floor mode) on uint8 CHW, straight on the quantized values:
   max commutes with dequantisation, so this is what ORT's uint8 MaxPool computes. */
#include "mnist_edge_kernels.h"

static void maxpool2d(const uint8_t *x, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw,
                      int32_t sh, int32_t sw, int32_t oh, int32_t ow, uint8_t *y)
{
    int32_t ch, oy, ox, ky, kx;
    for (ch = 0; ch < c; ++ch)
        for (oy = 0; oy < oh; ++oy)
            for (ox = 0; ox < ow; ++ox) {
                uint8_t m = 0;
                for (ky = 0; ky < kh; ++ky)
                    for (kx = 0; kx < kw; ++kx) {
                        const uint8_t v = x[(ch * h + oy * sh + ky) * w + ox * sw + kx];
                        if (v > m) m = v;
                    }
                y[(ch * oh + oy) * ow + ox] = m;
            }
}
