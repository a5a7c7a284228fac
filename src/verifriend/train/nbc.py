"""Neuron behavior consistency (NBC) training loss.

Liu et al., "Training Verification-Friendly Neural Networks via Neuron Behavior
Consistency". For an input x and a neighbour x' in its eps-ball::

    NBC(x, x') = sum_i cos(z_i(x), z_i(x')) / gamma_i  -  KL(softmax f(x) || softmax f(x'))

where z_i are the pre-activations (inputs of the ReLU) of hidden layer i,
flattened per example, and gamma_i = 2^r_i with r_i the dense rank of layer i's
width (smallest width = rank 1). x' is found by k steps that decrease NBC (Algorithm 2:
from a uniform start in the ball; steps of alpha times the gradient's sign, or of alpha times
the gradient itself), and training minimizes ``CE(f(x), y) - beta * NBC(x, x')``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.errors import UserError
from verifriend.train.config import GAMMA_VARIANTS, TrainConfig


def hidden_preactivations(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Run ``model(x)``; return the logits and the input of every ``nn.ReLU`` call, in forward order.

    Pre-hooks catch ReLUs at any depth (nested Sequentials, Residual blocks).
    ReLUs applied functionally (``F.relu``) are not seen.
    """
    captured: list[Tensor] = []

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        # an in-place ReLU would overwrite the tensor we keep, so keep a copy
        captured.append(args[0].clone() if getattr(module, "inplace", False) else args[0])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, nn.ReLU)]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, captured


def layer_gammas(widths: Sequence[int], variant: str = "rank") -> list[float]:
    """Layer weights' denominators: ``2^rank(width)`` (dense rank, smallest = 1), all ones,
    or ``2^rank(width) * width`` ("rank-width"), the variants the NBC paper ablates."""
    if variant not in GAMMA_VARIANTS:
        raise UserError(f"Unknown NBC gamma variant {variant!r}; choose one of "
                        f"{', '.join(GAMMA_VARIANTS)}.")
    if variant == "one":
        return [1.0] * len(widths)
    rank = {w: r for r, w in enumerate(sorted(set(widths)), start=1)}
    scale = (lambda w: float(w)) if variant == "rank-width" else (lambda w: 1.0)
    return [float(2 ** rank[w]) * scale(w) for w in widths]


def _score_from_parts(logits: Tensor, pre: list[Tensor], logits_p: Tensor, pre_p: list[Tensor],
                      gammas: Sequence[float]) -> Tensor:
    if len(gammas) != len(pre) or len(pre) != len(pre_p):
        raise UserError(f"Got {len(gammas)} layer weights for {len(pre)} hidden ReLU layers.")
    score = logits.new_zeros(logits.shape[0])
    for z, z_p, g in zip(pre, pre_p, gammas):
        score = score + F.cosine_similarity(z.flatten(1), z_p.flatten(1), dim=1) / g
    kl = F.kl_div(F.log_softmax(logits_p, dim=1), F.log_softmax(logits, dim=1),
                  reduction="none", log_target=True).sum(dim=1)
    return score - kl


def nbc_score(model: nn.Module, x: Tensor, x_prime: Tensor, gammas: Sequence[float]) -> Tensor:
    """Per-example NBC(x, x'), shape (B,); ``gammas`` has one entry per hidden ReLU layer."""
    logits, pre = hidden_preactivations(model, x)
    logits_p, pre_p = hidden_preactivations(model, x_prime)
    return _score_from_parts(logits, pre, logits_p, pre_p, gammas)


def model_gammas(model: nn.Module, x: Tensor, variant: str = "rank") -> list[float]:
    """Gammas for ``model``'s hidden layers, from the widths seen on input ``x``."""
    with torch.no_grad():
        _, pre = hidden_preactivations(model, x[:1])
    return layer_gammas([z[0].numel() for z in pre], variant)


def _random_start(x: Tensor, eps: float, generator: torch.Generator | None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    lo, hi = torch.clamp(x - eps, min=0.0), torch.clamp(x + eps, max=1.0)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return lo + u * (hi - lo), lo, hi


def _descend(model: nn.Module, x_p: Tensor, lo: Tensor, hi: Tensor, logits: Tensor,
             pre: list[Tensor], gammas: Sequence[float], k: int, alpha: float,
             step: str = "sign") -> Tensor:
    """k steps from x_p that lower NBC against the fixed (detached) x-side outputs: alpha
    times the gradient's sign (``step="sign"``) or the gradient (``"gradient"``)."""
    for _ in range(k):
        x_p.requires_grad_(True)
        with torch.enable_grad():
            logits_p, pre_p = hidden_preactivations(model, x_p)
            score = _score_from_parts(logits, pre, logits_p, pre_p, gammas)
            (grad,) = torch.autograd.grad(score.sum(), x_p)
        with torch.no_grad():
            move = grad.sign() if step == "sign" else grad
            x_p = torch.minimum(torch.maximum(x_p - alpha * move, lo), hi)
    return x_p.detach()


def find_nbc_neighbour(model: nn.Module, x: Tensor, eps: float, k: int, alpha: float, *,
                       gammas: Sequence[float] | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
    """Neighbour x' in the eps-ball (clipped to [0, 1]) that lowers NBC(x, x'); detached.

    Starts uniformly in the ball and takes ``k`` sign steps of size ``alpha``.
    ``gammas`` defaults to the rank variant. The model's mode is left as it is.
    """
    x = x.detach()
    x_p, lo, hi = _random_start(x, eps, generator)
    if k == 0:
        return x_p
    with torch.no_grad():
        logits, pre = hidden_preactivations(model, x)
    if gammas is None:
        gammas = layer_gammas([z[0].numel() for z in pre])
    return _descend(model, x_p, lo, hi, logits, pre, gammas, k, alpha)


def nbc_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``CE(f(x), y) - beta * mean NBC(x, x')`` and the clean logits ``f(x)``.

    Gradients flow through both f(x) and f(x'); x' itself is a constant.
    """
    logits, pre = hidden_preactivations(model, x)
    gammas = layer_gammas([z[0].numel() for z in pre], cfg.nbc_gamma)
    x_p, lo, hi = _random_start(x.detach(), cfg.eps, generator)
    # the search reuses this forward pass of x instead of running another one
    x_p = _descend(model, x_p, lo, hi, logits.detach(), [z.detach() for z in pre], gammas,
                   cfg.nbc_k, cfg.alpha, cfg.nbc_step)
    logits_p, pre_p = hidden_preactivations(model, x_p)
    score = _score_from_parts(logits, pre, logits_p, pre_p, gammas)
    return F.cross_entropy(logits, y) - cfg.nbc_beta * score.mean(), logits
