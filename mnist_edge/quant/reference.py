"""The exact integer semantics of an int8 QDQ ONNX model, in numpy: the same answer on every CPU.

What the int8 graph computes is defined here by arithmetic, not by one runtime's kernels:
- QuantizeLinear: x / scale in float32, clamped to the uint8 range, rounded half to even, plus the zero point.
- Conv and Gemm (QLinearConv / QGemm): exact integer sums of (x - x_zero_point) * w plus the int32 bias, then
  ONE float32 multiply by (x_scale * w_scale) / y_scale, rounded half to even (MLAS's requantisation).
- MaxPool, Relu, Reshape/Flatten: on the uint8 values.
- The global average pool: DequantizeLinear, a float32 sum in the order of Eigen's 4-float packet
  reduction (what ONNX Runtime's ReduceMean runs), divided by the count, QuantizeLinear.
- The logits: DequantizeLinear.

The generated C (pytorch/exporters/c.py) computes exactly this and is held to it bit for bit; ONNX Runtime
computes it wherever its kernels sum without saturating (see runtime_exactness()). Integer sums are done
as float matrix products (BLAS): float32 where no partial sum can reach 2**24, float64 otherwise, so every
partial sum is an exact integer, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ExportError, ModelFileError, first_line
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.quant.graph import Program, Step, read_program

CHUNK = 500  # images per pass: the first conv's patches of 500 images take ~80 MB
_ROUNDER = np.float32(12582912.0)  # 1.5 * 2**23: adding it leaves no fraction bits (round half to even)


def to_u8(v: np.ndarray, zp: int) -> np.ndarray:
    """v (already divided by the output scale, float32) -> uint8: clamp (NaN to the low end), round, add zp."""
    lo, hi = np.float32(-zp), np.float32(255 - zp)
    v = np.where(v >= lo, v, lo).astype(np.float32)  # !(v >= lo): NaN goes to lo, as MLAS's max() does
    v = np.minimum(v, hi)
    r = (v + _ROUNDER) - _ROUNDER  # float32 arithmetic: ties go to even, as the C and cvtps2dq do
    return (r.astype(np.int32) + zp).astype(np.uint8)


def quantize(x: np.ndarray, scale: np.float32, zp: int) -> np.ndarray:
    return to_u8((x.astype(np.float32) / np.float32(scale)).astype(np.float32), zp)


def multipliers(step: Step) -> np.ndarray:
    """ORT's requantisation multiplier per output channel, in its float32 order: (x_scale * w_scale) / y_scale."""
    w_scale = step.args["wscale"].astype(np.float32)
    return ((np.float32(step.in_q.scale) * w_scale) / np.float32(step.out_q.scale)).astype(np.float32)


def _requantize(acc: np.ndarray, step: Step, channel_axis: int) -> np.ndarray:
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m = multipliers(step).reshape(shape)
    return to_u8((acc.astype(np.float32) * m).astype(np.float32), step.out_q.zero_point)


def _exact_dtype(w: np.ndarray) -> type:
    """float32 where every sum of |(x - zp) * w| over a dot product stays below 2**24 (exact), else float64."""
    worst = np.abs(w.reshape(len(w), -1).astype(np.int64)).sum(1).max() * 255 if w.size else 0
    return np.float32 if worst < 2**24 else np.float64


