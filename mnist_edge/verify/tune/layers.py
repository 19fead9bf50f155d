"""Per-layer error of an int8 ONNX model: each Conv/Gemm output's SQNR against the fp32 model (onnx, onnxruntime).

Both models run on the same (calibration) images with every layer's output added as a graph output;
the int8 model's value of a tensor is its dequantized value (after the QuantizeLinear/DequantizeLinear
pair of a QDQ graph, or the dequantized output of a QOperator graph's QLinearConv/QGemm). As in
ONNX Runtime's qdq_loss_debug, SQNR = 10 log10(sum x^2 / sum (x - x_int8)^2) in dB: higher is better.
A layer's output SQNR carries what the layers before it lost; `loss_db`, its input's SQNR minus its
output's, is what the layer itself loses, and ranks the layers from most to least harmful.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.pytorch.exporters.onnx_int8 import LAYER_OPS

MAX_SQNR_DB = 120.0  # an exact copy (a layer left in fp32 on exact inputs) reads as this
BATCH = 50
_FOLLOW = ("Relu", "Clip")  # fused into the layer by the quantizer: its output is the layer's output
# A quantized tensor's scale and zero point are these inputs of the node that makes it (else: its input's)
_QPARAMS_AT = {"QuantizeLinear": (1, 2), "QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QGemm": (7, 8)}


@dataclass
class LayerError:
    node: str  # the fp32 graph's node name: what Int8Recipe.exclude takes
    op: str
    tensor: str  # the fp32 tensor compared (after a fused Relu)
    quantized: bool
    sqnr_db: float  # of the layer's output, int8 vs fp32
    input_sqnr_db: float
    loss_db: float  # input_sqnr_db - sqnr_db: what this layer itself loses

    def to_json(self) -> dict:
        return asdict(self)


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    noise = float(np.sum((x - y) ** 2))
    signal = float(np.sum(x ** 2))
    if noise <= signal * 10 ** (-MAX_SQNR_DB / 10):
        return MAX_SQNR_DB
    return float(10 * np.log10(max(signal, 1e-30) / noise))


def _load(path: Path):
    import onnx

    try:
        return onnx.load_model(str(path))
    except Exception as e:  # DecodeError and friends
        raise ModelFileError(f"{path}: not an ONNX model ({first_line(e, 120)})") from None


def _layers(fp32) -> list[tuple[object, str]]:
    """(node, output tensor) of every Conv/Gemm/MatMul, the output taken after a Relu that follows it alone."""
    consumers: dict[str, list] = {}
    for n in fp32.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    out = []
    for n in fp32.graph.node:
        if n.op_type in LAYER_OPS:
            t = n.output[0]
            users = consumers.get(t, [])
            if len(users) == 1 and users[0].op_type in _FOLLOW:
                t = users[0].output[0]
            out.append((n, t))
    return out


class _Int8Graph:
    """Where the int8 graph holds the value of an fp32 tensor, and how to dequantize it."""

    def __init__(self, proto, fp32_producer: dict[str, object]):
        from onnx import numpy_helper

        self.consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        self.producer = {o: n for n in proto.graph.node for o in n.output}
        self.tensors = set(self.producer) | {i.name for i in proto.graph.input}
        self.nodes = {n.name: n for n in proto.graph.node}
        self.fp32_producer = fp32_producer

    def find(self, t: str) -> tuple[str, tuple[str, str] | None] | None:
        """(int8 tensor name, (scale, zero point) names if it is still quantized) for the fp32 tensor t."""
        for name in (f"{t}_DequantizeLinear_Output", t):
            if name in self.tensors:
                return name, None
        names = [t]
        p = self.fp32_producer.get(t)
        if p is not None and p.op_type in _FOLLOW:  # QOperator fuses the Relu: its input is what is quantized
            names.append(p.input[0])
        for name in names:
            q = f"{name}_quantized"
            if q in self.producer:
                return q, self.qparams(q)
        return None

    def qparams(self, q: str) -> tuple[str, str]:
        n = self.producer[q]
        while n.op_type not in _QPARAMS_AT:  # MaxPool, Reshape, ... keep their input's quantization
            n = self.producer[n.input[0]]
        i, j = _QPARAMS_AT[n.op_type]
        return n.input[i], n.input[j]

    def quantized(self, node: str) -> bool:
        n = self.nodes.get(f"{node}_quant") or self.nodes.get(node)
        if n is None:
            return False
        if n.op_type.startswith("Q"):
            return True
        src = self.producer.get(n.input[0])
        return src is not None and src.op_type == "DequantizeLinear"

    def value(self, where: tuple[str, tuple[str, str] | None], raw: np.ndarray) -> np.ndarray:
        _, qp = where
        if qp is None:
            return raw
        scale, zp = (self.consts[qp[0]], self.consts[qp[1]])
        return (raw.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)


def _run_with_outputs(proto, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    have = {o.name for o in proto.graph.output}
    proto.graph.output.extend([onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in have])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, len(images), BATCH):
        res = dict(zip(outs, sess.run(outs, {sess.get_inputs()[0].name: images[i:i + BATCH]}), strict=True))
        for n in names:
            got[n].append(res[n])
    return {n: np.concatenate(v) for n, v in got.items()}


def layer_errors(int8_path: Path, fp32_path: Path, images: np.ndarray) -> list[LayerError]:
    """Every Conv/Gemm/MatMul of the fp32 model with its int8 error on `images`, most harmful first."""
    fp32, int8 = _load(fp32_path), _load(int8_path)
    layers = _layers(fp32)
    g = _Int8Graph(int8, {o: n for n in fp32.graph.node for o in n.output})
    tensors = list(dict.fromkeys([t for n, out in layers for t in (n.input[0], out)]))
    where = {t: g.find(t) for t in tensors}
    missing = [t for t, w in where.items() if w is None]
    if missing:
        raise ModelFileError(f"{int8_path}: no int8 counterpart of {', '.join(missing)} of {fp32_path} "
                             "(is it made from that model?)")
    x = np.ascontiguousarray(images, dtype=np.float32)
    ref = _run_with_outputs(fp32, tensors, x)
    raw = _run_with_outputs(int8, list(dict.fromkeys(w[0] for w in where.values())), x)
    sq = {t: sqnr_db(ref[t], g.value(where[t], raw[where[t][0]])) for t in tensors}
    rows = [LayerError(node=n.name, op=n.op_type, tensor=out, quantized=g.quantized(n.name), sqnr_db=sq[out],
                       input_sqnr_db=sq[n.input[0]], loss_db=sq[n.input[0]] - sq[out]) for n, out in layers]
    return sorted(rows, key=lambda r: -r.loss_db)


def table(rows: list[LayerError]) -> str:
    """The human report, most harmful first."""
    lines = [f"{'rank':<6}{'layer':<22}{'op':<8}{'int8':<6}{'SQNR dB':>9}{'input dB':>10}{'lost dB':>9}"]
    for i, r in enumerate(rows, 1):
        lines.append(f"{i:<6}{r.node:<22}{r.op:<8}{'yes' if r.quantized else 'fp32':<6}{r.sqnr_db:>9.1f}"
                     f"{r.input_sqnr_db:>10.1f}{r.loss_db:>9.1f}")
    return "\n".join(lines)


def plot(rows: list[LayerError], dest: Path, title: str) -> None:
    """A bar per layer (graph order): output SQNR, and what the layer itself lost."""
    from mnist_edge.core.deps import require
    from mnist_edge.core.fileio import write_with

    mpl = require("matplotlib")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot")
    ranked = sorted(rows, key=lambda r: -r.loss_db)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 3.8))
    xs = np.arange(len(ranked))
    ax.bar(xs - 0.2, [r.sqnr_db for r in ranked], 0.4, label="output SQNR (dB)")
    ax.bar(xs + 0.2, [r.loss_db for r in ranked], 0.4, label="lost by the layer itself (dB)")
    ax.set_xticks(xs, [f"{r.node}\n{r.op}{'' if r.quantized else ' (fp32)'}" for r in ranked], fontsize=7)
    ax.set(ylabel="dB", title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    plt.close(fig)
