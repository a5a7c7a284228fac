"""Projected gradient descent (PGD) in an Linf ball, on the margin or cross-entropy loss.

Used for adversarial training, for PGD accuracy and for falsification before
verification. All examples of a batch are attacked at once; examples that are
already misclassified can be frozen (``early_stop``) so that their compute is
spent on the others.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.errors import UserError

LOSSES = ("margin", "ce")
SCHEDULES = ("constant", "cosine", "step")


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example margin ``logit_y - max_{j != y} logit_j``, shape (B,); negative = misclassified."""
    own = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return own - others.amax(dim=1)


def _per_example(eps: float | Tensor, x: Tensor) -> Tensor:
    """eps as a (B, 1, ..., 1) tensor that broadcasts against x."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(x.shape[0])
    if e.shape != (x.shape[0],):
        raise UserError(f"eps must be a scalar or have one value per example ({x.shape[0]}), "
                        f"got shape {tuple(e.shape)}.")
    if bool((e < 0).any()) or not bool(torch.isfinite(e).all()):
        raise UserError("eps must be finite and non-negative.")
    return e.view(-1, *([1] * (x.dim() - 1)))


def _step_factors(schedule: str, steps: int) -> list[float]:
    """Multipliers of the initial step size for each of the ``steps`` iterations."""
    if schedule == "constant":
        return [1.0] * steps
    if schedule == "cosine":
        return [0.5 * (1.0 + math.cos(math.pi * t / steps)) for t in range(steps)]
    # "step": halve at 50% and again at 75% of the iterations
    return [1.0 if t < steps // 2 else 0.5 if t < (3 * steps) // 4 else 0.25 for t in range(steps)]


def _check_args(x: Tensor, y: Tensor, steps: int, restarts: int, loss: str, schedule: str,
                x_min: float, x_max: float) -> None:
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise UserError(f"x must be (B, ...) and y (B,) with the same B, got {tuple(x.shape)} "
                        f"and {tuple(y.shape)}.")
    if steps < 1 or restarts < 1:
        raise UserError("PGD needs steps >= 1 and restarts >= 1.")
    if loss not in LOSSES:
        raise UserError(f"Unknown PGD loss {loss!r}; choose one of {', '.join(LOSSES)}.")
    if schedule not in SCHEDULES:
        raise UserError(f"Unknown step schedule {schedule!r}; choose one of "
                        f"{', '.join(SCHEDULES)}.")
    if not x_min <= x_max:
        raise UserError("x_min must not exceed x_max.")


def pgd_attack(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor, *, steps: int = 100,
               step_size: float | Tensor | None = None, restarts: int = 1, loss: str = "margin",
               schedule: str = "cosine", random_start: bool = True, x_min: float = 0.0,
               x_max: float = 1.0, generator: torch.Generator | None = None,
               early_stop: bool = True) -> Tensor:
    """Search the Linf ball of radius ``eps`` around ``x`` (clipped to [x_min, x_max]).

    Sign-gradient steps descend the margin (``loss="margin"``) or ascend the
    cross-entropy (``loss="ce"``). Returns, per example, the point of lowest
    margin seen over all iterates and restarts (the clean input counts too).
    ``step_size`` is the initial step, scaled down by ``schedule``; the default,
    ``min(2.5 * eps / sum_t factor_t, eps)``, gives a total travel of 2.5 * eps
    (``2.5 * eps / steps`` for the constant schedule, about twice that for cosine).
    The model's mode is left as it is and no parameter gradients are accumulated.
    """
    _check_args(x, y, steps, restarts, loss, schedule, x_min, x_max)
    x = x.detach()
    y = y.to(device=x.device, dtype=torch.long)
    e = _per_example(eps, x)
    lo = torch.clamp(x - e, min=x_min)
    hi = torch.clamp(x + e, max=x_max)
    factors = _step_factors(schedule, steps)
    # Madry et al.'s 2.5 * eps of total travel for every schedule, so that a
    # random start can still reach the far corner of the ball (2 * eps away)
    alpha = (torch.minimum(2.5 * e / sum(factors), e) if step_size is None
             else _per_example(step_size, x))

    with torch.no_grad():
        logits = model(x)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= logits.shape[1]):
            raise UserError(f"Labels must lie in [0, {logits.shape[1] - 1}] for this model.")
        best_m = margin_loss(logits, y)
    best_x = x.clone()

    for r in range(restarts):
        # examples already fooled are settled when early stopping
        active = (best_m >= 0).nonzero().squeeze(1) if early_stop else torch.arange(
            x.shape[0], device=x.device)
        if active.numel() == 0:
            break
        lo_a, hi_a, alpha_a, y_a = lo[active], hi[active], alpha[active], y[active]
        if r == 0 and not random_start:
            cur = x[active].clone()
        else:
            u = torch.rand(lo_a.shape, generator=generator, device=x.device, dtype=x.dtype)
            cur = lo_a + u * (hi_a - lo_a)

        for t in range(steps + 1):
            cur.requires_grad_(True)
            with torch.enable_grad():  # callers may attack from inside torch.no_grad()
                logits = model(cur)
                m = margin_loss(logits, y_a)
            with torch.no_grad():
                better = m < best_m[active]
                idx = active[better]
                best_m[idx] = m[better].detach()
                best_x[idx] = cur[better].detach()
            if t == steps:
                break  # the last iterate was only evaluated
            with torch.enable_grad():
                objective = m if loss == "margin" else -F.cross_entropy(logits, y_a,
                                                                        reduction="none")
                (grad,) = torch.autograd.grad(objective.sum(), cur)
            with torch.no_grad():
                cur = torch.minimum(torch.maximum(cur - alpha_a * factors[t] * grad.sign(), lo_a),
                                    hi_a)
                if early_stop and not bool((m >= 0).all()):
                    # drop fooled examples from the working set; their best point is stored
                    keep = (m >= 0).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    active, cur, lo_a, hi_a = active[keep], cur[keep], lo_a[keep], hi_a[keep]
                    alpha_a, y_a = alpha_a[keep], y_a[keep]
    return best_x


def pgd_accuracy(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor, *, steps: int = 100,
                 restarts: int = 1, batch_size: int = 256, **attack_kwargs) -> float:
    """Fraction of examples still classified correctly (margin > 0) after a PGD attack.

    The returned adversarial inputs are re-run through the model, so the
    verdict comes from the real forward pass. ``attack_kwargs`` go to ``pgd_attack``.
    """
    if x.shape[0] == 0:
        raise UserError("pgd_accuracy needs at least one example.")
    if batch_size < 1:
        raise UserError("batch_size must be at least 1.")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    robust = 0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size].to(x.device).long()
        eb = e if e.dim() == 0 else e[start:start + batch_size]
        x_adv = pgd_attack(model, xb, yb, eb, steps=steps, restarts=restarts, **attack_kwargs)
        with torch.no_grad():
            robust += int((margin_loss(model(x_adv), yb) > 0).sum())
    return robust / x.shape[0]
