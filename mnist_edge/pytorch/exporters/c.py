"""C99 export: plain, runtime-free C generated from the verified int8 QDQ ONNX model.

The generated code computes the exact integer semantics of the QDQ graph (quant/reference.py), bit for
bit, which is also what ONNX Runtime's CPU provider computes wherever its kernels sum in int32:
QuantizeLinear divides by the scale and rounds half to even; Conv and Gemm accumulate in int32 and
requantise with ONE float32 multiply by (x_scale * w_scale) / y_scale (MLAS's MlasRequantizeOutput);
MaxPool, Reshape and Relu work on the uint8 values; ReduceMean dequantises and sums in float32 in the
order of Eigen's 4-float packet reduction, which is what ORT's ReduceMean runs. Any graph outside that
set is refused with one line naming the op or attribute: the generator never emits approximate C.

The kernels are C files of their own (mnist_edge/edge/c/), copied into the generated .c so that the
model stays one .c and one .h a firmware compiles; this file writes the model's tables and the calls.
The graph reader is quant/graph.py and the runtime that compiles and runs the result is edge/runtimes/c.py.
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
from mnist_edge.edge.runtimes.c import ABI_VERSION, C_FILE, C_MARKER, H_FILE, KERNELS_H, kernel_source
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


# the kernel files the model's steps call, in the order they are copied into the .c
_KERNELS = {"conv": "conv2d.c", "maxpool": "maxpool2d.c", "mean": "global_mean.c", "gemm": "gemm.c",
            "relu": "relu_u8.c"}


def conv_weights(w: np.ndarray) -> np.ndarray:
    """Conv weights (cout, cin, kh, kw) in conv2d.c's layout: rows zero-padded to kp (a multiple of 4), each
    4 in the order 0, 2, 1, 3 (what SXTB16 and SXTB16 ROR #8 pair with the int16 patch), channels in
    pairs whose rows interleave 4 at a time, an odd last channel's row alone at the end."""
    rows = w.reshape(w.shape[0], -1)
    cout, kp = rows.shape[0], -(-rows.shape[1] // 4) * 4
    padded = np.zeros((cout, kp), np.int8)
    padded[:, :rows.shape[1]] = rows
    groups = padded.reshape(cout, kp // 4, 4)[:, :, [0, 2, 1, 3]]
    even = cout - cout % 2
    pairs = groups[:even].reshape(even // 2, 2, kp // 4, 4).transpose(0, 2, 1, 3)  # (pair, group, channel, 4)
    return np.concatenate([pairs.reshape(-1), groups[even:].reshape(-1)])


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
        self.patch_size = self.tmp_size = self.pool_size = 0
        self.marks = 0  # profiling marks: 0 after the input is quantized, then one after each layer

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
            if s.kind != "flatten":
                self.marks += 1
                self.calls.append(f"MNIST_EDGE_MARK({self.marks});  /* {_comment(_layer_name(s, pool))} */")
            i += 2 if pool else 1
        self.out_buf = f"buf_{src}"

    def _weights(self, i: int, s: Step, w: np.ndarray | None = None, layout: str = "") -> str:
        self.consts.append(f"/* layer {i}: {s.kind} {_comment(repr(s.node))}, {s.in_shape} -> {s.out_shape}"
                           f"{layout} */\n")
        self.consts.append(_c_array("int8_t", f"w{i}", s.args["w"] if w is None else w))
        self.consts.append(_c_array("int32_t", f"b{i}", s.args["bias"], _i32, 12))
        self.consts.append(_c_array("float", f"m{i}", _requant_multipliers(s.in_q, s.args["wscale"], s.out_q),
                                    _f32, 6))
        return f"w{i}, b{i}, m{i}"

    def _conv(self, i: int, s: Step, pool: Step | None, x: str, y: str) -> None:
        (cin, h, w), cout = s.in_shape, s.out_shape[0]
        (kh, kw), (sh, sw), (pt, pl) = s.args["k"], s.args["s"], s.args["p"]
        (pkh, pkw), (psh, psw) = (pool.args["k"], pool.args["s"]) if pool else ((1, 1), (1, 1))
        _, ph, pw = (pool or s).out_shape
        kp = -(-cin * kh * kw // 4) * 4
        fields = 2 if pool or ph * pw > 1 else 1  # two receptive fields a pass; one where a map has one output
        self.patch_size = max(self.patch_size, fields * kp)
        if pool:
            self.pool_size = max(self.pool_size, cout)  # a pool window's largest sum per channel
        consts = self._weights(i, s, conv_weights(s.args["w"]),
                               f"; {cout} x {kp} weights in conv2d's layout")
        self.consts.append(f"static const conv_geom g{i} = {{.cin = {cin}, .h = {h}, .w = {w}, .cout = {cout}, "
                           f".kh = {kh}, .kw = {kw}, .sh = {sh}, .sw = {sw}, .pt = {pt}, .pl = {pl},\n"
                           f"    .pkh = {pkh}, .pkw = {pkw}, .psh = {psh}, .psw = {psw}, .ph = {ph}, .pw = {pw}, "
                           f".kp = {kp}}};\n")
        self.calls.append(f"conv2d(&g{i}, {x}, {s.in_q.zero_point}, {consts}, {s.out_q.zero_point}, {y}, patch.v, "
                          f"{'pool_max' if pool else '(int32_t *)0'});"
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
            lines.append(f"static union {{ int32_t align; int16_t v[{self.patch_size}]; }} patch;  "
                         "/* Conv receptive fields (im2col), word aligned */")
        if self.pool_size:
            lines.append(f"static int32_t pool_max[{self.pool_size}];  /* a pool window's largest Conv sums */")
        if self.tmp_size:
            lines.append(f"static float mean_tmp[{self.tmp_size}];  /* one channel of a global mean */")
        return "\n".join(lines) + "\n"

    def ram_bytes(self) -> int:
        return self.size["a"] + max(self.size["b"], 1) + 2 * self.patch_size + 4 * (self.tmp_size + self.pool_size)


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
        f"   Bit-exact with the int8 graph's integer semantics on the same normalised input; see\n"
        "   mnist_edge_model.h. */\n",
        _metadata_comment(meta_json),
        '\n#include "mnist_edge_model.h"\n\n',
        kernel_source(KERNELS_H),
        *("\n" + kernel_source(_KERNELS[kd]) for kd in _kinds(prog)),
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
/* Profiling hook: compiled with -DMNIST_EDGE_MARK_HOOK=f, the network calls f(step) after each layer
   (step 0: the input is quantized); without it the marks compile to nothing. */
#ifdef MNIST_EDGE_MARK_HOOK
void MNIST_EDGE_MARK_HOOK(int32_t step);
#define MNIST_EDGE_MARK(step) MNIST_EDGE_MARK_HOOK(step)
#else
#define MNIST_EDGE_MARK(step) ((void)0)
#endif

/* the quantized network on buf_a (the quantized input); dequantized logits out, top-1 class returned */
static int run_network(float *logits)
{{
    int32_t j, best = 0;
    MNIST_EDGE_MARK(0);  /* input quantized */
    {body}
    for (j = 0; j < {k}; ++j) {{
        /* the top-1 on the uint8 outputs: dequantizing is strictly increasing in them (a positive scale) */
        if ({out}[j] > {out}[best]) best = j;
        if (logits) logits[j] = (float)((int32_t){out}[j] - {out_zp}) * {out_scale};  /* DequantizeLinear */
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


def _layer_name(s: Step, pool: Step | None) -> str:
    """A layer as the profile names it, e.g. "conv 3x3 16->32 + maxpool 2x2"."""
    if s.kind == "conv":
        name = f"conv {s.args['k'][0]}x{s.args['k'][1]} {s.in_shape[0]}->{s.out_shape[0]}"
        return name + (f" + maxpool {pool.args['k'][0]}x{pool.args['k'][1]}" if pool else "")
    if s.kind == "gemm":
        return f"fc {s.in_shape[0]}->{s.out_shape[0]}"
    if s.kind == "maxpool":
        return f"maxpool {s.args['k'][0]}x{s.args['k'][1]}"
    return {"mean": "global mean", "relu": "relu"}.get(s.kind, s.kind)


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

   Results are bit-identical to the exact integer semantics of model.int8.onnx on the same float input
   (what ONNX Runtime's CPU kernels compute too wherever they sum in int32), when compiled as ISO C99
   with IEEE-754 float32 and without -ffast-math.

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

Files: mnist_edge_model.c, mnist_edge_model.h (compile the .c with your firmware);
       example-mps2-an386/: a bare-metal firmware around them (make run: QEMU's Cortex-M4F board).
Use:   #include "mnist_edge_model.h"
       float logits[MNIST_EDGE_NUM_CLASSES];
       int digit = mnist_edge_predict(pixels, logits);   /* pixels: uint8_t[784], 0..255 */
Build: any C99 compiler with IEEE-754 float32, e.g. gcc -std=c99 -O2 -c mnist_edge_model.c
       Do not use -ffast-math (the file refuses it). With compilers other than GCC/clang, turn off
       floating-point contraction (fused multiply-add): the results are then bit-identical to the
       exact integer semantics of model.int8.onnx (mnist-edge check holds them to it).
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
    recipe = f"{src_meta.quantization or 'int8'}; as C99 integer kernels, bit-exact with its integer semantics"
    meta = replace(src_meta, quantization=recipe)
    c_text, h_text = emit_c(prog, meta)
    return c_text, h_text, meta


def export(job, fmt: Format, tmp: Path) -> ModelMetadata:
    """Generate the C model from the verified int8 ONNX file into the folder `tmp` (.c, .h, README.txt), with
    a bare-metal example firmware beside it (EXAMPLE_DIR).

    The orchestrator then holds it to the int8 ONNX model's logits bit for bit (the row's reference).
    """
    src = Path(job.sources[fmt.source])
    c_text, h_text, meta = generate(src)
    write_files(c_text, h_text, tmp)
    write_example(tmp / EXAMPLE_DIR, src, meta, example_digits(getattr(job, "calibration", None), meta))
    return meta


# --- the example firmware -------------------------------------------------------------------------

EXAMPLE_DIR = "example-mps2-an386"
EXAMPLE_DIGITS = 6
_EXAMPLE_FILES = ("startup.c", "semihost.h", "cortex_m.ld", "example/main.c", "example/Makefile", "example/README.md")


def example_digits(calibration: np.ndarray | None, meta: ModelMetadata) -> np.ndarray:
    """(EXAMPLE_DIGITS, 28, 28) uint8: the first calibration (training) images as raw pixels, else bars."""
    if calibration is not None and len(calibration) >= EXAMPLE_DIGITS:
        x = calibration[:EXAMPLE_DIGITS, 0].astype(np.float64)  # normalised: back to 0..255
        return np.clip(np.rint((x * meta.std + meta.mean) * 255.0), 0, 255).astype(np.uint8)
    digits = np.zeros((EXAMPLE_DIGITS, 28, 28), np.uint8)
    for i in range(EXAMPLE_DIGITS):
        digits[i, 6:22, 12 - i:15 + i] = 255  # vertical bars of growing width
    return digits


def write_example(folder: Path, onnx_path: Path, meta: ModelMetadata, digits: np.ndarray) -> None:
    """The example firmware (edge/cortex_m/example) with the digits and the classes the int8 model gives them."""
    from mnist_edge.edge.runtimes.cortex_m import FIRMWARE_DIR
    from mnist_edge.quant.reference import reference_logits

    expected = reference_logits(onnx_path, meta.normalize(digits)).argmax(1)
    folder.mkdir()
    for name in _EXAMPLE_FILES:
        (folder / Path(name).name).write_text((FIRMWARE_DIR / name).read_text("utf-8"), "utf-8")
    rows = ",\n".join("    {" + ", ".join(map(str, d.ravel().tolist())) + "}" for d in digits)
    (folder / "digits.h").write_text(
        f"/* digits.h: generated by mnist-edge: {len(digits)} images (raw pixels, 0..255) and the class\n"
        f"   model.int8.onnx gives each (its exact integer semantics). */\n"
        "#ifndef EXAMPLE_DIGITS_H\n#define EXAMPLE_DIGITS_H\n\n#include <stdint.h>\n\n"
        "#include \"mnist_edge_model.h\"\n\n"
        f"#define EXAMPLE_DIGITS {len(digits)}\n\n"
        f"static const uint8_t example_pixels[EXAMPLE_DIGITS][MNIST_EDGE_INPUT_SIZE] = {{\n{rows}\n}};\n\n"
        f"static const int example_expected[EXAMPLE_DIGITS] = {{{', '.join(map(str, expected.tolist()))}}};\n\n"
        "#endif /* EXAMPLE_DIGITS_H */\n", "utf-8")


def write_files(c_text: str, h_text: str, folder: Path) -> Path:
    """The .h, README.txt and .c into `folder`; returns the .c's path."""
    (folder / H_FILE).write_text(h_text, "utf-8")
    (folder / README_FILE).write_text(_README, "utf-8")
    (folder / C_FILE).write_text(c_text, "utf-8")
    return folder / C_FILE
