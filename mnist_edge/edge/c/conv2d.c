/* conv2d.c: Conv (dilation 1, group 1) with the MaxPool fused after it, on uint8 CHW -> uint8 CHW.

   Each output is an int8 x int16 dot product over the receptive field (an im2col patch with the input
   zero point removed once), then ORT's requantisation; the pool takes the largest of its window, which
   is what ORT's uint8 MaxPool after the Conv gives (see conv2d below), and needs no buffer for the
   full-size Conv output.
   Integer sums are exact in any order, so the DSP path and the portable path give the same integers.

   Blocking: 2 output channels x 2 Conv outputs per pass (4 accumulators), so every weight and every
   patch value loaded serves two multiply-accumulates. With the Arm DSP extension (__ARM_FEATURE_DSP:
   Cortex-M4, M7, M33, M55) 4 patch positions of a pass are 2 word loads of weights (4 int8 each),
   2 double-word loads of patch values (4 int16 per pixel), 4 SXTB16 to widen the weights to int16
   pairs and 8 SMLAD (two MACs each): 16 MACs in 16 instructions, 34 with the loop's two for 32 MACs.

   Weight layout (written by the generator, see conv_weights in pytorch/exporters/c.py): each channel's
   row is padded with zeros to kp, a multiple of 4 (the patch's padding is 0 too); channels go in pairs,
   the pair's rows interleaved 4 weights at a time (channel 2j's 4, then 2j+1's 4, ...); an odd last
   channel's row follows alone. Each 4 is stored in the order [w0, w2, w1, w3]: SXTB16 takes bytes 0
   and 2 of a word and SXTB16 ROR #8 bytes 1 and 3, so they give the int16 pairs (w0, w1) and (w2, w3)
   that meet the patch's pairs (p0, p1) and (p2, p3) as they lie in memory.

   Every other core runs the portable path: the patch is put in the weights' order instead, and the
   2 x 2 pass is plain C, except on Thumb-1 (Armv6-M: Cortex-M0, M0+), where it is a loop in assembly
   that keeps the 4 sums in high registers: 16 MACs in 67 instructions, where GCC's code for the C loop
   spills and takes ~115. */
#include "mnist_edge_kernels.h"

/* The SMLAD path: GCC-style inline assembly for the cores with the DSP extension. */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
#define MNIST_EDGE_SMLAD 1
#else
#define MNIST_EDGE_SMLAD 0
#endif
/* The Thumb-1 path (Armv6-M: Cortex-M0, M0+, M1): the portable layout, with the 2 x 2 loop in assembly.
   -O1, -O2, -O3 only: at -O0 the frame pointer takes one of the 8 low registers it needs, and at -Os GCC
   gives inline assembly no high registers; those builds run the C loop. */
#if !MNIST_EDGE_SMLAD && defined(__thumb__) && !defined(__thumb2__) && defined(__GNUC__) && \
    defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__)
#define MNIST_EDGE_THUMB1 1
#else
#define MNIST_EDGE_THUMB1 0
#endif

/* The shape of one Conv and of the MaxPool fused after it (a 1x1 pool of stride 1 when there is none). */
typedef struct {
    int32_t cin, h, w;                         /* input */
    int32_t cout, kh, kw, sh, sw, pt, pl;      /* kernel, strides, top and left padding */
    int32_t pkh, pkw, psh, psw, ph, pw;        /* pool window and strides, output height and width */
    int32_t kp;                                /* cin * kh * kw rounded up to a multiple of 4 */
} conv_geom;

static int16_t *zeros(int16_t *restrict out, int32_t n)
{
    while (n-- > 0) *out++ = 0;
    return out;
}

/* The receptive field of Conv output (oy, ox) as int16, zero point removed; padding is the zero point,
   so 0; positions k..kp are 0 as well. A field wholly inside the input (most of them) is copied with no
   bounds at all, a 3x3 one unrolled; at the borders, which rows and columns are inside is found once per
   patch and the rest is zeros. */
