"""C99 export: plain, runtime-free C generated from the verified int8 QDQ ONNX model.

The generated code reproduces what ONNX Runtime's CPU provider executes for the QDQ graph, bit for bit:
QuantizeLinear divides by the scale and rounds half to even; Conv and Gemm accumulate in int32 and
requantise with ONE float32 multiply by (x_scale * w_scale) / y_scale (MLAS's MlasRequantizeOutput);
MaxPool, Reshape and Relu work on the uint8 values; ReduceMean dequantises and sums in float32 in the
order of Eigen's 4-float packet reduction, which is what ORT's ReduceMean runs. Any graph outside that
set is refused with one line naming the op or attribute: the generator never emits approximate C.

Over 300 lines because the C kernels and entry points are templates in this file; the graph reader is
quant/graph.py and the runtime that compiles and runs the result is edge/runtimes/c.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from mnist_edge.core.errors import ExportError, first_line
from mnist_edge.core.formats import Format
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.edge.runtimes.c import ABI_VERSION, C_FILE, C_MARKER, H_FILE
from mnist_edge.quant.graph import Program, QParams, Step, read_program

README_FILE = "README.txt"
METADATA_BEGIN, METADATA_END = "/* mnist-edge-metadata-json:", "*/"
C_STRING_MAX = 4000  # ISO C99 only promises 4095-character string literals (-pedantic warns beyond)


# --- C emission -----------------------------------------------------------------------------------

def _f32(v) -> str:
    """An exact C float literal (hex, so no decimal rounding step can differ from numpy's float32)."""
    v = float(np.float32(v))
    if not v:
        return "0.0f"
    mantissa, exponent = v.hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"  # 0x1.0bac720000000p-3 -> 0x1.0bac72p-3f


def _c_array(ctype: str, name: str, values, fmt=str, per_line: int = 24) -> str:
    flat = [fmt(v) for v in np.asarray(values).ravel().tolist()]
    rows = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def _i32(v: int) -> str:
    return "(-2147483647 - 1)" if v == -2**31 else str(v)


def _c_string(text: str) -> str:
    """A C string literal for any text: printable ASCII kept, the rest as 3-digit octal escapes."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        out.append("\\" + ch if ch in '\\"?' else ch if 32 <= b < 127 else f"\\{b:03o}")  # \? stops trigraphs
    return '"' + "".join(out) + '"'


def _comment(text: object) -> str:
    """Text made safe inside a /* */ comment: it can neither end it early nor splice lines."""
    return str(text).replace("*/", "* /").replace("??", "? ?").replace("\\\n", "\\ \n")


def _metadata_comment(meta_json: str) -> str:
    # "\/" is a legal JSON escape of "/", so the block can never contain "*/" and end the comment early
    return f"{METADATA_BEGIN}\n{meta_json.replace('/', chr(92) + '/')}\n{METADATA_END}\n"


def _metadata_c(meta_json: str) -> str:
    """The metadata JSON as a C constant: a string literal, or a char array when too long for one."""
    if len(meta_json) <= C_STRING_MAX:
        return f"const char mnist_edge_metadata_json[] = {_c_string(meta_json)};\n"
    data = [*meta_json.encode("ascii"), 0]  # to_json() escapes non-ASCII, so every byte fits a char
    rows = [", ".join(map(str, data[i:i + 24])) for i in range(0, len(data), 24)]
    return "const char mnist_edge_metadata_json[] = {\n    " + ",\n    ".join(rows) + "\n};\n"


_PRELUDE = r"""
#include "mnist_edge_model.h"

#if defined(__FAST_MATH__)
#error "mnist_edge_model.c must not be compiled with -ffast-math: it relies on exact IEEE float32 rounding"
#endif
/* A fused multiply-add rounds once where ONNX Runtime rounds twice: keep them apart. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize ("fp-contract=off")
#endif

/* Round half to even, as ORT does (cvtps2dq): adding 1.5 * 2^23 leaves no fraction bits, so the FPU's
   default rounding (to nearest, ties to even) does the work. Exact for |v| < 2^22; callers clamp first. */
static int32_t round_half_even(float v)
{
    float t = v + 12582912.0f;
    t = t - 12582912.0f;
    return (int32_t)t;
}

/* v (already divided by the output scale) -> uint8 with zero point zp: clamp, round, shift.
   !(v >= lo) also sends NaN to lo, which is what MLAS's max() does. */
static uint8_t to_u8(float v, int32_t zp)
{
    const float lo = (float)(0 - zp), hi = (float)(255 - zp);
    if (!(v >= lo)) v = lo;
    if (v > hi) v = hi;
    return (uint8_t)(round_half_even(v) + zp);
}
"""

_KERNELS = {
    "conv": r"""
/* The shape of one Conv and of the MaxPool fused after it (a 1x1 pool of stride 1 when there is none):
   pooling each output pixel as it is made needs no buffer for the full-resolution Conv output. */
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

/* Conv (dilation 1, group 1) + MaxPool (no padding, floor mode) on uint8 CHW -> uint8 CHW. Each output
   channel is one int8 x int16 dot product over the patch (integer sums are exact in any order), then
   ORT's requantisation; max-pooling the requantised values is what ORT's uint8 MaxPool does. */
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
""",
    "maxpool": r"""
/* MaxPool (no padding, floor mode) straight on the uint8 values: max commutes with dequantisation. */
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
""",
    "mean": r"""
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

/* Global average pool as ORT runs it: DequantizeLinear, float ReduceMean, QuantizeLinear. */
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
""",
    "gemm": r"""
/* Gemm y = W a + b with W stored [out][in]; int32 accumulation, one float multiply to requantise. */
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
""",
    "relu": r"""
/* Relu between equal quantizations: real 0 is the zero point. In place. */
static void relu_u8(uint8_t *x, int32_t n, uint8_t zp)
{
    int32_t i;
    for (i = 0; i < n; ++i) if (x[i] < zp) x[i] = zp;
}
""",
}


def _requant_multipliers(in_q: QParams, wscale: np.ndarray, out_q: QParams) -> np.ndarray:
    # exactly ORT's float32 expression, in its order: (x_scale * w_scale) / y_scale
    return ((np.float32(in_q.scale) * wscale.astype(np.float32)) / np.float32(out_q.scale)).astype(np.float32)


class _Emitter:
    """Lays out buffers and writes the constants and the call sequence of one Program."""

    def __init__(self, prog: Program):
        self.prog = prog
        self.consts: list[str] = []
        self.calls: list[str] = []
        self.size = {"a": int(np.prod(prog.input_shape)), "b": 0}
        self.patch_size = self.tmp_size = 0

    def _use(self, buf: str, n: int) -> str:
        self.size[buf] = max(self.size[buf], n)
        return f"buf_{buf}"

    def build(self) -> None:
        src, steps, i = "a", self.prog.steps, 0
        while i < len(steps):
            s = steps[i]
            pool = steps[i + 1] if s.kind == "conv" and i + 1 < len(steps) and steps[i + 1].kind == "maxpool" else None
            dst = "b" if src == "a" else "a"
            n_out = int(np.prod((pool or s).out_shape))
            if s.kind in ("flatten", "relu"):  # in place: flatten is free in CHW order
                if s.kind == "relu":
                    self.calls.append(f"relu_u8(buf_{src}, {n_out}, {s.in_q.zero_point}u);")
            elif s.kind == "conv":
                self._conv(i, s, pool, f"buf_{src}", self._use(dst, n_out))
                src = dst
            else:
                getattr(self, f"_{s.kind}")(i, s, f"buf_{src}", self._use(dst, n_out))
                src = dst
            i += 2 if pool else 1
        self.out_buf = f"buf_{src}"

    def _weights(self, i: int, s: Step) -> str:
        self.consts.append(f"/* layer {i}: {s.kind} {_comment(repr(s.node))}, {s.in_shape} -> {s.out_shape} */\n")
        self.consts.append(_c_array("int8_t", f"w{i}", s.args["w"]))
        self.consts.append(_c_array("int32_t", f"b{i}", s.args["bias"], _i32, 12))
        self.consts.append(_c_array("float", f"m{i}", _requant_multipliers(s.in_q, s.args["wscale"], s.out_q),
                                    _f32, 6))
        return f"w{i}, b{i}, m{i}"

    def _conv(self, i: int, s: Step, pool: Step | None, x: str, y: str) -> None:
        (cin, h, w), cout = s.in_shape, s.out_shape[0]
        (kh, kw), (sh, sw), (pt, pl) = s.args["k"], s.args["s"], s.args["p"]
        (pkh, pkw), (psh, psw) = (pool.args["k"], pool.args["s"]) if pool else ((1, 1), (1, 1))
        _, ph, pw = (pool or s).out_shape
        self.patch_size = max(self.patch_size, cin * kh * kw)
        consts = self._weights(i, s)
        self.consts.append(f"static const conv_geom g{i} = {{.cin = {cin}, .h = {h}, .w = {w}, .cout = {cout}, "
                           f".kh = {kh}, .kw = {kw}, .sh = {sh}, .sw = {sw}, .pt = {pt}, .pl = {pl},\n"
                           f"    .pkh = {pkh}, .pkw = {pkw}, .psh = {psh}, .psw = {psw}, .ph = {ph}, .pw = {pw}}};\n")
        self.calls.append(f"conv2d(&g{i}, {x}, {s.in_q.zero_point}, {consts}, {s.out_q.zero_point}, {y}, patch);"
                          + ("  /* + MaxPool */" if pool else ""))

    def _gemm(self, i: int, s: Step, x: str, y: str) -> None:
        consts = self._weights(i, s)
        self.calls.append(f"gemm({x}, {s.in_shape[0]}, {s.in_q.zero_point}, {consts}, {s.out_shape[0]}, "
                          f"{s.out_q.zero_point}, {y});")

    def _maxpool(self, i: int, s: Step, x: str, y: str) -> None:
        (c, h, w), (_, oh, ow) = s.in_shape, s.out_shape
        (kh, kw), (sh, sw) = s.args["k"], s.args["s"]
        self.calls.append(f"maxpool2d({x}, {c}, {h}, {w}, {kh}, {kw}, {sh}, {sw}, {oh}, {ow}, {y});")

    def _mean(self, i: int, s: Step, x: str, y: str) -> None:
        c, h, w = s.in_shape
        self.tmp_size = max(self.tmp_size, h * w)
        self.calls.append(f"global_mean({x}, {c}, {h * w}, {s.in_q.zero_point}, {_f32(s.in_q.scale)}, "
                          f"{_f32(s.out_q.scale)}, {s.out_q.zero_point}, {y}, mean_tmp);")

    def buffers(self) -> str:
        """Static scratch: every call rewrites all of it before reading it, so calls never interfere."""
        lines = [f"static uint8_t buf_a[{self.size['a']}];", f"static uint8_t buf_b[{max(self.size['b'], 1)}];"]
        if self.patch_size:
            lines.append(f"static int16_t patch[{self.patch_size}];  /* one Conv receptive field */")
        if self.tmp_size:
            lines.append(f"static float mean_tmp[{self.tmp_size}];  /* one channel of a global mean */")
        return "\n".join(lines) + "\n"

    def ram_bytes(self) -> int:
        return self.size["a"] + max(self.size["b"], 1) + 2 * self.patch_size + 4 * self.tmp_size


def _kinds(prog: Program) -> list[str]:
    """The kernels the program calls (an unused static function would fail -Werror=unused-function)."""
    steps = prog.steps
    used = {s.kind for i, s in enumerate(steps) if not (s.kind == "maxpool" and i and steps[i - 1].kind == "conv")}
    return [k for k in _KERNELS if k in used]


def emit_c(prog: Program, meta: ModelMetadata) -> tuple[str, str]:
    """The .c and .h text of a Program with its metadata."""
    e = _Emitter(prog)
    e.build()
    n_in, k = int(np.prod(prog.input_shape)), prog.num_classes
    iq, oq = prog.input_q, prog.output_q
    meta_json = meta.to_json()
    names = ", ".join(_c_string(n) for n in meta.class_names)
    body = "\n    ".join(e.calls)
    c = "".join([
        f"/* {C_MARKER}: generated by mnist-edge {_comment(meta.mnist_edge_version)} from model.int8.onnx.\n"
        "   Do not edit.\n"
        f"   {_summary(prog)}\n"
        f"   Bit-exact with ONNX Runtime (CPU) on the same normalised input; see mnist_edge_model.h. */\n",
        _metadata_comment(meta_json),
        _PRELUDE,
        *(_KERNELS[kd] for kd in _kinds(prog)),
        "\n/* ---- model constants (flash) ---- */\n",
        *e.consts,
        "\n/* ---- scratch (RAM) ---- */\n",
        e.buffers(),
        "\n",
        f"const int32_t mnist_edge_abi_version = {ABI_VERSION};\n",
        "const int32_t mnist_edge_num_classes = MNIST_EDGE_NUM_CLASSES;\n",
        _metadata_c(meta_json),
        f"const char *const mnist_edge_class_names[MNIST_EDGE_NUM_CLASSES] = {{{names}}};\n",
        _ENTRY_POINTS.format(n_in=n_in, k=k, in_scale=_f32(iq.scale), in_zp=iq.zero_point,
                             out_scale=_f32(oq.scale), out_zp=oq.zero_point, body=body, out=e.out_buf),
    ])
    h = _header(prog, meta, e.ram_bytes())
    return c, h


_ENTRY_POINTS = r"""
/* the quantized network on buf_a (the quantized input); dequantized logits out, top-1 class returned */
static int run_network(float *logits)
{{
    int32_t j, best = 0;
    float best_v = 0.0f;
    {body}
    for (j = 0; j < {k}; ++j) {{
        const float v = (float)((int32_t){out}[j] - {out_zp}) * {out_scale};  /* DequantizeLinear */
        if (logits) logits[j] = v;
        if (j == 0 || v > best_v) {{ best_v = v; best = j; }}
    }}
    return (int)best;
}}

int mnist_edge_predict_normalized(const float x[MNIST_EDGE_INPUT_SIZE], float logits[MNIST_EDGE_NUM_CLASSES])
{{
    int32_t i;
    for (i = 0; i < {n_in}; ++i) buf_a[i] = to_u8(x[i] / {in_scale}, {in_zp});  /* QuantizeLinear */
    return run_network(logits);
}}

int mnist_edge_predict(const uint8_t pixels[MNIST_EDGE_INPUT_SIZE], float logits[MNIST_EDGE_NUM_CLASSES])
{{
    int32_t i;
    for (i = 0; i < {n_in}; ++i) {{
        /* the model's normalisation, in float32 as numpy computes it, then QuantizeLinear */
        const float x = ((float)pixels[i] / 255.0f - MNIST_EDGE_MEAN) / MNIST_EDGE_STD;
        buf_a[i] = to_u8(x / {in_scale}, {in_zp});
    }}
    return run_network(logits);
}}

void mnist_edge_predict_normalized_batch(const float *x, int32_t n, float *logits)
{{
    int32_t i;
    for (i = 0; i < n; ++i)
        (void)mnist_edge_predict_normalized(x + (long)i * {n_in}, logits + (long)i * {k});
}}
"""


def _summary(prog: Program) -> str:
    parts = []
    for s in prog.steps:
        if s.kind == "conv":
            parts.append(f"conv{s.args['k'][0]}x{s.args['k'][1]}->{s.out_shape[0]}")
        elif s.kind == "gemm":
            parts.append(f"fc->{s.out_shape[0]}")
        elif s.kind != "flatten":
            parts.append(s.kind)
    return "layers: " + ", ".join(parts)


def _header(prog: Program, meta: ModelMetadata, ram: int) -> str:
    c, hgt, wid = prog.input_shape
    acc = f"{100 * meta.test_acc:.2f}%" if meta.test_acc is not None else "unknown"
    names = _comment(", ".join(meta.class_names))
    version, arch_args = _comment(meta.mnist_edge_version), _comment(json.dumps(meta.arch_args, sort_keys=True))
    return f"""/* mnist_edge_model.h: {C_MARKER} (generated by mnist-edge {version}; do not edit).

   Model:         {_comment(meta.arch)} {arch_args}, dataset {_comment(meta.dataset)}
   Classes:       {names}
   Source accuracy (PyTorch, test set): {acc}
   Quantization:  {_comment(meta.quantization)}
   Normalisation: x = (pixel / 255 - {meta.mean}) / {meta.std}, in float32
   {_summary(prog)}
   RAM: {ram} bytes of static scratch; no malloc, no stdio, no libm.

   Results are bit-identical to ONNX Runtime (CPU) running model.int8.onnx on the same float input,
   when compiled as ISO C99 with IEEE-754 float32 and without -ffast-math.

   Not reentrant: the functions share static scratch buffers (each call rewrites them completely before
   reading them, so consecutive calls never affect each other), so do not call them from two threads or
   from an interrupt while another call runs. */
#ifndef MNIST_EDGE_MODEL_H
#define MNIST_EDGE_MODEL_H

#include <stdint.h>

#define MNIST_EDGE_INPUT_CHANNELS {c}
#define MNIST_EDGE_INPUT_HEIGHT {hgt}
#define MNIST_EDGE_INPUT_WIDTH {wid}
#define MNIST_EDGE_INPUT_SIZE {c * hgt * wid}
#define MNIST_EDGE_NUM_CLASSES {prog.num_classes}
#define MNIST_EDGE_MEAN {_f32(meta.mean)} /* {meta.mean} */
#define MNIST_EDGE_STD {_f32(meta.std)} /* {meta.std} */

#ifdef __cplusplus
extern "C" {{
#endif

/* Classify raw pixels (0..255, row-major, light ink on black like MNIST): writes the logits (may be
   NULL) and returns the top-1 class index (the first of equal maxima). */
int mnist_edge_predict(const uint8_t pixels[MNIST_EDGE_INPUT_SIZE], float logits[MNIST_EDGE_NUM_CLASSES]);

/* The same from an already normalised float input (what the other mnist-edge runtimes receive). */
int mnist_edge_predict_normalized(const float x[MNIST_EDGE_INPUT_SIZE], float logits[MNIST_EDGE_NUM_CLASSES]);

/* n normalised images one after another -> n rows of logits. */
void mnist_edge_predict_normalized_batch(const float *x, int32_t n, float *logits);

extern const char *const mnist_edge_class_names[MNIST_EDGE_NUM_CLASSES];
extern const char mnist_edge_metadata_json[];  /* the mnist-edge model metadata, JSON */
extern const int32_t mnist_edge_num_classes;
extern const int32_t mnist_edge_abi_version;   /* {ABI_VERSION} */

#ifdef __cplusplus
}}
#endif

#endif /* MNIST_EDGE_MODEL_H */
"""


_README = """mnist-edge C model: plain C99, no runtime, no malloc, no stdio, no libm.

Files: mnist_edge_model.c, mnist_edge_model.h (compile the .c with your firmware).
Use:   #include "mnist_edge_model.h"
       float logits[MNIST_EDGE_NUM_CLASSES];
       int digit = mnist_edge_predict(pixels, logits);   /* pixels: uint8_t[784], 0..255 */
Build: any C99 compiler with IEEE-754 float32, e.g. gcc -std=c99 -O2 -c mnist_edge_model.c
       Do not use -ffast-math (the file refuses it). With compilers other than GCC/clang, turn off
       floating-point contraction (fused multiply-add): the results are then bit-identical to
       ONNX Runtime running model.int8.onnx.
Not reentrant: one call at a time (static scratch buffers, fully rewritten by each call).
Model metadata: the comment block at the top of the .c and the string mnist_edge_metadata_json.
"""


# --- the exporter ---------------------------------------------------------------------------------

def _source_metadata(proto, source: str) -> ModelMetadata:
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{source}: not an mnist-edge model (no mnist-edge metadata)")
    return ModelMetadata.from_json(props[METADATA_KEY], source)


def generate(onnx_path: Path) -> tuple[str, str, ModelMetadata]:
    """Read a verified int8 QDQ ONNX file -> (.c text, .h text, metadata); refuses what it cannot map."""
    try:
        proto = onnx.load_model(str(onnx_path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ExportError(f"{onnx_path}: cannot read the int8 ONNX model ({first_line(e, 120)})") from None
    src_meta = _source_metadata(proto, str(onnx_path))
    prog = read_program(proto, str(onnx_path), tuple(src_meta.input_shape))
    if prog.num_classes != len(src_meta.class_names):
        raise ExportError(f"{onnx_path}: the model has {prog.num_classes} outputs but "
                          f"{len(src_meta.class_names)} class names")
    recipe = f"{src_meta.quantization or 'int8'}; as C99 integer kernels, bit-exact with onnxruntime"
    meta = replace(src_meta, quantization=recipe)
    c_text, h_text = emit_c(prog, meta)
    return c_text, h_text, meta


def export(job, fmt: Format, tmp: Path) -> ModelMetadata:
    """Generate the C model from the verified int8 ONNX file into the folder `tmp` (.c, .h, README.txt).

    The orchestrator then holds it to the int8 ONNX model's logits bit for bit (the row's reference).
    """
    c_text, h_text, meta = generate(Path(job.sources[fmt.source]))
    write_files(c_text, h_text, tmp)
    return meta


def write_files(c_text: str, h_text: str, folder: Path) -> Path:
    """The .h, README.txt and .c into `folder`; returns the .c's path."""
    (folder / H_FILE).write_text(h_text, "utf-8")
    (folder / README_FILE).write_text(_README, "utf-8")
    (folder / C_FILE).write_text(c_text, "utf-8")
    return folder / C_FILE
