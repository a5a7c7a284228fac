"""The model zoo: the papers' architectures by name.

Every model is ``nn.Sequential(Normalize(mean, std), *architecture)`` so inputs
and epsilons stay in pixel space [0, 1]. Layer shapes were checked against the
public sources cited in each builder's docstring. Where a source defines an
MNIST and a CIFAR-10 variant, the variant follows from ``input_shape``; the
architectures defined for one input shape only reject any other shape.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Sequence

from torch import nn

from verifriend.errors import UserError
from verifriend.models.layers import Normalize, Residual

Shape = tuple[int, int, int]
FC_PATTERN = "fc_<L>x<W>"
_FC_RE = re.compile(r"fc_(\d+)x(\d+)")


class _Stack:
    """Collects layers while tracking the activation shape, so that linear
    widths after Flatten follow from the input shape instead of being hard-coded."""

    def __init__(self, shape: Shape | int, arch: str):
        self.shape = shape
        self.arch = arch
        self.layers: list[nn.Module] = []

    def conv(self, out_ch: int, k: int, s: int = 1, p: int = 0, *, bias: bool = True,
             bn: bool = False, relu: bool = True) -> _Stack:
        c, h, w = self.shape  # type: ignore[misc]
        h2, w2 = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if h2 < 1 or w2 < 1:
            raise UserError(f"Input of height/width {h}x{w} is too small for {self.arch}'s "
                            f"{k}x{k} stride-{s} convolution.")
        self.layers.append(nn.Conv2d(c, out_ch, k, stride=s, padding=p, bias=bias))
        if bn:
            self.layers.append(nn.BatchNorm2d(out_ch))
        if relu:
            self.layers.append(nn.ReLU())
        self.shape = (out_ch, h2, w2)
        return self

    def flatten(self) -> _Stack:
        c, h, w = self.shape  # type: ignore[misc]
        self.layers.append(nn.Flatten())
        self.shape = c * h * w
        return self

    def linear(self, out: int, *, relu: bool = True) -> _Stack:
        self.layers.append(nn.Linear(self.shape, out))  # type: ignore[arg-type]
        if relu:
            self.layers.append(nn.ReLU())
        self.shape = out
        return self

    def residual(self, out_ch: int, stride: int) -> _Stack:
        """MN-BaB's BasicBlock with BatchNorm, followed by a ReLU after the sum."""
        main = _Stack(self.shape, self.arch)
        main.conv(out_ch, 3, stride, 1, bias=False, bn=True)
        main.conv(out_ch, 3, 1, 1, bias=False, bn=True, relu=False)
        shortcut = None
        if stride != 1 or self.shape[0] != out_ch:  # type: ignore[index]
            sc = _Stack(self.shape, self.arch).conv(out_ch, 1, stride, 0, bias=False, bn=True,
                                                     relu=False)
            shortcut = nn.Sequential(*sc.layers)
        self.layers += [Residual(nn.Sequential(*main.layers), shortcut), nn.ReLU()]
        self.shape = main.shape
        return self


def _require_shape(arch: str, shape: Shape, allowed: Shape, dataset: str) -> None:
    if shape != allowed:
        raise UserError(f"{arch} is defined only for {dataset} inputs of shape "
                        f"{'x'.join(map(str, allowed))}, got {'x'.join(map(str, shape))}.")


def _small_conv(st: _Stack, k: int) -> None:
    st.conv(16, 4, 2, 1).conv(32, 4, 2, 1).flatten().linear(100).linear(k, relu=False)


def _big_conv(st: _Stack, k: int) -> None:
    st.conv(32, 3, 1, 1).conv(32, 4, 2, 1).conv(64, 3, 1, 1).conv(64, 4, 2, 1)
    st.flatten().linear(512).linear(512).linear(k, relu=False)


def cnn_4layer(shape: Shape, k: int) -> list[nn.Module]:
    """NBC paper's M1 (Wong & Kolter's CNN-A).

    Source: alpha-beta-CROWN ``complete_verifier/model_defs.py``, ``mnist_cnn_4layer``
    (MNIST, Linear 1568->100) and ``cnn_4layer`` = ``cifar_model_wide`` (CIFAR, 2048->100).
    Layers: Conv(16, 4x4, s2, p1), ReLU, Conv(32, 4x4, s2, p1), ReLU, Flatten,
    Linear(->100), ReLU, Linear(100->k).
    """
    st = _Stack(shape, "cnn_4layer")
    _small_conv(st, k)
    return st.layers