static void gather_patch(const conv_geom *g, const uint8_t *restrict x, int32_t xzp, int32_t oy, int32_t ox,
                         int16_t *restrict patch)
{
    const int32_t h = g->h, w = g->w, kh = g->kh, kw = g->kw, x0 = ox * g->sw - g->pl, y0 = oy * g->sh - g->pt;
    int16_t *restrict out = patch;
    int32_t ic, ky, kx;
    if (x0 >= 0 && y0 >= 0 && x0 + kw <= w && y0 + kh <= h) {
        const int32_t plane = h * w;
        const uint8_t *p = x + y0 * w + x0;
        if (kh == 3 && kw == 3) {
            for (ic = g->cin; ic > 0; --ic, p += plane, out += 9) {
                const uint8_t *r1 = p + w, *r2 = r1 + w;
                out[0] = (int16_t)((int32_t)p[0] - xzp);
                out[1] = (int16_t)((int32_t)p[1] - xzp);
                out[2] = (int16_t)((int32_t)p[2] - xzp);
                out[3] = (int16_t)((int32_t)r1[0] - xzp);
                out[4] = (int16_t)((int32_t)r1[1] - xzp);
                out[5] = (int16_t)((int32_t)r1[2] - xzp);
                out[6] = (int16_t)((int32_t)r2[0] - xzp);
                out[7] = (int16_t)((int32_t)r2[1] - xzp);
                out[8] = (int16_t)((int32_t)r2[2] - xzp);
            }
        } else {
            for (ic = g->cin; ic > 0; --ic, p += plane)
                for (ky = 0; ky < kh; ++ky)
                    for (kx = 0; kx < kw; ++kx) *out++ = (int16_t)((int32_t)p[ky * w + kx] - xzp);
        }
    } else {
        const int32_t ky0 = y0 >= 0 ? 0 : -y0 < kh ? -y0 : kh;         /* rows ky0 .. ky1-1 are inside */
        const int32_t ky1 = y0 + kh <= h ? kh : h - y0 > ky0 ? h - y0 : ky0;
        const int32_t kx0 = x0 >= 0 ? 0 : -x0 < kw ? -x0 : kw;         /* columns kx0 .. kx1-1 are inside */
        const int32_t kx1 = x0 + kw <= w ? kw : w - x0 > kx0 ? w - x0 : kx0;
        const int32_t rows = ky1 - ky0, cols = kx1 - kx0;
        for (ic = 0; ic < g->cin; ++ic) {
            const uint8_t *row = x + (ic * h + y0 + ky0) * w + x0 + kx0;  /* the first inside value */
            out = zeros(out, ky0 * kw);
            for (ky = 0; ky < rows; ++ky, row += w) {
                out = zeros(out, kx0);
                for (kx = 0; kx < cols; ++kx) *out++ = (int16_t)((int32_t)row[kx] - xzp);
                out = zeros(out, kw - kx1);
            }
            out = zeros(out, (kh - ky1) * kw);
        }
    }
    zeros(out, g->kp - (int32_t)(out - patch));
#if !MNIST_EDGE_SMLAD
    /* the portable dot product multiplies index by index: give the patch the weights' order 0, 2, 1, 3 */
    for (out = patch; out < patch + g->kp; out += 4) {
        const int16_t t = out[1];
        out[1] = out[2];
        out[2] = t;
    }
#endif
}

#if MNIST_EDGE_SMLAD
/* 4 patch positions of 2 channels x 2 pixels: 16 MACs in 16 instructions. w: 8 weights (the pair's 4
   each), pa, pb: 4 int16 of each pixel's patch (word aligned); all three pointers advance. Assembly,
   because compilers spill one of the 13 values live here and double the loop's length. */
