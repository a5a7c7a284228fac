"""Binarized layers: the straight-through estimators, input quantization, the {-1, 0, 1}
linear and convolution layers, BatchNorm, the [y >= 0] activation and their blocks. The network
built from them is `network.BNN`; its exact integer form is `integer.IntBNN`.

A network is: input quantization q = floor(x / step) (levels 0..L, L = floor(1 / step)),
then blocks  binarized layer (weights in {-1, 0, 1}, no bias) -> BatchNorm -> a = [y >= 0],
then a binarized linear output layer and a BatchNorm with *scalar* statistics (one mean, one
variance and one scale shared by all classes, a bias per class) giving real logits.

The first layer reads the integer levels q itself, not x_q = q * step: BatchNorm is
invariant to a constant input scale (up to its eps), so this is the same network, and it keeps
every pre-activation an exact integer in float32 (inputs and weights are small integers), so
the only rounding between this model and its integer form is in BatchNorm's own arithmetic
(see `export.export_integer`). Zero padding of a convolution pads q with level 0 (x_q = 0) in
the first layer and activations with 0 later, as the exporter assumes.

Sparsity: `binmask` (the default) keeps a second latent weight M per connection and uses
w = sign(W) * [M > 0]: the brief's (sign(M) + 1) / 2 except at M == 0, which is "off" here so
that w stays in {-1, 0, 1}; M starts at |N(0, 0.01)| (all connections on) and training decays
the masks that are on (see `train.apply_sparse_decay`). `ternary` uses w = sign(W) * [|W| >= T]
instead, `none` plain sign(W). Latent weights pass gradients straight through (identity STE)
and are clipped to [-1, 1] after each step; the activation's STE uses adaptive gradient
cancelling: d a / d y = 1 - tanh(alpha * y)^2, with alpha settable per model (`set_alpha`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.errors import UserError

DEFAULT_ALPHA = 1.0  # gradient-cancelling sharpness of a new model's activations
SPARSITY_MODES = ("binmask", "ternary", "none")
_MASK_STD = 0.01  # M ~ |N(0, 0.01)| at initialization
_WEIGHT_STD = 0.01  # latent weights ~ N(0, 0.01)

# --- straight-through estimators -----------------------------------------------------------

class _Step01(torch.autograd.Function):
    """a = [y >= 0]; backward g_y = (1 - tanh(alpha * y)^2) * g_a (gradient cancelling)."""

    @staticmethod
    def forward(ctx, y: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(y)
        ctx.alpha = alpha
        return (y >= 0).to(y.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        t = torch.tanh(y * ctx.alpha)
        return g * (1 - t * t), None


def step01(y: Tensor, alpha: float = DEFAULT_ALPHA) -> Tensor:
    """The binary activation [y >= 0] with the gradient-cancelling STE."""
    return _Step01.apply(y, float(alpha))


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` forward, the gradient of ``soft`` backward."""
    return soft + (hard - soft).detach()


def _sign01_weight(w: Tensor) -> Tensor:
    return _straight_through(torch.sign(w), w)


class InputQuant(nn.Module):
    """q = clip(floor(x / step), 0, levels), exactly as `IntBNN.quantize` computes it.

    Computed in float64 with the same +1e-9 guard, so torch and the integer form agree on
    every input; the gradient passes straight through (d q / d x = 1 / step). ``forward``
    returns the integer levels q; ``dequantize`` gives x_q = q * step.
    """

    def __init__(self, step: float):
        super().__init__()
        if not 0 < step <= 1:
            raise UserError(f"The input quantization step must be in (0, 1], got {step}.")
        self.step = float(step)
        self.levels = math.floor(1.0 / self.step + 1e-9)

    def forward(self, x: Tensor) -> Tensor:
        hard = torch.floor(x.detach().double() / self.step + 1e-9).clamp_(0, self.levels)
        return _straight_through(hard.to(x.dtype), x / self.step)

    def dequantize(self, q: Tensor) -> Tensor:
        return q * self.step

    def extra_repr(self) -> str:
        return f"step={self.step:g}, levels={self.levels}"


# --- binarized layers ----------------------------------------------------------------------

