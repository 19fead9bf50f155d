"""The int8 QDQ ONNX graph, read into integer-domain steps (numpy and onnx only).

The steps are what quant/reference.py evaluates exactly and what the C generator (pytorch/exporters/c.py)
translates. Every op, attribute and quantization outside what they reproduce bit for bit is refused here
with one ExportError line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from mnist_edge.core.errors import ExportError

SUPPORTED_OPS = "Conv, MaxPool, ReduceMean (global average), Gemm, Reshape/Flatten, Relu"


@dataclass(frozen=True)
class QParams:
    """A per-tensor uint8 quantization: real = (q - zero_point) * scale."""

    scale: np.float32
    zero_point: int


@dataclass
class Step:
    """One layer of the integer program: `kind` picks the C kernel, `args` its constants."""

    kind: str  # "conv" | "maxpool" | "mean" | "gemm" | "relu" | "flatten"
    node: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_q: QParams
    out_q: QParams
    args: dict = field(default_factory=dict)


@dataclass
class Program:
    """The whole model: input quantization, steps, output dequantization."""

    input_q: QParams
    input_shape: tuple[int, ...]
    steps: list[Step]
    output_q: QParams

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.steps[-1].out_shape)) if self.steps else 0


class _Graph:
    """Indexes an ONNX graph by tensor name and reads its QDQ constants, refusing what it cannot map."""

    def __init__(self, proto, source: str):
        from onnx import numpy_helper

        self.source = source
        g = proto.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = []
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                attr = {a.name: a for a in n.attribute}
                if "value" not in attr:
                    self.refuse("Constant", n.name, "without a tensor value")
                self.consts[n.output[0]] = numpy_helper.to_array(attr["value"].t)
            else:
                self.nodes.append(n)
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            if n.domain not in ("", "ai.onnx"):
                self.refuse(n.op_type, n.name, f"from domain {n.domain!r}")
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.inputs = [i for i in g.input if i.name not in self.consts]
        self.outputs = list(g.output)
        self.visited: set[int] = set()

    def refuse(self, op: str, node: str, why: str) -> NoReturn:
        where = f" (node {node!r})" if node else ""
        raise ExportError(f"{self.source}: C export cannot translate {op}{where} exactly: {why}; "
                          f"supported: {SUPPORTED_OPS} in onnxruntime QDQ form")

    def only_consumer(self, tensor: str, after: str) -> object | None:
        users = self.consumers.get(tensor, [])
        if len(users) > 1:
            self.refuse(users[1].op_type, users[1].name, f"the output of {after} feeds several nodes")
        if users:
            self.visited.add(id(users[0]))
        return users[0] if users else None

    def const(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            self.refuse(node.op_type, node.name, f"input {name!r} is not a constant")
        return self.consts[name]

    def attrs(self, node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def qparams(self, node) -> QParams:
        """Scale and zero point of a per-tensor uint8 QuantizeLinear/DequantizeLinear."""
        scale = self.const(node.input[1], node)
        zp = self.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        if scale.dtype != np.float32 or scale.size != 1:
            self.refuse(node.op_type, node.name, f"activation scale of dtype {scale.dtype}, shape {scale.shape}"
                        " (expected one float32)")
        if zp is None or zp.dtype != np.uint8 or zp.size != 1:
            dtype = "none" if zp is None else zp.dtype
            self.refuse(node.op_type, node.name, f"activation zero point of dtype {dtype} (expected uint8)")
        if not float(scale.reshape(())) > 0 or not np.isfinite(scale).all():
            self.refuse(node.op_type, node.name, f"activation scale {float(scale.reshape(()))} is not positive")
        return QParams(np.float32(scale.reshape(())), int(zp.reshape(())))

    def weights(self, name: str, user, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
        """int8 weights and their per-output-channel float32 scales from DequantizeLinear(initializer)."""
        dq = next((n for n in self.nodes if name in n.output), None)
        if dq is None or dq.op_type != "DequantizeLinear":
            self.refuse(user.op_type, user.name, f"weight {name!r} is not a DequantizeLinear of int8 constants")
        self.visited.add(id(dq))
        w = self.const(dq.input[0], dq)
        scale = self.const(dq.input[1], dq)
        zp = self.const(dq.input[2], dq) if len(dq.input) > 2 and dq.input[2] else np.zeros(1, w.dtype)
        axis = self.attrs(dq).get("axis", 1)
        if w.dtype != np.int8:
            self.refuse(user.op_type, user.name, f"weights of dtype {w.dtype} (expected int8)")
        if np.any(zp != 0):
            self.refuse(user.op_type, user.name, "non-zero weight zero point")
        if scale.dtype != np.float32 or not np.all(scale > 0):
            self.refuse(user.op_type, user.name, "weight scales that are not positive float32")
        cout = w.shape[out_axis]
        if scale.size == 1:  # per-tensor: ORT multiplies by the same one scale for every channel
            scale = np.full(cout, scale.reshape(()), np.float32)
        elif scale.shape != (cout,) or axis % w.ndim != out_axis:
            self.refuse(user.op_type, user.name, f"weight scales of shape {scale.shape} on axis {axis} "
                        f"(expected per-tensor or per-output-channel on axis {out_axis})")
        return w, scale.astype(np.float32)

    def bias(self, node, index: int, cout: int) -> np.ndarray:
        """The int32 bias ORT's QLinearConv/QGemm take directly (its DequantizeLinear is dropped)."""
        if len(node.input) <= index or not node.input[index]:
            return np.zeros(cout, np.int32)
        name = node.input[index]
        dq = next((n for n in self.nodes if name in n.output), None)
        if dq is None or dq.op_type != "DequantizeLinear":
            self.refuse(node.op_type, node.name, "a float bias (expected DequantizeLinear of int32)")
        self.visited.add(id(dq))
        b = self.const(dq.input[0], dq)
        zp = self.const(dq.input[2], dq) if len(dq.input) > 2 and dq.input[2] else np.zeros(1, np.int32)
        if b.dtype != np.int32 or b.size != cout or np.any(zp != 0):
            self.refuse(node.op_type, node.name, f"bias of dtype {b.dtype}, {b.size} values (expected {cout} "
                        "int32 with zero point 0)")
        return b.reshape(cout)


