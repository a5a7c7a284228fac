"""The result of a bound computation, its statistics, and the usual problem builders."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifriend.errors import UserError


@dataclass
class Bounds:
    """Bounds of the spec rows ``C @ f(x)`` over an input box.

    ``lower``/``upper`` are (B, m). ``pre_relu`` holds, per ReLU node in graph order,
    the (lower, upper) bounds of its input, each (B, *shape). ``intervals`` keeps
    the bounds the pass used for every graph node, so later passes (alpha, BaB)
    can reuse them.
    """

    lower: Tensor
    upper: Tensor
    pre_relu: list[tuple[Tensor, Tensor]]
    method: str
    intervals: list[tuple[Tensor, Tensor]] | None = field(default=None, repr=False)


def stable_mask(bounds: Bounds) -> Tensor:
    """(B, N) bool over all N hidden ReLU neurons: True where lower >= 0 or upper <= 0."""
    if not bounds.pre_relu:
        return torch.ones(bounds.lower.shape[0], 0, dtype=torch.bool, device=bounds.lower.device)
    return torch.cat([((lo >= 0) | (up <= 0)).flatten(1) for lo, up in bounds.pre_relu], 1)


def stable_ratio(bounds: Bounds) -> Tensor:
    """(B,) fraction of hidden ReLU neurons that are stable (1 for a ReLU-free network)."""
    mask = stable_mask(bounds)
    if mask.shape[1] == 0:
        return torch.ones(mask.shape[0], device=mask.device)
    return mask.float().mean(1)


def unstable_counts(bounds: Bounds) -> Tensor:
    """(B, number of ReLU nodes) count of unstable neurons (lower < 0 < upper) per ReLU node."""
    counts = [((lo < 0) & (up > 0)).flatten(1).sum(1) for lo, up in bounds.pre_relu]
    if not counts:
        return torch.zeros(bounds.lower.shape[0], 0, dtype=torch.long, device=bounds.lower.device)
    return torch.stack(counts, 1)


def linf_box(
    x: Tensor, eps: float | Tensor, lo: float = 0.0, hi: float = 1.0
) -> tuple[Tensor, Tensor]:
    """The Linf ball of radius ``eps`` around ``x`` clipped to ``[lo, hi]``.

    ``eps`` is a number or a tensor broadcastable per sample, e.g. (B,).
    """
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if bool((eps < 0).any()):
        raise UserError("eps must be non-negative.")
    if eps.dim() == 1 and x.dim() > 1:
        eps = eps.view(-1, *([1] * (x.dim() - 1)))
    return (x - eps).clamp(lo, hi), (x + eps).clamp(lo, hi)


def robustness_spec(y: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """Spec matrix (B, num_classes - 1, num_classes) with rows ``e_y - e_j`` for ``j != y``.

    The robustness property of a sample is proved iff every row's lower bound is > 0.
    """
    y = torch.as_tensor(y).long().view(-1)
    if num_classes < 2:
        raise UserError("a robustness spec needs at least 2 classes.")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"labels must lie in [0, {num_classes - 1}].")
    dtype = dtype or torch.get_default_dtype()
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    j = torch.arange(num_classes - 1, device=y.device)
    others = j + (j >= y[:, None]).long()  # skip the true label
    return eye[y][:, None, :] - eye[others]
