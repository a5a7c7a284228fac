"""The root of MN-BaB: multi-neuron constraints built once, then alphas and gammas optimized.

Ferrari, Mueller, Jovanovic, Vechev, "Complete Verification via Multi-Neuron Relaxation
Guided Branch-and-Bound", ICLR 2022. After alpha-CROWN (the paper's alpha-only warm-up),
the rows of every ReLU layer are built from the root's float64 node bounds
(:func:`verifriend.bounds.multineuron.build_rows`), the spec rows' bound is optimized over
alphas and gammas together, and the result is confirmed in float64 with the same rows and
multipliers. The rows hold on the whole input box, so every branch-and-bound domain
inherits them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.confirm import confirm_bound
from verifriend.bounds.graph import Graph
from verifriend.bounds.multineuron import build_rows
from verifriend.bounds.optimizer import OptState, optimize_bounds
from verifriend.bounds.result import Bounds
from verifriend.deadline import Deadline
from verifriend.verify.bab import unstable_count

F64 = torch.float64
# where multi-neuron constraints pay by default (bab.mnc null): measured, ResNet6-A/B
# (10,340 ReLUs, 400-2,000 unstable at eps 1/255) gain from them (tighter root, a property
# proved that BaBSR alone leaves open), mnistfc's 512-ReLU networks do not (29 of 30 either way)
MNC_MIN_RELUS = 2000
MNC_MIN_UNSTABLE = 300


def mnc_pays(graph: Graph, intervals) -> bool:
    """Whether the default (``bab.mnc`` null) builds multi-neuron rows for a box whose root
    node bounds are ``intervals``: a large network with many unstable ReLUs."""
    relus = sum(math.prod(graph.nodes[r].shape) for r in graph.relu_nodes())
    return relus >= MNC_MIN_RELUS and int(unstable_count(graph, intervals)[0]) >= MNC_MIN_UNSTABLE


@dataclass
class MncRoot:
    """The root's bounds with the rows (float32 ``bounds``, the state's ``bounds64`` in
    float64), its ``state`` (rows and gammas included), the seconds spent building the
    rows and how many there are."""

    bounds: Bounds
    state: OptState
    bounds64: Bounds
    seconds: float
    rows: int


def multineuron_root(graph: Graph, x_lower: Tensor, x_upper: Tensor, alpha: Bounds,
                     alpha_state: OptState, alpha64: Bounds, config, *,
                     deadline: Deadline | None = None) -> MncRoot:
    """Rows from ``alpha64``'s node bounds, then ``config.mnc_iterations`` steps of alphas
    and gammas from ``alpha_state`` on ``alpha``'s node bounds (``config``: a
    :class:`verifriend.verify.bab_config.BabConfig`). Without any row (no unstable group)
    the alpha result comes back unchanged."""
    t0 = time.monotonic()
    rows = build_rows(graph.to(dtype=F64), alpha64.intervals, config.mnc_settings(),
                      deadline=deadline)
    seconds = time.monotonic() - t0
    n = sum(len(nr) for nr in rows.values())
    if not n:
        return MncRoot(alpha, alpha_state, alpha64, seconds, 0)
    bounds, state = optimize_bounds(
        graph, x_lower, x_upper, None, warm_start=alpha_state, iterations=config.mnc_iterations,
        lr=config.lr_alpha, lr_gamma=config.lr_gamma, intervals=alpha.intervals, mnc=rows,
        deadline=deadline, method="mn-bab",
    )
    bounds64 = confirm_bound(graph, x_lower, x_upper, None, state, intervals=alpha64.intervals,
                             deadline=deadline)
    return MncRoot(bounds, state, bounds64, seconds, n)