class _BinWeight(nn.Module):
    """Shared weight handling of `BinLinear` and `BinConv2d`."""

    weight: nn.Parameter
    mask: nn.Parameter | None

    def _init_weights(self, shape: tuple[int, ...], sparsity: str, threshold: float) -> None:
        if sparsity not in SPARSITY_MODES:
            raise UserError(f"Unknown sparsity mode {sparsity!r}: use one of "
                            f"{', '.join(SPARSITY_MODES)}.")
        self.sparsity = sparsity
        self.threshold = float(threshold)
        self.weight = nn.Parameter(torch.randn(shape) * _WEIGHT_STD)
        if sparsity == "binmask":
            self.mask = nn.Parameter(torch.randn(shape).abs_() * _MASK_STD)
        else:
            self.register_parameter("mask", None)

    def binary_weight(self) -> Tensor:
        """Effective weights in {-1, 0, 1} (float), with straight-through gradients."""
        w = self.weight
        if self.sparsity == "ternary":
            hard = torch.sign(w) * (w.abs() >= self.threshold).to(w.dtype)
            return _straight_through(hard, w)
        wb = _sign01_weight(w)
        if self.mask is not None:
            wb = wb * _straight_through((self.mask > 0).to(w.dtype), self.mask)
        return wb

    @torch.no_grad()
    def int_weight(self) -> Tensor:
        """Effective weights as an int8 tensor."""
        return self.binary_weight().detach().round().to(torch.int8)

    @torch.no_grad()
    def clip_(self, bound: float = 1.0) -> None:
        self.weight.clamp_(-bound, bound)
        if self.mask is not None:
            self.mask.clamp_(-bound, bound)


class BinLinear(_BinWeight):
    """y = W_b x with W_b in {-1, 0, 1} (no bias)."""

    def __init__(self, in_features: int, out_features: int, sparsity: str = "binmask",
                 threshold: float = 0.005):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_weights((out_features, in_features), sparsity, threshold)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.binary_weight())

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, sparsity={self.sparsity}"


