"""One loss function per training method, all with the same signature.

``fn(model, x, y, cfg, *, generator=None, progress=0.0) -> (scalar loss, clean logits)``,
where ``progress`` in [0, 1] is the share of training done (schedules read it):

* ``natural``: CE(f(x), y);
* ``madry`` (Madry et al. 2018): CE on PGD examples (``pgd_steps`` sign steps of ``pgd_alpha``, default eps/10);
* ``trades`` (Zhang et al. 2019): CE(f(x), y) + beta_T * KL(f(x) || f(x')), x' maximizing the KL by PGD;
* ``rs`` (Xiao et al. 2019): the Madry loss + ``rs_weight`` * sum over hidden neurons of
  ``-tanh(1 + l u)`` (l, u: IBP bounds of the neuron's input over the eps-ball; the weight
  ramps up with eps) + ``l1_weight`` * the L1 norm of the weights;
* ``ibp`` (Gowal et al. 2018): kappa * CE(f(x), y) + (1 - kappa) * the robust CE of the
  IBP margin bounds, eps ramped from 0 and kappa from 1 to ``kappa_end`` over ``ramp``;
* ``crown-ibp`` (Zhang et al. 2020): as ``ibp`` with bounds mixing CROWN-IBP and IBP,
  the CROWN-IBP share going from 1 to 0 over the ramp;
* ``nbc``: see :mod:`verifriend.train.nbc`;
* ``global`` (GROCKET, Wang et al.): CE(f(x), y) + ``global_weight`` * the global-robustness
  regularizer at ``global_delta`` (default eps), :mod:`verifriend.globalrob.regularizer`.

``eps_ramp`` > 0 grows every method's radius linearly from 0 to ``eps`` over that share of
training (a warm-up for attack-based training at large radii; ``ibp`` and ``crown-ibp``
ramp inside it as well). ``weight_decay`` > 0 adds ``weight_decay`` * the sum of squared weights (Linear and Conv
weights, not biases) to any method's loss (an L2 penalty in the loss, as GROCKET's code).

Bounds come from the bound engine on a graph that references the model's live
parameters (``from_module(..., detach=False)``), so they are differentiable.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.attack.pgd import pgd_attack
from verifriend.bounds.crown import spec_crown
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import interval_pass, pre_relu_bounds, spec_interval
from verifriend.bounds.result import linf_box, robustness_spec
from verifriend.train.config import TrainConfig
from verifriend.train.nbc import nbc_loss

LossFn = Callable[..., tuple[Tensor, Tensor]]

# model -> (input shape, its live graph): built once per run, parameters are shared
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def live_graph(model: nn.Module, input_shape: tuple[int, ...]) -> Graph:
    """The bound engine's graph of ``model`` on its live parameters (cached per model).

    Batch norm is read with its running statistics (the graph's eval semantics)."""
    hit = _GRAPHS.get(model)
    if hit is None or hit[0] != input_shape:
        hit = (input_shape, from_module(model, input_shape, detach=False))
        _GRAPHS[model] = hit
    return hit[1]


def ramp(progress: float, length: float) -> float:
    """Linear schedule from 0 at the start to 1 after ``length`` of training."""
    if length <= 0:
        return 1.0
    return min(1.0, max(0.0, progress / length))


def robust_ce(lower: Tensor) -> Tensor:
    """Mean CE of the worst-case logits given lower bounds (B, K-1) of ``f_y - f_j``.

    Those logits (0 for the label, ``-lower_j`` for the others) are the worst the bounds
    allow, so this upper-bounds the CE of every input the bounds cover."""
    zeros = lower.new_zeros(lower.shape[0], 1)
    return torch.logsumexp(torch.cat([zeros, -lower], 1), 1).mean()


def natural_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
                 generator: torch.Generator | None = None, progress: float = 0.0
                 ) -> tuple[Tensor, Tensor]:
    """Plain cross-entropy on clean inputs."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def pgd_examples(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, eps: float,
                 generator: torch.Generator | None = None) -> Tensor:
    """Madry et al.'s training attack: random start, ``pgd_steps`` CE-ascent sign steps of
    ``pgd_alpha`` (default eps / 10) in the eps-ball clipped to [0, 1]; detached."""
    if eps == 0 or cfg.pgd_steps == 0:
        return x.detach()
    step = cfg.pgd_alpha if cfg.pgd_alpha is not None else eps / 10
    return pgd_attack(model, x, y, eps, steps=cfg.pgd_steps, step_size=step, loss="ce",
                      schedule="constant", early_stop=False, generator=generator).detach()


def madry_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
               generator: torch.Generator | None = None, progress: float = 0.0
               ) -> tuple[Tensor, Tensor]:
    """CE on PGD examples; the logits returned are the clean ones (for accuracy)."""
    x_adv = pgd_examples(model, x, y, cfg, cfg.eps, generator)
    with torch.no_grad():
        logits = model(x)
    return F.cross_entropy(model(x_adv), y), logits


def trades_objective(logits: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> Tensor:
    """``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))`` (batch means)."""
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits, 1), log_target=True,
                  reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * kl


def trades_examples(model: nn.Module, x: Tensor, cfg: TrainConfig,
                    generator: torch.Generator | None = None) -> Tensor:
    """x' maximizing KL(f(x) || f(x')) in the eps-ball (TRADES' inner problem); detached."""
    x = x.detach()
    lo, hi = linf_box(x, cfg.eps)
    if cfg.eps == 0 or cfg.pgd_steps == 0:
        return x
    step = cfg.pgd_alpha if cfg.pgd_alpha is not None else cfg.eps / 10
    with torch.no_grad():
        target = F.log_softmax(model(x), 1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_p = torch.minimum(torch.maximum(x + 0.001 * noise, lo), hi)
    for _ in range(cfg.pgd_steps):
        x_p = x_p.detach().requires_grad_(True)
        with torch.enable_grad():
            kl = F.kl_div(F.log_softmax(model(x_p), 1), target, log_target=True,
                          reduction="sum")
            (g,) = torch.autograd.grad(kl, x_p)
        x_p = torch.minimum(torch.maximum(x_p.detach() + step * g.sign(), lo), hi)
    return x_p.detach()


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
                generator: torch.Generator | None = None, progress: float = 0.0
                ) -> tuple[Tensor, Tensor]:
    """TRADES with ``trades_beta``."""
    x_p = trades_examples(model, x, cfg, generator)
    logits = model(x)
    return trades_objective(logits, model(x_p), y, cfg.trades_beta), logits


def interval_bounds(model: nn.Module, x: Tensor, eps: float) -> tuple[Graph, list]:
    """The live graph and IBP bounds of every node over the eps-ball of ``x`` in [0, 1]."""
    graph = live_graph(model, tuple(x.shape[1:]))
    lo, hi = linf_box(x, eps)
    return graph, interval_pass(graph, lo, hi)


def rs_penalty(pre_bounds: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Xiao et al.'s ReLU-stability penalty: ``sum -tanh(1 + l u)`` over hidden neurons
    (mean over the batch). Near -1 per stable neuron (l u >= 0); up to +1 per neuron whose
    bounds straddle 0 widely."""
    total = 0.0
    for lo, up in pre_bounds:
        total = total + (-torch.tanh(1 + lo * up)).flatten(1).sum(1)
    return total.mean() if torch.is_tensor(total) else torch.zeros(())


def l1_penalty(model: nn.Module) -> Tensor:
    """Sum of |w| over the weights (not biases) of linear and convolutional layers."""
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def rs_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
            generator: torch.Generator | None = None, progress: float = 0.0
            ) -> tuple[Tensor, Tensor]:
    """Madry + ramped RS penalty + L1 (Xiao et al. 2019)."""
    loss, logits = madry_loss(model, x, y, cfg, generator=generator)
    graph, ivs = interval_bounds(model, x, cfg.eps)
    weight = cfg.rs_weight * ramp(progress, cfg.ramp)
    return (loss + weight * rs_penalty(pre_relu_bounds(graph, ivs))
            + cfg.l1_weight * l1_penalty(model)), logits


def _certified(model, x, y, cfg, progress, crown_share) -> tuple[Tensor, Tensor]:
    """kappa * CE + (1 - kappa) * robust CE of bounds at the ramped eps."""
    t = ramp(progress, cfg.ramp)
    eps = cfg.eps * t
    kappa = 1.0 - t * (1.0 - cfg.kappa_end)
    logits = model(x)
    graph, ivs = interval_bounds(model, x, eps)
    C = robustness_spec(y, logits.shape[1], dtype=x.dtype).to(x.device)
    lower = spec_interval(graph, ivs, C)[0]
    share = crown_share(t)
    if share > 0:
        lower = share * spec_crown(graph, ivs, C)[0] + (1 - share) * lower
    return kappa * F.cross_entropy(logits, y) + (1 - kappa) * robust_ce(lower), logits


def ibp_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
             generator: torch.Generator | None = None, progress: float = 0.0
             ) -> tuple[Tensor, Tensor]:
    """IBP certified training (Gowal et al. 2018)."""
    return _certified(model, x, y, cfg, progress, lambda t: 0.0)


def crown_ibp_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
                   generator: torch.Generator | None = None, progress: float = 0.0
                   ) -> tuple[Tensor, Tensor]:
    """CROWN-IBP certified training (Zhang et al. 2020)."""
    return _certified(model, x, y, cfg, progress, lambda t: 1.0 - t)


def _nbc(model, x, y, cfg, *, generator=None, progress=0.0):
    return nbc_loss(model, x, y, cfg, generator=generator)


def global_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
                generator: torch.Generator | None = None, progress: float = 0.0
                ) -> tuple[Tensor, Tensor]:
    """CE + lambda * R_GR (GROCKET Eq. 12), R_GR on the live weights (batch-independent)."""
    from verifriend.globalrob.regularizer import global_regularizer

    logits = model(x)
    delta = cfg.global_delta if cfg.global_delta is not None else cfg.eps
    reg = global_regularizer(live_graph(model, tuple(x.shape[1:])), delta)
    return F.cross_entropy(logits, y) + cfg.global_weight * reg, logits


def l2_penalty(model: nn.Module) -> Tensor:
    """Sum of squared Linear and Conv weights."""
    return sum((m.weight ** 2).sum() for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))


def loss_for(cfg: TrainConfig) -> LossFn:
    """The loss of ``cfg.method``: one method's, or the weighted sum of several (each term
    is that method's whole loss; the logits returned are the first method's), plus the L2
    penalty when ``weight_decay`` > 0."""
    fn = _method_loss(cfg)
    if cfg.eps_ramp > 0:
        fn = _with_eps_ramp(fn)
    if not cfg.weight_decay:
        return fn

    def with_l2(model, x, y, cfg, *, generator=None, progress=0.0):
        loss, logits = fn(model, x, y, cfg, generator=generator, progress=progress)
        return loss + cfg.weight_decay * l2_penalty(model), logits

    return with_l2


def _with_eps_ramp(fn: LossFn) -> LossFn:
    def ramped(model, x, y, cfg, *, generator=None, progress=0.0):
        eps = cfg.eps * ramp(progress, cfg.eps_ramp)
        return fn(model, x, y, dataclasses.replace(cfg, eps=eps), generator=generator,
                  progress=progress)

    return ramped


def _method_loss(cfg: TrainConfig) -> LossFn:
    fns = [LOSSES[m] for m in cfg.methods]
    if len(fns) == 1:
        return fns[0]
    weights = cfg.method_weights or [1.0] * len(fns)

    def combined(model, x, y, cfg, *, generator=None, progress=0.0):
        total, first = 0.0, None
        for w, fn in zip(weights, fns, strict=True):
            loss, logits = fn(model, x, y, cfg, generator=generator, progress=progress)
            total = total + w * loss
            first = logits if first is None else first
        return total, first

    return combined


# every method in config.METHODS has its loss here
LOSSES: dict[str, LossFn] = {
    "natural": natural_loss,
    "madry": madry_loss,
    "trades": trades_loss,
    "rs": rs_loss,
    "nbc": _nbc,
    "ibp": ibp_loss,
    "crown-ibp": crown_ibp_loss,
    "global": global_loss,
}