def relu_stable(shape: Shape, k: int) -> list[nn.Module]:
    """NBC paper's M2: Xiao et al. 2019 (ICLR, "Training for Faster Adversarial
    Robustness Verification via Inducing ReLU Stability") MNIST network.

    Source: MadryLab/relu_stable ``models/MNIST_naive_ia.py`` with ``config.json``
    (filters [16, 32, 100], filter_size 5, 2x2 strides, TF 'SAME' padding); MNIST only.
    Layers: Conv(16, 5x5, s2, p2), ReLU, Conv(32, 5x5, s2, p2), ReLU, Flatten,
    Linear(1568->100), ReLU, Linear(100->k).
    TF's 'SAME' pads 1 before and 2 after; symmetric padding 2 gives the same shapes
    (28->14->7) with the kernel grid shifted by one pixel, which only matters when
    importing the original TensorFlow weights.
    """
    _require_shape("relu_stable", shape, (1, 28, 28), "MNIST/Fashion-MNIST")
    st = _Stack(shape, "relu_stable")
    st.conv(16, 5, 2, 2).conv(32, 5, 2, 2).flatten().linear(100).linear(k, relu=False)
    return st.layers


def conv_big(shape: Shape, k: int) -> list[nn.Module]:
    """NBC paper's M3: ERAN's ConvBig (convBigRELU__DiffAI / __PGD), MNIST and CIFAR-10.

    Source: ERAN network list; layers as in eth-sri/mn-bab
    ``src/utilities/loading/network.py`` ``mnist_conv_big`` / ``cifar10_conv_big`` and
    alpha-beta-CROWN ``mnist_conv_big`` / ``cifar_conv_big``.
    Layers: Conv(32, 3x3, s1, p1), ReLU, Conv(32, 4x4, s2, p1), ReLU, Conv(64, 3x3, s1, p1),
    ReLU, Conv(64, 4x4, s2, p1), ReLU, Flatten, Linear(64*7*7 | 64*8*8 -> 512), ReLU,
    Linear(512->512), ReLU, Linear(512->k).
    """
    st = _Stack(shape, "conv_big")
    _big_conv(st, k)
    return st.layers


def _marabou(arch: str, shape: Shape, k: int, c1: int, c2: int) -> list[nn.Module]:
    _require_shape(arch, shape, (3, 32, 32), "CIFAR-10")
    st = _Stack(shape, arch)
    st.conv(c1, 4, 2, 0).conv(c2, 4, 2, 0).flatten().linear(128).linear(64).linear(k, relu=False)
    return st.layers


def marabou_medium(shape: Shape, k: int) -> list[nn.Module]:
    """NBC paper's C1: VNN-COMP 2021 marabou-cifar10 medium network (CIFAR-10 only).

    Source: alpha-beta-CROWN ``complete_verifier/model_defs.py`` ``cifar_marabou_medium``.
    Layers: Conv(16, 4x4, s2, p0), ReLU, Conv(32, 4x4, s2, p0), ReLU, Flatten,
    Linear(1152->128), ReLU, Linear(128->64), ReLU, Linear(64->k).
    """
    return _marabou("marabou_medium", shape, k, 16, 32)


def marabou_large(shape: Shape, k: int) -> list[nn.Module]:
    """NBC paper's C2: VNN-COMP 2021 marabou-cifar10 large network (CIFAR-10 only).

    Source: alpha-beta-CROWN ``complete_verifier/model_defs.py`` ``cifar_marabou_large``.
    Layers: Conv(32, 4x4, s2, p0), ReLU, Conv(64, 4x4, s2, p0), ReLU, Flatten,
    Linear(2304->128), ReLU, Linear(128->64), ReLU, Linear(64->k).
    """
    return _marabou("marabou_large", shape, k, 32, 64)


