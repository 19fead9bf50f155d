"""The architectures as torch modules, by name: the default edge model and four reference CNNs.

Every model maps a float32 batch (N, 1, 28, 28), normalised with the dataset's mean/std, to
(N, num_classes) scores. `build(name, **args)` rebuilds one from a checkpoint's metadata.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.metadata import INPUT_SHAPE


class _SpatialMean(torch.autograd.Function):
    """The mean over H and W (keepdim) whose gradient has the input's memory layout: autograd's own hands the
    ReLU before it a broadcast view (stride 0), which its backward reads several times slower than a
    channels_last tensor (an edgenet float32 step 7% shorter this way, measured). The same values, bit for bit."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.layout = x.shape, (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                                          else torch.contiguous_format)
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n = ctx.shape[2] * ctx.shape[3]
        return (grad / n).expand(ctx.shape).contiguous(memory_format=ctx.layout)


def spatial_mean(x: torch.Tensor, training: bool) -> torch.Tensor:
    """x.mean(dim=(2, 3), keepdim=True); while training, with a dense gradient (_SpatialMean). Exports and
    evaluation (eval mode, or no gradient) see the plain mean."""
    if training and torch.is_grad_enabled() and x.requires_grad:
        return _SpatialMean.apply(x)
    return x.mean(dim=(2, 3), keepdim=True)