def _conv_step(g: _Graph, node, shape, in_q) -> Step:
    a = g.attrs(node)
    w, wscale = g.weights(node.input[1], node, 0)
    if len(shape) != 3 or w.ndim != 4:
        g.refuse("Conv", node.name, f"input of shape {shape} (expected 2-D images)")
    cout, cin, kh, kw = w.shape
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        g.refuse("Conv", node.name, f"auto_pad={a['auto_pad']!r}")
    if a.get("group", 1) != 1 or cin != shape[0]:
        g.refuse("Conv", node.name, f"group={a.get('group', 1)} (only group=1)")
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        g.refuse("Conv", node.name, f"dilations={list(a['dilations'])}")
    if list(a.get("kernel_shape", [kh, kw])) != [kh, kw]:
        g.refuse("Conv", node.name, f"kernel_shape={list(a['kernel_shape'])} disagrees with the weights")
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    oh, ow = (shape[1] + pt + pb - kh) // sh + 1, (shape[2] + pl + pr - kw) // sw + 1
    if min(sh, sw) < 1 or min(pt, pl, pb, pr) < 0 or min(oh, ow) < 1:
        g.refuse("Conv", node.name, f"strides={[sh, sw]} pads={[pt, pl, pb, pr]}")
    bias = g.bias(node, 2, cout)
    return Step("conv", node.name, shape, (cout, oh, ow), in_q, in_q,
                dict(w=w, wscale=wscale, bias=bias, k=(kh, kw), s=(sh, sw), p=(pt, pl)))