def conv_small(shape: Shape, k: int) -> list[nn.Module]:
    """EEV's conv-small (Jia & Rinard 2020, "Efficient Exact Verification of Binarized
    Neural Networks"), real-valued ReLU version; MNIST and CIFAR-10.

    Source: jia-kai/eevbnn ``eevbnn/net_real.py`` ``MnistReal0`` / ``Cifar10Real0``
    (shapes shared with the BNN ``Mnist0`` / ``Cifar10_0`` in ``net_bin.py``).
    Layers: Conv(16, 4x4, s2, p1), ReLU, Conv(32, 4x4, s2, p1), ReLU, Flatten,
    Linear(32*7*7 | 32*8*8 -> 100), ReLU, Linear(100->k) -- the same shapes as cnn_4layer.
    EEV's input quantizer is left out; the binarized variant (BatchNorm and sign
    activations) lives in ``verifriend.bnn``.
    """
    st = _Stack(shape, "conv_small")
    _small_conv(st, k)
    return st.layers


def conv_large(shape: Shape, k: int) -> list[nn.Module]:
    """EEV's conv-large (Jia & Rinard 2020), real-valued ReLU version; MNIST and CIFAR-10.

    Source: jia-kai/eevbnn ``eevbnn/net_real.py`` ``MnistReal1`` / ``Cifar10Real1``
    (shapes shared with the BNN ``Mnist1`` / ``Cifar10_1``).
    Layers: Conv(32, 3x3, s1, p1), ReLU, Conv(32, 4x4, s2, p1), ReLU, Conv(64, 3x3, s1, p1),
    ReLU, Conv(64, 4x4, s2, p1), ReLU, Flatten, Linear(->512), ReLU, Linear(512->512),
    ReLU, Linear(512->k) -- the same shapes as conv_big. EEV's input quantizer is left
    out; the binarized variant lives in ``verifriend.bnn``.
    """
    st = _Stack(shape, "conv_large")
    _big_conv(st, k)
    return st.layers


def resnet6(shape: Shape, k: int) -> list[nn.Module]:
    """MN-BaB's ResNet6 (Ferrari et al. 2022, ICLR, Table 1; CIFAR-10 only).

    ResNet6-A and ResNet6-B share this architecture and differ only in the strength
    of adversarial training (eth-sri/mn-bab ``configs/cifar10_resnet_2b2_bn_adv.json`` and
    ``..._2b2_bn_sadv_4.json``). Source: ``src/utilities/loading/network.py``
    ``resnet2b2(bn=True)`` = ``ResNet(BasicBlock, num_stages=2, num_blocks=1, in_planes=16,
    last_layer="dense", stride=[2, 2, 2])`` and ``src/concrete_layers/basic_block.py``.
    Layers: Conv(16, 3x3, s2, p1, no bias), BN, ReLU,
    Residual[Conv(32, 3x3, s2, p1), BN, ReLU, Conv(32, 3x3, s1, p1), BN |
    shortcut Conv(32, 1x1, s2), BN], ReLU,
    Residual[Conv(64, 3x3, s2, p1), BN, ReLU, Conv(64, 3x3, s1, p1), BN |
    shortcut Conv(64, 1x1, s2), BN], ReLU,
    Flatten, Linear(1024->100), ReLU, Linear(100->k); convolutions have no bias.
    """
    _require_shape("resnet6", shape, (3, 32, 32), "CIFAR-10")
    st = _Stack(shape, "resnet6")
    st.conv(16, 3, 2, 1, bias=False, bn=True).residual(32, 2).residual(64, 2)
    st.flatten().linear(100).linear(k, relu=False)
    return st.layers


def _grocket(arch: str, shape: Shape, k: int, convs: list[tuple[int, int]]) -> list[nn.Module]:
    _require_shape(arch, shape, (1, 28, 28), "MNIST")
    st = _Stack(shape, arch)
    for ch, stride in convs:
        st.conv(ch, 3, stride)
    width = 64 if len(convs) == 1 else 16
    return st.flatten().linear(width).linear(k, relu=False).layers