#define DOT_2X2(w, pa, pb, a00, a01, a10, a11)                                                     \
    __asm__("ldr    %[t0], [%[pw]], #4\n\t"                                                        \
            "ldrd   %[x0], %[x1], [%[qa]], #8\n\t"                                                 \
            "ldrd   %[x2], %[x3], [%[qb]], #8\n\t"                                                 \
            "sxtb16 %[t1], %[t0]\n\t"                                                              \
            "sxtb16 %[t0], %[t0], ror #8\n\t"                                                      \
            "smlad  %[c00], %[t1], %[x0], %[c00]\n\t"                                              \
            "smlad  %[c00], %[t0], %[x1], %[c00]\n\t"                                              \
            "smlad  %[c01], %[t1], %[x2], %[c01]\n\t"                                              \
            "smlad  %[c01], %[t0], %[x3], %[c01]\n\t"                                              \
            "ldr    %[t0], [%[pw]], #4\n\t"                                                        \
            "sxtb16 %[t1], %[t0]\n\t"                                                              \
            "sxtb16 %[t0], %[t0], ror #8\n\t"                                                      \
            "smlad  %[c10], %[t1], %[x0], %[c10]\n\t"                                              \
            "smlad  %[c10], %[t0], %[x1], %[c10]\n\t"                                              \
            "smlad  %[c11], %[t1], %[x2], %[c11]\n\t"                                              \
            "smlad  %[c11], %[t0], %[x3], %[c11]"                                                  \
            : [c00] "+r"(a00), [c01] "+r"(a01), [c10] "+r"(a10), [c11] "+r"(a11),                  \
              [pw] "+r"(w), [qa] "+r"(pa), [qb] "+r"(pb), [t0] "=&r"(t0), [t1] "=&r"(t1),          \
              [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3)                       \
            : : "memory")
/* The same for one channel (an odd last one): 8 MACs. */
#define DOT_1X2(w, pa, pb, a0, a1)                                                                 \
    __asm__("ldr    %[t0], [%[pw]], #4\n\t"                                                        \
            "ldrd   %[x0], %[x1], [%[qa]], #8\n\t"                                                 \
            "ldrd   %[x2], %[x3], [%[qb]], #8\n\t"                                                 \
            "sxtb16 %[t1], %[t0]\n\t"                                                              \
            "sxtb16 %[t0], %[t0], ror #8\n\t"                                                      \
            "smlad  %[c0], %[t1], %[x0], %[c0]\n\t"                                                \
            "smlad  %[c0], %[t0], %[x1], %[c0]\n\t"                                                \
            "smlad  %[c1], %[t1], %[x2], %[c1]\n\t"                                                \
            "smlad  %[c1], %[t0], %[x3], %[c1]"                                                    \
            : [c0] "+r"(a0), [c1] "+r"(a1), [pw] "+r"(w), [qa] "+r"(pa), [qb] "+r"(pb),            \
              [t0] "=&r"(t0), [t1] "=&r"(t1), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2),      \
              [x3] "=&r"(x3)                                                                       \
            : : "memory")
#endif

#if MNIST_EDGE_THUMB1
/* One patch position k (of the 4 in a group; j: its byte in each channel's 4 weights, j4 = j + 4) of 2
   channels x 2 pixels on Thumb-1: 16 instructions for 4 MACs. Thumb-1 has 8 low registers and most
   instructions take only those, so the 4 sums live in high registers (ADD takes any register), and
   a patch value is loaded again rather than copied (MULS overwrites an operand: 1 instruction either
   way). LDRSH takes only a register offset: i, the byte offset of position k in both patches. */
