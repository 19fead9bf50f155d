"""The architectures by name, torch-free: what `mnist-edge models` lists and `--arch` accepts.

The classes live in mnist_edge.pytorch.models under the same names; the parameter and MAC counts here
are pinned (a test rebuilds every model and checks them, and the MAC counter against torch's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnist_edge.core.settings import DEFAULT_ARCH


@dataclass(frozen=True)
class ArchSpec:
    name: str
    summary: str
    params: int  # for 10 classes
    macs: int  # multiply-accumulates per 1x28x28 image (conv and linear layers)
    args: dict = field(default_factory=dict)  # default constructor arguments


ARCH_SPECS: dict[str, ArchSpec] = {a.name: a for a in (
    ArchSpec("edgenet", "5 conv+BN blocks (5x5, then 3x3) -> global avg pool -> FC 10", 103_258, 5_959_360,
             {"channels": [16, 32, 48, 64, 96]}),
    ArchSpec("conv3pool-fc3", "3 conv (ReLU, max-pool each) -> 3 FC", 422_026, 7_780_096),
    ArchSpec("conv2pool-fc2", "conv 10@5x5 -> conv 20@5x5 (ReLU, max-pool) -> FC 50 -> FC 10", 30_840, 799_500),
    ArchSpec("lenet-dropout", "conv 32 -> pool -> conv 64 -> pool -> FC 128 -> dropout -> FC 10", 421_642,
             4_241_152),
    ArchSpec("conv3-flat", "conv 32 -> 64 -> 128 (3x3, ReLU) -> flatten -> FC 10 -> log-softmax", 712_202,
             47_115_392),
)}


def table() -> str:
    """The `mnist-edge models` listing."""
    lines = [f"{'name':<16}{'params':>10}{'MACs/img':>12}  description"]
    for a in ARCH_SPECS.values():
        star = " (default)" if a.name == DEFAULT_ARCH else ""
        lines.append(f"{a.name:<16}{a.params:>10,}{a.macs / 1e6:>11.2f}M  {a.summary}{star}")
    return "\n".join(lines)