def grocket_dnn1(shape: Shape, k: int) -> list[nn.Module]:
    """GROCKET's DNN-1 (Wang et al., "A Tool for Neural Network Global Robustness
    Certification and Training", Table I; MNIST): Conv(8, 3x3, s2), ReLU, Flatten,
    Linear(->64), ReLU, Linear(64->k): 1,416 ReLUs (8*13*13 + 64), no padding."""
    return _grocket("grocket_dnn1", shape, k, [(8, 2)])


def grocket_dnn2(shape: Shape, k: int) -> list[nn.Module]:
    """GROCKET's DNN-2 (Table I; MNIST): Conv(16, 3x3, s2), ReLU, Conv(32, 3x3, s2), ReLU,
    Flatten, Linear(->16), ReLU, Linear(16->k): 3,872 ReLUs (2704 + 1152 + 16)."""
    return _grocket("grocket_dnn2", shape, k, [(16, 2), (32, 2)])


def grocket_dnn3(shape: Shape, k: int) -> list[nn.Module]:
    """GROCKET's DNN-3 (Table I; MNIST): Conv(4, 3x3, s1), ReLU, Conv(16, 3x3, s2), ReLU,
    Conv(32, 3x3, s2), ReLU, Flatten, Linear(->16), ReLU, Linear(16->k): 5,824 ReLUs
    (2704 + 2304 + 800 + 16)."""
    return _grocket("grocket_dnn3", shape, k, [(4, 1), (16, 2), (32, 2)])


def fc(layers: int, width: int) -> Callable[[Shape, int], list[nn.Module]]:
    """Fully connected ``fc_<layers>x<width>``: Flatten, ``layers`` x (Linear(->width), ReLU),
    Linear(width->k); the ERAN ``mnist_relu_<L>_<W>`` / VNN-COMP mnistfc family."""

    def build(shape: Shape, k: int) -> list[nn.Module]:
        st = _Stack(shape, f"fc_{layers}x{width}").flatten()
        for _ in range(layers):
            st.linear(width)
        return st.linear(k, relu=False).layers

    return build


Builder = Callable[[Shape, int], list[nn.Module]]
_REGISTRY: dict[str, tuple[Builder, str]] = {
    "cnn_4layer": (cnn_4layer, (
        "NBC M1 / CNN-A: Conv16 4x4/2, Conv32 4x4/2, FC100, FC (alpha-beta-CROWN "
        "model_defs.py mnist_cnn_4layer / cnn_4layer); MNIST or CIFAR.")),
    "relu_stable": (relu_stable, (
        "NBC M2: Xiao et al. 2019 ReLU-stable net, Conv16 5x5/2, Conv32 5x5/2, FC100, FC "
        "(MadryLab/relu_stable); MNIST 1x28x28 only.")),
    "conv_big": (conv_big, (
        "NBC M3: ERAN ConvBig, Conv32 3x3, Conv32 4x4/2, Conv64 3x3, Conv64 4x4/2, FC512, "
        "FC512, FC (ERAN / MN-BaB network.py); MNIST or CIFAR.")),
    "marabou_medium": (marabou_medium, (
        "NBC C1: VNN-COMP 2021 Marabou CIFAR medium, Conv16 4x4/2, Conv32 4x4/2, FC128, "
        "FC64, FC (alpha-beta-CROWN); CIFAR 3x32x32 only.")),
    "marabou_large": (marabou_large, (
        "NBC C2: VNN-COMP 2021 Marabou CIFAR large, Conv32 4x4/2, Conv64 4x4/2, FC128, "
        "FC64, FC (alpha-beta-CROWN); CIFAR 3x32x32 only.")),
    "conv_small": (conv_small, (
        "EEV (Jia & Rinard 2020) conv-small, real-valued: Conv16 4x4/2, Conv32 4x4/2, "
        "FC100, FC (eevbnn net_real.py); MNIST or CIFAR.")),
    "conv_large": (conv_large, (
        "EEV (Jia & Rinard 2020) conv-large, real-valued: Conv32 3x3, Conv32 4x4/2, "
        "Conv64 3x3, Conv64 4x4/2, FC512, FC512, FC (eevbnn net_real.py); MNIST or CIFAR.")),
    "grocket_dnn1": (grocket_dnn1, (
        "GROCKET DNN-1: Conv8 3x3/2, FC64, FC (1,416 ReLUs); MNIST 1x28x28 only.")),
    "grocket_dnn2": (grocket_dnn2, (
        "GROCKET DNN-2: Conv16 3x3/2, Conv32 3x3/2, FC16, FC (3,872 ReLUs); MNIST only.")),
    "grocket_dnn3": (grocket_dnn3, (
        "GROCKET DNN-3: Conv4 3x3, Conv16 3x3/2, Conv32 3x3/2, FC16, FC (5,824 ReLUs); "
        "MNIST only.")),
    "resnet6": (resnet6, (
        "MN-BaB ResNet6-A/B: Conv16/2+BN, 2 residual blocks (32, 64 ch, stride 2, BN), "
        "FC100, FC (mn-bab resnet2b2); CIFAR 3x32x32 only.")),
}