def _gemm_step(g: _Graph, node, shape, in_q) -> Step:
    a = g.attrs(node)
    if len(shape) != 1:
        g.refuse("Gemm", node.name, f"input of shape {shape} (expected a flat vector per image)")
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        g.refuse("Gemm", node.name, f"transA={a.get('transA', 0)} alpha={a.get('alpha', 1.0)} "
                 f"beta={a.get('beta', 1.0)} (expected 0, 1, 1)")
    trans_b = a.get("transB", 0)
    w, wscale = g.weights(node.input[1], node, 0 if trans_b else 1)
    w = w if trans_b else w.T  # stored as [out][in] either way; a transpose is exact
    if w.ndim != 2 or w.shape[1] != shape[0]:
        g.refuse("Gemm", node.name, f"weights of shape {w.shape} for {shape[0]} inputs")
    bias = g.bias(node, 2, w.shape[0])
    return Step("gemm", node.name, shape, (w.shape[0],), in_q, in_q,
                dict(w=np.ascontiguousarray(w), wscale=wscale, bias=bias))


def _maxpool_step(g: _Graph, node, shape, in_q) -> Step:
    a = g.attrs(node)
    if len(node.output) > 1 and node.output[1]:
        g.refuse("MaxPool", node.name, "an Indices output")
    if len(shape) != 3:
        g.refuse("MaxPool", node.name, f"input of shape {shape}")
    kh, kw = a.get("kernel_shape", [0, 0])
    sh, sw = a.get("strides", [1, 1])
    defaults = {"pads": [0, 0, 0, 0], "dilations": [1, 1], "ceil_mode": 0, "storage_order": 0}
    bad = {k: a[k] for k, v in defaults.items() if k in a and (list(a[k]) if isinstance(v, list) else a[k]) != v}
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        bad["auto_pad"] = a["auto_pad"]
    if bad or min(kh, kw, sh, sw) < 1 or kh > shape[1] or kw > shape[2]:
        g.refuse("MaxPool", node.name, ", ".join(f"{k}={v}" for k, v in bad.items()) or f"kernel {[kh, kw]}")
    oh, ow = (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1
    return Step("maxpool", node.name, shape, (shape[0], oh, ow), in_q, in_q, dict(k=(kh, kw), s=(sh, sw)))


def _mean_step(g: _Graph, node, shape, in_q) -> Step:
    a = g.attrs(node)
    axes = g.const(node.input[1], node).tolist() if len(node.input) > 1 and node.input[1] else a.get("axes")
    if len(shape) != 3 or axes is None or sorted(int(x) % 4 for x in axes) != [2, 3]:
        g.refuse("ReduceMean", node.name, f"axes={axes} (only the global average over H, W)")
    out = (shape[0], 1, 1) if a.get("keepdims", 1) else (shape[0],)
    return Step("mean", node.name, shape, out, in_q, in_q)


def _flatten_step(g: _Graph, node, shape, in_q) -> Step:
    size = int(np.prod(shape))
    if node.op_type == "Flatten":
        if g.attrs(node).get("axis", 1) != 1:
            g.refuse("Flatten", node.name, f"axis={g.attrs(node)['axis']} (only axis=1)")
    else:
        target = g.const(node.input[1], node).tolist()
        batch_ok = target[:1] == [-1] or (target[:1] == [0] and not g.attrs(node).get("allowzero", 0))
        if len(target) != 2 or not batch_ok or target[1] not in (size, -1) or target == [-1, -1]:
            g.refuse("Reshape", node.name, f"shape {target} (only a flatten to [batch, {size}])")
    return Step("flatten", node.name, shape, (size,), in_q, in_q)


def _relu_step(g: _Graph, node, shape, in_q) -> Step:
    return Step("relu", node.name, shape, shape, in_q, in_q)


_STEP_READERS = {"Conv": _conv_step, "Gemm": _gemm_step, "MaxPool": _maxpool_step, "ReduceMean": _mean_step,
                 "Reshape": _flatten_step, "Flatten": _flatten_step, "Relu": _relu_step}
_FLATTENS = ("Reshape", "Flatten", "Squeeze")  # dropping the 1x1 of a keepdims mean (only there)
_SAME_QPARAMS = {"maxpool", "flatten", "relu"}  # ORT runs these on uint8 only when in/out params agree


def read_program(proto, source: str, input_shape: tuple[int, ...]) -> Program:
    """Walk the QDQ chain input -> Q -> (DQ -> op -> Q)* -> DQ -> logits into integer steps."""
    g = _Graph(proto, source)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        g.refuse("graph", "", f"{len(g.inputs)} inputs and {len(g.outputs)} outputs (expected 1 and 1)")
    dims = [d.dim_value or d.dim_param for d in g.inputs[0].type.tensor_type.shape.dim]
    if dims[1:] != list(input_shape):
        g.refuse("graph", "", f"input shape {dims} (expected [batch, {', '.join(map(str, input_shape))}])")
    q = g.only_consumer(g.inputs[0].name, "the input")
    if q is None or q.op_type != "QuantizeLinear":
        g.refuse(q.op_type if q else "graph", q.name if q else "", "the input is not quantized first")
    input_q, cur, shape, steps = g.qparams(q), q.output[0], tuple(input_shape), []
    cur_q = input_q
    while True:
        dq = g.only_consumer(cur, "a QuantizeLinear")
        if dq is None or dq.op_type != "DequantizeLinear":
            g.refuse(dq.op_type if dq else "graph", dq.name if dq else "",
                     "a quantized tensor without its DequantizeLinear")
        if g.qparams(dq) != cur_q:
            g.refuse("DequantizeLinear", dq.name, "scale or zero point differ from its QuantizeLinear")
        if dq.output[0] == g.outputs[0].name:
            break
        op = g.only_consumer(dq.output[0], "a DequantizeLinear")
        if op is None:
            g.refuse("graph", "", f"tensor {dq.output[0]!r} leads nowhere")
        if op.op_type not in _STEP_READERS:
            g.refuse(op.op_type, op.name, "op not supported")
        step = _STEP_READERS[op.op_type](g, op, shape, cur_q)
        nq = g.only_consumer(op.output[0], op.op_type)
        while step.kind == "mean" and nq is not None and nq.op_type in _FLATTENS:
            # mean(keepdim=True) then squeeze/flatten: (C, 1, 1) -> (C,) moves no data; ORT quantizes after it
            step.out_shape = (shape[0],)
            op, nq = nq, g.only_consumer(nq.output[0], nq.op_type)
        if step.kind == "mean" and shape[1:] == (1, 1) and nq is None and op.output[0] == g.outputs[0].name:
            # a float mean of one value at the graph's end is that value: the logits are the dequantized map
            steps.append(Step("flatten", step.node, shape, (shape[0],), cur_q, cur_q))
            shape = (shape[0],)
            break
        if nq is None or nq.op_type != "QuantizeLinear":
            g.refuse(op.op_type, op.name, f"its output is {'used by ' + nq.op_type if nq else 'a float graph output'}"
                     " (expected a QuantizeLinear)")
        step.out_q = g.qparams(nq)
        if step.kind in _SAME_QPARAMS and step.out_q != step.in_q:
            g.refuse(op.op_type, op.name, "input and output quantization differ")
        steps.append(step)
        cur, cur_q, shape = nq.output[0], step.out_q, step.out_shape
    stray = [n for n in g.nodes if id(n) not in g.visited]
    if stray:
        g.refuse(stray[0].op_type, stray[0].name, "node outside the single QDQ chain")
    layers = [s.kind for s in steps if s.kind not in ("flatten", "relu")]
    if len(shape) != 1 or not ("gemm" in layers or layers[-1:] == ["conv"]):
        g.refuse("graph", "", f"the output has shape {shape} (expected logits from a Gemm, or a Conv to 1x1)")
    _check_accumulators(g, steps)
    return Program(input_q, tuple(input_shape), steps, cur_q)


def _check_accumulators(g: _Graph, steps: list[Step]) -> None:
    """Refuse weights whose worst-case int32 accumulator could overflow (ORT would wrap differently)."""
    for s in steps:
        if s.kind in ("conv", "gemm"):
            w = s.args["w"].reshape(s.args["w"].shape[0], -1).astype(np.int64)
            worst = np.abs(w).sum(1) * 255 + np.abs(s.args["bias"].astype(np.int64))
            if worst.max() >= 2**31:
                g.refuse("Conv" if s.kind == "conv" else "Gemm", s.node, "its int32 accumulator could overflow")
