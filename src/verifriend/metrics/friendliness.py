"""Verification-friendliness metrics of one model on a set of Linf robustness properties.

A property is one test image with its label and a radius eps: "every input in the
eps-ball (clipped to [0,1]) is classified as the label". The metrics are the ones the
NBC paper reports and that the incomplete bound engine can give: clean accuracy, PGD
accuracy, the stable-neuron ratio, and the share of properties proved by IBP and CROWN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from verifriend.attack import pgd_accuracy
from verifriend.bounds import (
    Graph,
    compute_bounds,
    linf_box,
    robustness_spec,
    stable_ratio,
    unstable_counts,
)
from verifriend.bounds.frontends.torch import from_module

# (phase, batches done, batches in all, counts so far): how the phases report progress
Progress = Callable[[str, int, int, str], None]


@dataclass
class Friendliness:
    """Metrics of one model at one radius; percentages are 0-100."""

    eps: float
    n_properties: int
    clean_acc: float
    pgd_acc: float
    stable_pct: float
    proved_ibp_pct: float
    proved_crown_pct: float
    proved_pct: float
    proved_alpha_pct: float | None = None
    stable_pct_per_layer: list[float] = field(default_factory=list)
    time_s: float = 0.0

    def to_dict(self) -> dict:
        """The metrics as a dict; ``proved_alpha_pct`` only when alpha-CROWN ran."""
        d = asdict(self)
        if d["proved_alpha_pct"] is None:
            del d["proved_alpha_pct"]
        return d


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    correct = 0
    for s in _batches(len(x), batch_size):
        correct += (model(x[s]).argmax(1) == y[s]).sum().item()
    return correct / max(len(x), 1)


def _quiet(phase: str, done: int, total: int, stats: str) -> None:
    pass


def accuracies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
               pgd_steps: int = 100, pgd_restarts: int = 1,
               progress: Progress | None = None) -> tuple[float, float]:
    """(clean accuracy, PGD accuracy) of ``model`` on ``x``, ``y``; ``progress`` hears
    about every batch of each phase with the count of correct examples so far."""
    tell = progress or _quiet
    n, right = len(x), 0
    chunks = list(_batches(n, 1000))
    for i, s in enumerate(chunks):
        right += round(clean_accuracy(model, x[s], y[s]) * (s.stop - s.start))
        tell("clean accuracy", i + 1, len(chunks), f"{right}/{s.stop} correct")
    if n == 0:
        return 0.0, pgd_accuracy(model, x, y, eps, steps=pgd_steps)  # (refuses no examples)
    robust, chunks = 0, list(_batches(n, 256))
    for i, s in enumerate(chunks):  # pgd_accuracy's own batches, one at a time
        acc = pgd_accuracy(model, x[s], y[s], eps, steps=pgd_steps, restarts=pgd_restarts)
        robust += round(acc * (s.stop - s.start))
        tell(f"PGD-{pgd_steps} accuracy", i + 1, len(chunks), f"{robust}/{s.stop} robust")
    return right / n, robust / n


def property_bounds(graph: Graph, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int = 50,
                    alpha: bool = False, progress: Progress | None = None):
    """IBP and CROWN (and with ``alpha`` alpha-CROWN) verdicts plus stable-neuron statistics
    for each property.

    Returns a dict of per-property tensors: ``proved_ibp``, ``proved_crown`` (bool),
    ``stable`` (fraction of stable hidden ReLUs under CROWN bounds) and
    ``stable_per_layer`` (properties x ReLU layers); with ``alpha`` also ``proved_alpha``.
    ``progress`` hears about every batch with the properties proved so far.
    """
    tell = progress or _quiet
    proved_ibp, proved_crown, stable, per_layer, proved_alpha = [], [], [], [], []
    chunks = list(_batches(len(x), batch_size))
    for i, s in enumerate(chunks):
        lo, hi = linf_box(x[s], eps)
        spec = robustness_spec(y[s], graph.num_outputs)
        ibp_b = compute_bounds(graph, lo, hi, spec, method="ibp")
        crown_b = compute_bounds(graph, lo, hi, spec, method="crown")
        proved_ibp.append((ibp_b.lower > 0).all(1))
        proved_crown.append((crown_b.lower > 0).all(1))
        sizes = torch.tensor([pl[0].numel() for pl, _ in crown_b.pre_relu], dtype=torch.float64,
                             device=lo.device)
        stable.append(stable_ratio(crown_b).double())
        per_layer.append(1.0 - unstable_counts(crown_b).double() / sizes)
        n_ibp, n_crown = (int(sum(t.sum() for t in p)) for p in (proved_ibp, proved_crown))
        tell("IBP/CROWN bounds", i + 1, len(chunks),
             f"IBP {n_ibp}  CROWN {n_crown} proved of {s.stop}")
        if alpha:
            alpha_b = compute_bounds(graph, lo, hi, spec, method="alpha")
            proved_alpha.append((alpha_b.lower > 0).all(1) | proved_crown[-1])
            tell("alpha-CROWN bounds", i + 1, len(chunks),
                 f"{int(sum(t.sum() for t in proved_alpha))} proved of {s.stop}")
    return {
        "proved_ibp": torch.cat(proved_ibp),
        "proved_crown": torch.cat(proved_crown),
        "stable": torch.cat(stable),
        "stable_per_layer": torch.cat(per_layer),
        **({"proved_alpha": torch.cat(proved_alpha)} if alpha else {}),
    }


def evaluate_friendliness(
    model: nn.Module,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    prop_idx: torch.Tensor,
    eps: float,
    *,
    pgd_steps: int = 100,
    pgd_restarts: int = 1,
    batch_size: int = 50,
    accuracy_limit: int | None = None,
    graph: Graph | None = None,
    alpha: bool = False,
    progress: Progress | None = None,
) -> Friendliness:
    """Clean and PGD accuracy on the whole test set (or its first ``accuracy_limit``
    images); bounds on the properties ``prop_idx`` (of ``graph``, default: ``model``'s), and
    with ``alpha`` the share alpha-CROWN proves too.

    A property is proved when every margin ``f_y - f_j`` has a positive lower bound; a
    property proved by IBP is also proved by CROWN, which reports the intersection of both.
    ``progress(phase, batches done, batches, counts)`` hears about every batch of every
    phase (clean accuracy, PGD accuracy, IBP/CROWN bounds, alpha-CROWN bounds).
    """
    start = time.perf_counter()
    model.eval()
    xa, ya = x_test[:accuracy_limit], y_test[:accuracy_limit]
    clean, pgd = accuracies(model, xa, ya, eps, pgd_steps=pgd_steps, pgd_restarts=pgd_restarts,
                            progress=progress)
    graph = graph or from_module(model, tuple(x_test.shape[1:]))
    xs, ys = x_test[prop_idx], y_test[prop_idx]
    r = property_bounds(graph, xs, ys, eps, batch_size=batch_size, alpha=alpha,
                        progress=progress)
    proved = r["proved_ibp"] | r["proved_crown"]
    n = len(prop_idx)
    return Friendliness(
        eps=eps,
        n_properties=n,
        clean_acc=100.0 * clean,
        pgd_acc=100.0 * pgd,
        stable_pct=100.0 * r["stable"].mean().item(),
        proved_ibp_pct=100.0 * r["proved_ibp"].float().mean().item(),
        proved_crown_pct=100.0 * r["proved_crown"].float().mean().item(),
        proved_pct=100.0 * proved.float().mean().item(),
        proved_alpha_pct=(100.0 * r["proved_alpha"].float().mean().item() if alpha else None),
        stable_pct_per_layer=(100.0 * r["stable_per_layer"].mean(0)).tolist(),
        time_s=time.perf_counter() - start,
    )
