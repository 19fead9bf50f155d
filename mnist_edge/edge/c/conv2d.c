/* conv2d.c: Conv (dilation 1, group 1) with the MaxPool fused after it, on uint8 CHW -> uint8 CHW.
   Each output channel is one int8 x int16 dot product over the receptive field (integer sums are exact
   in any order), then ORT's requantisation; max-pooling the requantised values is what ORT's uint8
   MaxPool does, and pooling each output pixel as it is made needs no buffer for the full-size output. */
#include "mnist_edge_kernels.h"

/* The shape of one Conv and of the MaxPool fused after it (a 1x1 pool of stride 1 when there is none). */
typedef struct {
    int32_t cin, h, w;                         /* input */
    int32_t cout, kh, kw, sh, sw, pt, pl;      /* kernel, strides, top and left padding */
    int32_t pkh, pkw, psh, psw, ph, pw;        /* pool window and strides, output height and width */
} conv_geom;

/* The receptive field of Conv output (oy, ox), zero point removed; padding is the zero point, so 0. */
static void gather_patch(const conv_geom *g, const uint8_t *restrict x, int32_t xzp, int32_t oy, int32_t ox,
                         int16_t *restrict patch)
{
    int32_t ic, ky, kx, j = 0;
    for (ic = 0; ic < g->cin; ++ic)
        for (ky = 0; ky < g->kh; ++ky) {
            const int32_t iy = oy * g->sh - g->pt + ky;
            for (kx = 0; kx < g->kw; ++kx) {
                const int32_t ix = ox * g->sw - g->pl + kx;
                const int inside = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w;
                patch[j++] = (int16_t)(inside ? (int32_t)x[(ic * g->h + iy) * g->w + ix] - xzp : 0);
            }
        }
}

static void conv2d(const conv_geom *g, const uint8_t *restrict x, int32_t xzp, const int8_t *restrict wt,
                   const int32_t *restrict bias, const float *restrict mult, int32_t yzp,
                   uint8_t *restrict y, int16_t *restrict patch)
{
    /* locals, not g->..., in the loops: stores to uint8_t may alias anything, g included */
    const int32_t k = g->cin * g->kh * g->kw, cout = g->cout, ph = g->ph, pw = g->pw;
    const int32_t pkh = g->pkh, pkw = g->pkw, psh = g->psh, psw = g->psw;
    int32_t py, px, wy, wx, oc, i;
    for (py = 0; py < ph; ++py)
        for (px = 0; px < pw; ++px)
            for (wy = 0; wy < pkh; ++wy)
                for (wx = 0; wx < pkw; ++wx) {
                    gather_patch(g, x, xzp, py * psh + wy, px * psw + wx, patch);
                    for (oc = 0; oc < cout; ++oc) {
                        const int8_t *restrict row = wt + oc * k;
                        uint8_t *out = y + (oc * ph + py) * pw + px;
                        int32_t acc = bias[oc];
                        uint8_t v;
                        for (i = 0; i < k; ++i) acc += (int32_t)row[i] * (int32_t)patch[i];
                        v = to_u8((float)acc * mult[oc], yzp);
                        if ((wy == 0 && wx == 0) || v > *out) *out = v;
                    }
                }
}