class Features(nn.Sequential):
    """An nn.Sequential that, while training, runs each ReLU that a max-pool follows after that pool.

    max(relu(a), relu(b)) == relu(max(a, b)) exactly, and both orders pass the gradient to the same element
    (a window whose maximum is not positive passes none), so the weights are the same bit for bit; the ReLU
    and its backward touch a quarter of the elements (an edgenet float32 step 6% shorter, measured). Eval
    mode, and so every export, runs the layers in their order: conv -> BN -> ReLU -> pool."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        order = list(range(len(layers)))
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.ReLU) and isinstance(layers[i + 1], nn.MaxPool2d):
                order[i], order[i + 1] = i + 1, i
        self.train_order = tuple(order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        for i in self.train_order:
            x = self[i](x)
        return x


def _conv_bn(cin: int, cout: int, k: int) -> list[nn.Module]:
    # bias is redundant before BatchNorm; BN folds into the conv at export. In-place ReLU: the same values
    # and weights, bit for bit, without a new tensor per layer (an edgenet step 0.94x the time here, measured)
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class EdgeNet(nn.Module):
    """mnist-edge's default: conv+BN blocks, 2 max-pools, global average pooling, 1 linear layer.

    channels: the first conv (5x5) at 28x28, the second (3x3) at 14x14, every further one (3x3) at 7x7.
    Cheap where edge inference pays (the only full-resolution layer maps 1 channel to 16; three of the
    five layers run at 7x7) and small: 103 k parameters, 6.0 M MACs per image, 409 KB as float32 ONNX
    and 118 KB as int8. Global average pooling instead of a wide FC layer keeps the parameter count low
    and lets int8 quantize almost every weight (the convolutions). Any depth of 3 or more builds: a
    checkpoint records its channels (e.g. 4 layers 16-48-80-96, 3 layers 32-64-128) and is rebuilt from them.
    """

    def __init__(self, channels: tuple[int, ...] = tuple(ARCH_SPECS["edgenet"].args["channels"]),
                 num_classes: int = 10):
        super().__init__()
        if len(channels) < 3:
            raise TypeError(f"channels needs at least 3 numbers, got {list(channels)}")
        c1, c2 = channels[:2]
        layers = [*_conv_bn(1, c1, 5), nn.MaxPool2d(2),   # (N, c1, 14, 14)
                  *_conv_bn(c1, c2, 3), nn.MaxPool2d(2)]  # (N, c2, 7, 7)
        for cin, cout in zip(channels[1:-1], channels[2:], strict=True):
            layers += _conv_bn(cin, cout, 3)              # (N, cout, 7, 7)
        self.features = Features(*layers)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # global average pool -> (N, C). keepdim: XNNPACK (ExecuTorch) delegates the whole graph only so;
        # reshape(-1, C), not flatten: litert-torch's dynamic batch cannot trace a symbolic batch size
        x = spatial_mean(x, self.training).reshape(-1, x.shape[1])
        return self.head(x)


class McuNet(nn.Module):
    """For the smallest microcontrollers (16 KB of flash, 4 KB of RAM as int8 C): a 5x5 conv of stride 2
    (28x28 -> 14x14), then 3x3 convs each followed by 2x2 max-pooling (BatchNorm and ReLU after every
    conv), then a classifier over the whole last map (3x3 after two pooled blocks): a linear layer on the
    flattened map, written as a convolution the size of the map.

    The strided first conv sees 5x5 at full resolution for a quarter of the cost of a conv+pool there;
    no conv output is ever held whole (the pools are fused into the convs in C), so the C model's largest
    buffer is the first map (14x14 x channels[0] bytes). A flattened map keeps where each feature is,
    which a global average would lose.
    """

    def __init__(self, channels: tuple[int, ...] = tuple(ARCH_SPECS["mcu-16k"].args["channels"]),
                 first_kernel: int = ARCH_SPECS["mcu-16k"].args["first_kernel"], num_classes: int = 10):
        super().__init__()
        if len(channels) < 2:
            raise TypeError(f"channels needs at least 2 numbers, got {list(channels)}")
        c0 = channels[0]
        layers = [nn.Conv2d(1, c0, first_kernel, stride=2, padding=(first_kernel - 1) // 2, bias=False),
                  nn.BatchNorm2d(c0), nn.ReLU(inplace=True)]
        cin, side = c0, (INPUT_SHAPE[1] + 1) // 2
        for cout in channels[1:]:
            layers += [*_conv_bn(cin, cout, 3), nn.MaxPool2d(2)]
            cin, side = cout, side // 2
        if side < 1:
            raise TypeError(f"{len(channels) - 1} pooled blocks leave no map of a {INPUT_SHAPE[1]}-pixel input")
        self.features = Features(*layers)
        # the linear layer on the flattened map, as a convolution the size of the map: the same function and
        # initial weights (fan-in, and the order of the weights, are the same)
        self.head = nn.Conv2d(cin, num_classes, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, classes, 1, 1) -> (N, classes). The mean over the single position changes nothing, but LiteRT's
        # XNNPACK cannot prepare a graph with a dynamic batch that ends in a Reshape (of this map or of the
        # flattened one) and can one that ends in Mean and Reshape, as edgenet does; reshape(-1, n), not
        # flatten: litert-torch's dynamic batch cannot trace a symbolic batch size
        return self.head(self.features(x)).mean(dim=(2, 3), keepdim=True).reshape(-1, self.head.out_channels)


class Conv3PoolFC3(nn.Module):
    """3 conv layers (3x3, ReLU), each followed by 2x2 max-pooling, then 3 fully connected layers."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)   # (N, 32, 28, 28) -> pool (N, 32, 14, 14)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)  # (N, 64, 14, 14) -> pool (N, 64, 7, 7)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)  # (N, 128, 7, 7) -> pool (N, 128, 3, 3)
        self.fc1 = nn.Linear(128 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Conv2FC2(nn.Module):
    """conv 10 filters 5x5 pad 1 -> conv 20 filters 5x5 pad 1 (each ReLU + 2x2 max-pool) -> FC 50 -> FC 10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5, padding=1)   # (N, 10, 26, 26) -> pool (N, 10, 13, 13)
        self.conv2 = nn.Conv2d(10, 20, 5, padding=1)  # (N, 20, 11, 11) -> pool (N, 20, 5, 5)
        self.fc1 = nn.Linear(20 * 5 * 5, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class LeNetDropout(nn.Module):
    """LeNet-like: conv 32 3x3 pad 1 -> pool -> conv 64 3x3 pad 1 -> pool -> FC 128 -> dropout 0.5 -> FC 10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)   # (N, 32, 28, 28) -> pool (N, 32, 14, 14)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)  # (N, 64, 14, 14) -> pool (N, 64, 7, 7)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class Conv3Flat(nn.Module):
    """conv 32 -> conv 64 -> conv 128 (3x3, no padding, ReLU, no pooling) -> flatten -> FC 10 -> log-softmax."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)     # (N, 32, 26, 26)
        self.conv2 = nn.Conv2d(32, 64, 3)    # (N, 64, 24, 24)
        self.conv3 = nn.Conv2d(64, 128, 3)   # (N, 128, 22, 22)
        self.fc = nn.Linear(128 * 22 * 22, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        # log-probabilities: cross-entropy on them equals NLL, argmax and softmax are unchanged
        return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)


# The classes of core.archs.ARCH_SPECS (names, summaries, default arguments and pinned sizes live there).
CLASSES: dict[str, type[nn.Module]] = {
    "edgenet": EdgeNet,
    "mcu-16k": McuNet,
    "conv3pool-fc3": Conv3PoolFC3,
    "conv2pool-fc2": Conv2FC2,
    "lenet-dropout": LeNetDropout,
    "conv3-flat": Conv3Flat,
}


def build(name: str, args: dict | None = None, num_classes: int = 10) -> nn.Module:
    """A fresh model of architecture `name` with `args` (defaults from the registry)."""
    if name not in CLASSES:
        raise ModelFileError(f"unknown architecture {name!r} (known: {', '.join(CLASSES)})")
    kwargs = {**ARCH_SPECS[name].args, **(args or {})}
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    try:
        return CLASSES[name](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ModelFileError(f"bad arguments for architecture {name!r}: {e}") from None


def default_args(name: str) -> dict:
    return dict(ARCH_SPECS[name].args)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates for one 1x28x28 image (conv and linear layers; the rest is negligible)."""
    total = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *INPUT_SHAPE))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's conv layers in forward order, with their names (for filter and feature-map plots)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