def _fc_description(layers: str, width: str) -> str:
    return (f"Fully connected: Flatten, {layers} hidden Linear+ReLU layers of width {width}, "
            "Linear to the classes (ERAN mnist_relu_<L>_<W> / VNN-COMP mnistfc family).")


def _resolve(arch: str) -> tuple[Builder, str]:
    """Builder and description of ``arch`` (case-insensitive), or a UserError."""
    name = str(arch).strip().lower()
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _FC_RE.fullmatch(name)
    if m:
        layers, width = int(m.group(1)), int(m.group(2))
        if layers < 1 or width < 1:
            raise UserError(f"Architecture {arch!r} needs at least one hidden layer of width >= 1.")
        return fc(layers, width), _fc_description(str(layers), str(width))
    if name.startswith("fc"):
        raise UserError(f"Architecture {arch!r} is not of the form {FC_PATTERN}, e.g. fc_2x50.")
    close = difflib.get_close_matches(name, list(_REGISTRY), n=2)
    hint = f" (closest: {', '.join(close)})" if close else ""
    raise UserError(f"Unknown architecture {arch!r}{hint}; known architectures are "
                    f"{', '.join(list_architectures())}.")


def list_architectures() -> list[str]:
    """Names accepted by :func:`build_model`; ``fc_<L>x<W>`` stands for the fc family."""
    return [*_REGISTRY, FC_PATTERN]


def describe_architecture(arch: str) -> str:
    """One-line description of ``arch`` with its source."""
    if str(arch).strip().lower() == FC_PATTERN.lower():
        return _fc_description("<L>", "<W>")
    return _resolve(arch)[1]


def _check_inputs(input_shape, num_classes, mean, std):
    """Validated (shape, num_classes, mean, std) or a UserError."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"input_shape must be three positive integers (C, H, W), "
                        f"got {input_shape!r}.")
    try:
        k = operator.index(num_classes)
    except TypeError:
        k = 0
    if k < 2 or isinstance(num_classes, bool):
        raise UserError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    try:
        mean_l, std_l = [float(m) for m in mean], [float(s) for s in std]
    except (TypeError, ValueError):
        raise UserError(f"mean and std must be sequences of numbers, got {mean!r} and "
                        f"{std!r}.") from None
    if len(mean_l) != len(std_l) or len(mean_l) not in (1, shape[0]):
        raise UserError(f"mean and std need one value per channel ({shape[0]}) or one shared "
                        f"value each, got {len(mean_l)} and {len(std_l)}.")
    if not all(math.isfinite(v) for v in mean_l + std_l) or min(std_l) <= 0:
        raise UserError(f"mean must be finite and std finite and positive, got {mean_l} and "
                        f"{std_l}.")
    return shape, k, mean_l, std_l  # type: ignore[return-value]


def build_model(
    arch: str,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
) -> nn.Sequential:
    """Build ``Normalize(mean, std)`` followed by architecture ``arch`` for ``input_shape``
    (C, H, W) images in [0, 1] and ``num_classes`` outputs; freshly initialised."""
    builder, _ = _resolve(arch)
    shape, k, mean_l, std_l = _check_inputs(input_shape, num_classes, mean, std)
    return nn.Sequential(Normalize(mean_l, std_l), *builder(shape, k))