#define T1_POS(j, j4)                                                                              \
    "ldrb  %[w0], [%[pw], #" j "]\n\t"                                                              \
    "sxtb  %[w0], %[w0]\n\t"                                                                        \
    "ldrb  %[w1], [%[pw], #" j4 "]\n\t"                                                             \
    "sxtb  %[w1], %[w1]\n\t"                                                                        \
    "ldrsh %[xa], [%[pa], %[i]]\n\t"                                                                \
    "muls  %[xa], %[w0], %[xa]\n\t"                                                                 \
    "add   %[a00], %[xa]\n\t"                                                                       \
    "ldrsh %[xa], [%[pa], %[i]]\n\t"                                                                \
    "muls  %[xa], %[w1], %[xa]\n\t"                                                                 \
    "add   %[a10], %[xa]\n\t"                                                                       \
    "ldrsh %[xb], [%[pb], %[i]]\n\t"                                                                \
    "muls  %[w0], %[xb], %[w0]\n\t"                                                                 \
    "add   %[a01], %[w0]\n\t"                                                                       \
    "muls  %[xb], %[w1], %[xb]\n\t"                                                                 \
    "add   %[a11], %[xb]\n\t"                                                                       \
    "adds  %[i], #2\n\t"
#endif

/* acc[2 * c + p] += dot(channel c, pixel p) for c = 0, 1 (only 0 when `pair` is 0) and the patches pa,
   pb; w: the channels' weights in the layout above. */
static void dot_pass(const int8_t *restrict w, const int16_t *restrict pa, const int16_t *restrict pb,
                     int32_t kp, int pair, int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3], n;
#if MNIST_EDGE_SMLAD
    uint32_t t0, t1, x0, x1, x2, x3;
    if (pair) {
        for (n = kp >> 3; n > 0; --n) {  /* two groups per loop pass: 32 MACs in 34 instructions */
            DOT_2X2(w, pa, pb, a00, a01, a10, a11);
            DOT_2X2(w, pa, pb, a00, a01, a10, a11);
        }
        if (kp & 4) DOT_2X2(w, pa, pb, a00, a01, a10, a11);
    } else {
        for (n = kp >> 2; n > 0; --n) DOT_1X2(w, pa, pb, a00, a01);
    }
#else
    /* the patches are in the weights' order here (see gather_patch): index meets index */
    if (pair) {
#if MNIST_EDGE_THUMB1
        /* a group of 4 positions: 16 MACs in 67 instructions (the C below, compiled for Thumb-1: ~115) */
        uint32_t i = 0u, end = 2u * (uint32_t)kp;
        int32_t w0, w1, xa, xb;
        (void)n;
        __asm__(".syntax unified\n"  /* GCC hands Thumb-1 inline assembly over in divided syntax */
                "1:\n\t"
                T1_POS("0", "4") T1_POS("1", "5") T1_POS("2", "6") T1_POS("3", "7")
                "adds  %[pw], #8\n\t"
                "cmp   %[i], %[end]\n\t"
                "bne   1b"
                : [a00] "+h"(a00), [a01] "+h"(a01), [a10] "+h"(a10), [a11] "+h"(a11), [pw] "+l"(w), [i] "+l"(i),
                  [w0] "=&l"(w0), [w1] "=&l"(w1), [xa] "=&l"(xa), [xb] "=&l"(xb)
                : [pa] "l"(pa), [pb] "l"(pb), [end] "h"(end)
                : "cc", "memory");
#else
        int32_t j;
        for (n = 0; n < kp; n += 4, w += 8)
            for (j = 0; j < 4; ++j) {
                a00 += w[j] * pa[n + j];
                a01 += w[j] * pb[n + j];
                a10 += w[4 + j] * pa[n + j];
                a11 += w[4 + j] * pb[n + j];
            }
#endif
    } else {
        for (n = 0; n < kp; ++n) {
            a00 += w[n] * pa[n];
            a01 += w[n] * pb[n];
        }
    }
#endif
    acc[0] = a00; acc[1] = a01; acc[2] = a10; acc[3] = a11;
}

static int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }

/* patch: word aligned, room for two receptive fields; pool_max: room for cout sums (with a pool). Pooling
   is done on the int32 sums: the requantisation is non-decreasing in the sum (its
   multiplier is positive, and float rounding and clamping keep order), so requantising the largest
   sum gives the largest requantised value, with one requantisation per pooled output. */
