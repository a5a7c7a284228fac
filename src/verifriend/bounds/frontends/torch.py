"""Torch frontend: the graph IR of an ``nn.Module`` (Sequential, Residual, the layers in
:data:`_CONVERTERS` and the elementwise kinds registered in
:data:`verifriend.bounds.ops.TORCH_MODULES`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from verifriend.bounds.frontends.common import append_traced
from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import (
    TORCH_MODULES,
    AddNode,
    AffineNode,
    AvgPoolNode,
    Conv2dNode,
    FlattenNode,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
)
from verifriend.errors import UnsupportedLayerError, UserError
from verifriend.models.layers import Normalize, Residual

Shape = tuple[int, ...]
Pair = tuple[int, int]


def from_module(module: nn.Module, input_shape: tuple[int, ...], *, detach: bool = True) -> Graph:
    """Build the IR of ``module`` for inputs of shape ``(B, *input_shape)``.

    Batch norm always uses its running statistics (eval semantics) and dropout is
    the identity. With ``detach=False`` the nodes reference the module's live
    parameters, so bounds stay differentiable w.r.t. them (certified training).
    """
    builder = _Builder(tuple(int(d) for d in input_shape), module, detach)
    out = builder.add_module(module, "", 0)
    if out == 0:
        # a network that is only identities: keep a real output node
        builder.add(AffineNode, (0,), "identity", **_identity_affine(builder, 0))
    return Graph(builder.nodes, builder.nodes[0].shape)


def supported_modules() -> str:
    """The module classes the converter takes, for messages."""
    names = {"Sequential", "Residual"} | {c.__name__ for c in (*_CONVERTERS, *TORCH_MODULES)}
    return ", ".join(sorted(names)) + " (Conv2d with groups=1)"


# ---------------------------------------------------------------- building


def _pair(v) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _unsupported(path: str, what: str, detail: str = "") -> UnsupportedLayerError:
    if detail:
        return UnsupportedLayerError(
            f"layer '{path}' ({what}) is not supported by the graph IR: {detail}."
        )
    return UnsupportedLayerError(
        f"layer '{path}' ({what}) is not supported by the graph IR; supported: {supported_modules()}."
    )


def _identity_affine(b: _Builder, src: int) -> dict:
    ch = b.nodes[src].shape[0] if b.nodes[src].shape else 1
    one = b.values[0].new_ones(ch)
    return {"scale": one, "shift": one * 0}


class _Builder:
    """Appends nodes while tracing a dummy batch to learn each output shape."""

    def __init__(self, input_shape: Shape, module: nn.Module, detach: bool):
        ref = next((t for t in module.state_dict().values() if t.is_floating_point()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        self.detach = detach
        self.nodes: list[Node] = [InputNode(inputs=(), shape=input_shape, name="input")]
        self.values: list[Tensor] = [torch.zeros(1, *input_shape, dtype=dtype, device=device)]

    def param(self, t: Tensor) -> Tensor:
        return t.detach().clone() if self.detach else t

    def add(self, kind: type[Node], inputs: tuple[int, ...], name: str, **params) -> int:
        return append_traced(self.nodes, self.values, f"layer '{name}'", kind, inputs, name,
                             **params)

    def add_module(self, m: nn.Module, path: str, src: int) -> int:
        """Append the nodes of ``m`` reading node ``src``; returns the output node."""
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                src = self.add_module(child, f"{path}.{name}" if path else name, src)
            return src
        if isinstance(m, Residual):
            main = self.add_module(m.main, f"{path}.main" if path else "main", src)
            short = self.add_module(m.shortcut, f"{path}.shortcut" if path else "shortcut", src)
            return self.add(AddNode, (main, short), path or "residual")
        converter = _CONVERTERS.get(type(m))
        if converter is None and type(m) in TORCH_MODULES:
            converter = _elementwise(TORCH_MODULES[type(m)])
        if converter is None:
            raise _unsupported(path or "(root)", type(m).__name__)
        return converter(self, m, path or "(root)", src)


def _convert_identity(b: _Builder, m: nn.Module, path: str, src: int) -> int:
    return src


def _elementwise(kind: type[Node]):
    """The converter of a one-input elementwise kind registered under a module class."""

    def convert(b: _Builder, m: nn.Module, path: str, src: int) -> int:
        try:
            params = kind.params_from_torch(m)
        except ValueError as err:
            raise _unsupported(path, type(m).__name__, str(err).rstrip(".")) from None
        return b.add(kind, (src,), path, **params)

    return convert


def _convert_flatten(b: _Builder, m: nn.Flatten, path: str, src: int) -> int:
    if m.start_dim != 1 or m.end_dim != -1:
        raise _unsupported(path, "Flatten", "only start_dim=1, end_dim=-1 is supported")
    return b.add(FlattenNode, (src,), path, in_shape=b.nodes[src].shape)


def _convert_linear(b: _Builder, m: nn.Linear, path: str, src: int) -> int:
    shape = b.nodes[src].shape
    if shape != (m.in_features,):
        raise UserError(
            f"layer '{path}' (Linear) expects a flat input of {m.in_features} features "
            f"but receives shape {shape}."
        )
    bias = b.param(m.bias) if m.bias is not None else m.weight.new_zeros(m.out_features)
    return b.add(LinearNode, (src,), path, weight=b.param(m.weight), bias=bias)


def _convert_conv(b: _Builder, m: nn.Conv2d, path: str, src: int) -> int:
    if m.groups != 1:
        raise _unsupported(path, f"Conv2d with groups={m.groups}", "only groups=1 is supported")
    if m.padding_mode != "zeros":
        raise _unsupported(path, f"Conv2d with padding_mode='{m.padding_mode}'", "only zeros")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # 'same': symmetric only
            total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            if any(t % 2 for t in total):
                raise _unsupported(path, "Conv2d with asymmetric 'same' padding")
            padding = tuple(t // 2 for t in total)
    bias = b.param(m.bias) if m.bias is not None else m.weight.new_zeros(m.out_channels)
    return b.add(
        Conv2dNode,
        (src,),
        path,
        weight=b.param(m.weight),
        bias=bias,
        stride=_pair(m.stride),
        padding=_pair(padding),
        dilation=_pair(m.dilation),
        in_shape=b.nodes[src].shape,
    )


def _channels(b: _Builder, src: int, path: str, what: str, n: int) -> int:
    shape = b.nodes[src].shape
    if not shape or (shape[0] != n and n != 1):
        raise UserError(
            f"layer '{path}' ({what}) has {n} channels but its input has shape {shape}."
        )
    return shape[0]


def _convert_normalize(b: _Builder, m: Normalize, path: str, src: int) -> int:
    ch = _channels(b, src, path, "Normalize", m.mean.numel())
    inv = 1.0 / b.param(m.std)
    scale, shift = inv.expand(ch), (-b.param(m.mean) * inv).expand(ch)
    return b.add(AffineNode, (src,), path, scale=scale.contiguous(), shift=shift.contiguous())


def _convert_batchnorm(b: _Builder, m: nn.modules.batchnorm._BatchNorm, path, src) -> int:
    what = type(m).__name__
    if m.running_mean is None or m.running_var is None:
        raise _unsupported(path, f"{what} without running statistics")
    if b.nodes[src].shape[:1] != (m.num_features,):
        raise UserError(
            f"layer '{path}' ({what}) has {m.num_features} features but its input has "
            f"shape {b.nodes[src].shape}."
        )
    # eval semantics: y = (x - mean) / sqrt(var + eps) * weight + bias
    scale = torch.rsqrt(b.param(m.running_var) + m.eps)
    if m.weight is not None:
        scale = scale * b.param(m.weight)
    shift = -b.param(m.running_mean) * scale
    if m.bias is not None:
        shift = shift + b.param(m.bias)
    return b.add(AffineNode, (src,), path, scale=scale, shift=shift)


def _convert_avgpool(b: _Builder, m: nn.AvgPool2d, path: str, src: int) -> int:
    kernel, padding = _pair(m.kernel_size), _pair(m.padding)
    if m.ceil_mode:
        raise _unsupported(path, "AvgPool2d with ceil_mode=True")
    if not m.count_include_pad and any(padding):
        raise _unsupported(path, "AvgPool2d with count_include_pad=False and padding")
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    return b.add(
        AvgPoolNode,
        (src,),
        path,
        kernel=kernel,
        stride=stride,
        padding=padding,
        divisor=int(m.divisor_override or kernel[0] * kernel[1]),
        in_shape=b.nodes[src].shape,
    )


def _convert_maxpool(b: _Builder, m: nn.MaxPool2d, path: str, src: int) -> int:
    if m.ceil_mode or m.return_indices:
        raise _unsupported(path, "MaxPool2d with ceil_mode or return_indices")
    return b.add(
        MaxPoolNode,
        (src,),
        path,
        kernel=_pair(m.kernel_size),
        stride=_pair(m.stride if m.stride is not None else m.kernel_size),
        padding=_pair(m.padding),
        dilation=_pair(m.dilation),
        in_shape=b.nodes[src].shape,
    )


_CONVERTERS: dict[type, Callable[[_Builder, nn.Module, str, int], int]] = {
    nn.Identity: _convert_identity,
    nn.Dropout: _convert_identity,
    nn.Dropout1d: _convert_identity,
    nn.Dropout2d: _convert_identity,
    nn.Flatten: _convert_flatten,
    nn.Linear: _convert_linear,
    nn.Conv2d: _convert_conv,
    Normalize: _convert_normalize,
    nn.BatchNorm1d: _convert_batchnorm,
    nn.BatchNorm2d: _convert_batchnorm,
    nn.AvgPool2d: _convert_avgpool,
    nn.MaxPool2d: _convert_maxpool,
}