def _conv(x: np.ndarray, step: Step) -> np.ndarray:
    """(N, Cin, H, W) uint8 -> (N, Cout, OH, OW) uint8; padding is the zero point (0 after subtracting it)."""
    w, bias = step.args["w"], step.args["bias"]
    (kh, kw), (sh, sw), (pt, pl) = step.args["k"], step.args["s"], step.args["p"]
    n, cin, h, wd = x.shape
    cout, oh, ow = step.out_shape
    pb = max(0, (oh - 1) * sh + kh - h - pt)
    pr = max(0, (ow - 1) * sw + kw - wd - pl)
    dtype = _exact_dtype(w)
    xs = np.pad(x.astype(dtype) - dtype(step.in_q.zero_point), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(xs, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, cin * kh * kw)  # one patch per row
    acc = cols @ w.reshape(cout, -1).T.astype(dtype)  # (N*OH*OW, Cout): one BLAS product, exact
    acc = acc.astype(np.int64) + bias.astype(np.int64)
    return _requantize(acc, step, 1).reshape(n, oh, ow, cout).transpose(0, 3, 1, 2)


def _maxpool(x: np.ndarray, step: Step) -> np.ndarray:
    (kh, kw), (sh, sw) = step.args["k"], step.args["s"]
    _, oh, ow = step.out_shape
    out = None
    for ky in range(kh):
        for kx in range(kw):
            win = x[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
            out = win if out is None else np.maximum(out, win)
    return out


def eigen_sum4(v: np.ndarray, mis: int) -> np.ndarray:
    """Sum over the last axis of float32 `v` in the order of Eigen's 4-float packet reduction.

    `mis`: how many floats the row starts past a 16-byte boundary in ORT's buffer. The same algorithm as
    eigen_sum4 in the generated C, vectorised over the leading axes.
    """
    n = v.shape[-1]
    start = min((4 - mis) & 3, n)
    end1 = start + (n - start) // 4 * 4
    end2 = start + (n - start) // 8 * 8
    if end1 == start:
        res = v[..., 0]
        for i in range(1, n):
            res = res + v[..., i]
        return res
    p0 = v[..., start:start + 4].copy()
    if end1 - start > 4:
        p1 = v[..., start + 4:start + 8].copy()
        for i in range(start + 8, end2, 8):
            p0 = p0 + v[..., i:i + 4]
            p1 = p1 + v[..., i + 4:i + 8]
        p0 = p0 + p1
        if end1 > end2:
            p0 = p0 + v[..., end2:end2 + 4]
    res = (p0[..., 0] + p0[..., 2]) + (p0[..., 1] + p0[..., 3])
    for i in range(start):
        res = res + v[..., i]
    for i in range(end1, n):
        res = res + v[..., i]
    return res


def _mean(x: np.ndarray, step: Step) -> np.ndarray:
    n, c, h, w = x.shape
    hw = h * w
    vals = ((x.reshape(n, c, hw).astype(np.int32) - step.in_q.zero_point).astype(np.float32)
            * np.float32(step.in_q.scale)).astype(np.float32)
    sums = np.empty((n, c), np.float32)
    for mis in range(4):  # channel rows start at ch * hw floats into ORT's 64-byte aligned buffer
        chans = [ch for ch in range(c) if (ch * hw) & 3 == mis]
        if chans:
            sums[:, chans] = eigen_sum4(vals[:, chans], mis)
    mean = (sums / np.float32(hw)).astype(np.float32)
    out = to_u8((mean / np.float32(step.out_q.scale)).astype(np.float32), step.out_q.zero_point)
    return out.reshape((n, *step.out_shape))


def _gemm(x: np.ndarray, step: Step) -> np.ndarray:
    dtype = _exact_dtype(step.args["w"])
    a = x.reshape(len(x), -1).astype(dtype) - dtype(step.in_q.zero_point)
    acc = (a @ step.args["w"].astype(dtype).T).astype(np.int64) + step.args["bias"].astype(np.int64)
    return _requantize(acc, step, 1)


def _relu(x: np.ndarray, step: Step) -> np.ndarray:
    return np.maximum(x, np.uint8(step.in_q.zero_point))


def _flatten(x: np.ndarray, step: Step) -> np.ndarray:
    return x.reshape(len(x), -1)


_KERNELS = {"conv": _conv, "maxpool": _maxpool, "mean": _mean, "gemm": _gemm, "relu": _relu, "flatten": _flatten}


def run_program(prog: Program, x: np.ndarray) -> np.ndarray:
    """Normalised float32 images (N, *input_shape) -> the int8 model's dequantized logits (N, classes)."""
    x = np.asarray(x, np.float32).reshape((-1, *prog.input_shape))
    out = np.empty((len(x), prog.num_classes), np.float32)
    for i in range(0, len(x), CHUNK):
        q = quantize(x[i:i + CHUNK], prog.input_q.scale, prog.input_q.zero_point)
        for step in prog.steps:
            q = _KERNELS[step.kind](q, step)
        q = q.reshape(len(q), -1)
        out[i:i + CHUNK] = ((q.astype(np.int32) - prog.output_q.zero_point).astype(np.float32)
                            * np.float32(prog.output_q.scale))
    return out


@dataclass
class IntegerReference:
    """The exact integer reference of one int8 ONNX file, usable wherever a Runtime is."""

    format: str
    path: Path
    metadata: ModelMetadata
    program: Program

    def run(self, x: np.ndarray) -> np.ndarray:
        return run_program(self.program, x)


def load(path: str | Path, format_name: str = "int8 reference") -> IntegerReference:
    """The integer reference of an mnist-edge int8 QDQ ONNX file; anything else is one line naming the file."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load_model(str(path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path}: cannot read the int8 ONNX model ({first_line(e, 120)})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
    meta = ModelMetadata.from_json(props[METADATA_KEY], str(path))
    try:
        prog = read_program(proto, str(path), tuple(meta.input_shape))
    except ExportError as e:
        raise ModelFileError(str(e)) from None
    return IntegerReference(format_name, path, meta, prog)


def reference_logits(path: str | Path, x: np.ndarray) -> np.ndarray:
    """The exact logits of the int8 ONNX file at `path` on normalised images `x`."""
    return load(path).run(x)


# --- which runtimes can be exact, and holding them to it --------------------------------------------

SEVEN_BITS = 64  # |w| <= 64: a pair of u8 x s8 products (2 * 255 * 64 = 32,640) fits int16


def widest_weight(program: Program) -> int:
    """The largest |int8 weight| of the program's Conv and Gemm layers."""
    return max((int(np.abs(s.args["w"].astype(np.int16)).max()) for s in program.steps if "w" in s.args), default=0)


def inexact_reason(rt, program: Program) -> str | None:
    """Why `rt` cannot compute the exact integer result on this CPU, or None where it must.

    ONNX Runtime's x86 U8S8 kernels without VNNI (AVX2: vpmaddubsw) add pairs of u8 x s8 products in
    int16, which saturates once weights use more than 7 bits; with VNNI (vpdpbusd) or on ARM they sum in
    int32. Every other runtime held to the reference (the C model, onnxruntime-web's wasm) sums in int32.
    """
    from mnist_edge.core.cpu import cpu_info, has_vnni
    from mnist_edge.edge.runtimes.onnx import OnnxRuntime

    if not isinstance(rt, OnnxRuntime) or cpu_info()["machine"] not in ("x86_64", "AMD64", "i686", "x86"):
        return None
    widest = widest_weight(program)
    if widest <= SEVEN_BITS or has_vnni():
        return None
    return (f"ONNX Runtime's x86 int8 kernels without VNNI add u8 x s8 products in int16 pairs, which saturates with "
            f"this file's 8-bit weights (up to ±{widest}); the default recipe's 7-bit weights are exact on every CPU")


def hold(out: np.ndarray, exact: np.ndarray, rt, program: Program, source: Path) -> tuple[list[str], dict]:
    """(failures, report) of logits `out` against the exact logits of the int8 file `source`."""
    d = float(np.abs(out.astype(np.float64) - exact).max()) if len(out) else 0.0
    agree = float((out.argmax(1) == exact.argmax(1)).mean()) if len(out) else 1.0
    why = inexact_reason(rt, program)
    report = {"against": f"integer reference of {source.name}", "max_abs_diff": d, "top1_agreement": agree,
              "bit_exact": d == 0.0, "expected": why is None, "why": why}
    failures = [] if d == 0.0 or why else [f"max |Δlogit| against the integer reference of {source.name} {d:.2e} "
                                           "> 0 (it must be bit-exact)"]
    return failures, report