static void conv2d(const conv_geom *g, const uint8_t *restrict x, int32_t xzp, const int8_t *restrict wt,
                   const int32_t *restrict bias, const float *restrict mult, int32_t yzp,
                   uint8_t *restrict y, int16_t *restrict patch, int32_t *restrict pool_max)
{
    /* locals, not g->..., in the loops: stores to uint8_t may alias anything, g included */
    const int32_t kp = g->kp, cout = g->cout, pw = g->pw, plane = g->ph * g->pw;
    const int32_t pkw = g->pkw;
    int32_t o, oc, wy, wx, py = 0, px = 0;  /* py, px: the pooled output's row and column */
    if (g->pkh * pkw == 1) {  /* no pool: two output pixels per pass, an odd last one paired with itself */
        /* a map of one output (a classifier over the whole map) has one field: patch needs room for one */
        const int16_t *pb = plane > 1 ? patch + kp : patch;
        int32_t oy = 0, ox = 0;  /* output o's row and column, kept without division (none on a Cortex-M0) */
        for (o = 0; o < plane; o += 2) {
            const int32_t o1 = o + 1 < plane ? o + 1 : o;
            int32_t oy1 = oy, ox1 = ox + 1;
            if (o1 == o) ox1 = ox;
            else if (ox1 == pw) { ox1 = 0; ++oy1; }
            gather_patch(g, x, xzp, oy, ox, patch);
            if (plane > 1) gather_patch(g, x, xzp, oy1, ox1, patch + kp);
            for (oc = 0; oc < cout; oc += 2) {
                const int pair = oc + 1 < cout;
                int32_t acc[4];
                uint8_t *out = y + oc * plane;
                acc[0] = acc[1] = bias[oc];
                acc[2] = acc[3] = pair ? bias[oc + 1] : 0;
                dot_pass(wt + oc * kp, patch, pb, kp, pair, acc);
                out[o] = to_u8((float)acc[0] * mult[oc], yzp);
                out[o1] = to_u8((float)acc[1] * mult[oc], yzp);
                if (pair) {
                    out[plane + o] = to_u8((float)acc[2] * mult[oc + 1], yzp);
                    out[plane + o1] = to_u8((float)acc[3] * mult[oc + 1], yzp);
                }
            }
            oy = oy1;
            ox = ox1 + 1;
            if (ox == pw) { ox = 0; ++oy; }
        }
        return;
    }
    for (o = 0; o < plane; ++o) {  /* one pooled output: its window's Conv outputs, two of a row at a time */
        const int32_t y0 = py * g->psh, x0 = px * g->psw;
        int first = 1;
        if (++px == pw) { px = 0; ++py; }
        for (wy = 0; wy < g->pkh; ++wy)
        for (wx = 0; wx < pkw; wx += 2, first = 0) {
            const int32_t wx1 = wx + 1 < pkw ? wx + 1 : wx;  /* an odd row's last output is paired with itself */
            gather_patch(g, x, xzp, y0 + wy, x0 + wx, patch);
            gather_patch(g, x, xzp, y0 + wy, x0 + wx1, patch + kp);
            for (oc = 0; oc < cout; oc += 2) {
                const int pair = oc + 1 < cout;
                int32_t acc[4];
                acc[0] = acc[1] = bias[oc];
                acc[2] = acc[3] = pair ? bias[oc + 1] : 0;
                dot_pass(wt + oc * kp, patch, patch + kp, kp, pair, acc);
                acc[0] = max32(acc[0], acc[1]);
                acc[2] = max32(acc[2], acc[3]);
                pool_max[oc] = first ? acc[0] : max32(pool_max[oc], acc[0]);
                if (pair) pool_max[oc + 1] = first ? acc[2] : max32(pool_max[oc + 1], acc[2]);
            }
        }
        for (oc = 0; oc < cout; ++oc) y[oc * plane + o] = to_u8((float)pool_max[oc] * mult[oc], yzp);
    }
}