class BinConv2d(_BinWeight):
    """2-D convolution with weights in {-1, 0, 1}, zero padding, no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, sparsity: str = "binmask", threshold: float = 0.005):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self._init_weights((out_channels, in_channels, kernel, kernel), sparsity, threshold)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.binary_weight(), stride=self.stride, padding=self.padding)

    def out_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        _, h, w = in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return self.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel={self.kernel}, "
                f"stride={self.stride}, padding={self.padding}, sparsity={self.sparsity}")


class BinBatchNorm(nn.Module):
    """BatchNorm over dim 1 (per channel), or with scalar statistics (``scalar=True``).

    y = (z - mean) * gamma / sqrt(var + eps) + beta. Scalar mode shares mean, var and gamma
    over every feature (beta stays per feature): the output layer uses it, so the logits are
    one scale times the integer scores plus a bias per class.

    Modes: training (batch statistics, running ones updated), ``frozen`` (batch statistics,
    running ones untouched: attacks run so), eval (running statistics). ``last_stats`` keeps
    the (mean, var) of the latest training-mode forward for the cardinality-bound loss.
    """

    def __init__(self, num_features: int, scalar: bool = False, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        n = 1 if scalar else num_features
        self.num_features = num_features
        self.scalar = scalar
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))
        self.frozen = False
        self.last_stats: tuple[Tensor, Tensor] | None = None
        self._collect: list | None = None  # [sum, sum of squares, count] while recomputing

    def _dims(self, z: Tensor) -> list[int]:
        return list(range(z.dim())) if self.scalar else [0, *range(2, z.dim())]

    def _view(self, t: Tensor, z: Tensor) -> Tensor:
        return t.reshape(1, -1, *([1] * (z.dim() - 2)))

    def forward(self, z: Tensor) -> Tensor:
        if self._collect is not None:
            zd = z.detach().double()
            dims = self._dims(z)
            self._collect[0] += zd.sum(dims)
            self._collect[1] += (zd * zd).sum(dims)
            self._collect[2] += zd.numel() // (1 if self.scalar else z.shape[1])
            raise CollectDone
        if self.training:
            dims = self._dims(z)
            var, mean = torch.var_mean(z, dims, unbiased=False)
            if self.scalar:
                mean, var = mean.reshape(1), var.reshape(1)
            self.last_stats = (mean, var)
            if not self.frozen:
                with torch.no_grad():
                    n = z.numel() // mean.numel()
                    unbiased = var * (n / max(n - 1, 1))
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (z - self._view(mean, z)) * self._view(scale, z) + self._view(self.bias, z)

    def extra_repr(self) -> str:
        return f"{self.num_features}, scalar={self.scalar}, eps={self.eps}"


class CollectDone(Exception):
    """Stops a forward pass once the BatchNorm being recomputed has seen its input
    (`network.recompute_batchnorm`)."""


class Step01(nn.Module):
    """Activation [y >= 0] with the gradient-cancelling STE of sharpness ``alpha``."""

    def __init__(self, alpha: float = DEFAULT_ALPHA):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, y: Tensor) -> Tensor:
        return step01(y, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class BinBlock(nn.Module):
    """Binarized layer -> BatchNorm -> [y >= 0]. ``top`` is the largest input value (the
    number of levels for the first layer, 1 after it): a literal count per input."""

    def __init__(self, layer: BinLinear | BinConv2d, in_shape: tuple[int, ...], top: int,
                 eps: float):
        super().__init__()
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.top = int(top)
        if isinstance(layer, BinConv2d):
            self.out_shape = layer.out_shape(self.in_shape)  # type: ignore[arg-type]
        else:
            self.out_shape = (layer.out_features,)
        self.bn = BinBatchNorm(self.out_shape[0], eps=eps)
        self.act = Step01()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.layer(x)))

    def soft_bounds(self) -> Tensor:
        """A differentiable surrogate of every neuron's cardinality bound (flattened, C order).

        The exporter folds a neuron into  sum_j s*w_j x_j >= t  with s = sign(gamma) and
        t = ceil(s * theta), theta = mean - beta * sqrt(var + eps) / gamma the point where the
        BatchNorm output crosses 0; the encoder's bound is then t + top * #(s * w_j = -1).
        The surrogate drops the ceiling (s * theta), uses the statistics of the latest
        training forward (running ones in eval mode), keeps gamma away from 0 (|gamma| >= 1e-3)
        and counts #(s * w = -1) as sum relu(-s * w_b) through the weights' STE, so the loss
        reaches gamma, beta, the batch statistics, the weights and the masks. For a
        convolution the count is taken per output position (padding removes inputs at the
        border), by convolving an all-ones input with relu(-s * w_b).
        """
        bn = self.bn
        if self.training and bn.last_stats is not None:
            mean, var = bn.last_stats
        else:
            mean, var = bn.running_mean, bn.running_var
        gamma = bn.weight
        s = torch.where(gamma.detach() < 0, -1.0, 1.0)
        safe = s * gamma.abs().clamp(min=1e-3)
        theta = mean - bn.bias * torch.sqrt(var + bn.eps) / safe
        wb = self.layer.binary_weight()
        if isinstance(self.layer, BinConv2d):
            neg = F.relu(-s.view(-1, 1, 1, 1) * wb)
            ones = torch.ones(1, *self.in_shape, dtype=wb.dtype, device=wb.device)
            count = F.conv2d(ones, neg, stride=self.layer.stride, padding=self.layer.padding)[0]
            bound = (s * theta).view(-1, 1, 1) + self.top * count
        else:
            count = F.relu(-s.view(-1, 1) * wb).sum(1)
            bound = s * theta + self.top * count
        return bound.reshape(-1)


class BinOutput(nn.Module):
    """Binarized linear layer + scalar-statistics BatchNorm: real logits."""

    def __init__(self, in_features: int, classes: int, sparsity: str, threshold: float,
                 eps: float):
        super().__init__()
        self.layer = BinLinear(in_features, classes, sparsity, threshold)
        self.bn = BinBatchNorm(classes, scalar=True, eps=eps)

    def forward(self, a: Tensor) -> Tensor:
        return self.bn(self.layer(a))
