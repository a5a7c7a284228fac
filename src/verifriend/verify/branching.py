"""Which ReLU to split next in each branch-and-bound domain.

BaBSR (Bunel et al. 2020) ranks an unstable neuron by how much of the domain's
lower bound its relaxation costs: back-substituting the still-unproved spec rows
gives each ReLU output a coefficient ``lam``; a negative coefficient takes the
upper line of the triangle, whose intercept ``-u l / (u - l)`` enters the bound
as ``lam * intercept``. Splitting removes that term, so the score is
``max(-lam, 0) * intercept``, with a small share of ``|lam| * intercept`` to
rank neurons with positive coefficients (their lower slope is loose too).

FSB (filtered smart branching, De Palma et al. 2021) takes the best few BaBSR
candidates per domain, bounds both children of each with one cheap CROWN pass,
and keeps the candidate whose worse child is best.

ACS and CAB are MN-BaB's (Ferrari et al., ICLR 2022, Section 3.2): the active constraint
score reads the multipliers of the multi-neuron rows, and cost adjusted branching divides
a score by the cost of the bound recomputation its split causes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifriend.bounds.crown import refinement_plan
from verifriend.bounds.graph import Graph
from verifriend.bounds.multineuron_terms import acs_scores
from verifriend.bounds.relax import Interval, backsubstitute
from verifriend.bounds.splits import Splits

BRANCHING = ("babsr", "fsb", "acs")


def babsr_scores(
    graph: Graph, intervals: list[Interval], rows: Tensor, splits: Splits
) -> dict[int, Tensor]:
    """Per ReLU node, (D, n) scores of its neurons; -inf where a split is impossible.

    ``intervals`` are the domains' node bounds (splits already clamped), ``rows``
    (D, m) weights of the output rows to improve (e.g. 1 on rows not yet proved).
    """
    D = rows.shape[0]
    A = rows.to(intervals[0][0].dtype).view(D, 1, -1)
    recorded: dict[int, Tensor] = {}
    with torch.no_grad():
        backsubstitute(graph, len(graph.nodes) - 1, A, intervals, record=recorded)
    scores = {}
    for r in graph.relu_nodes():
        lo, up = (t.flatten(1) for t in intervals[graph.nodes[r].inputs[0]])
        unstable = (lo < 0) & (up > 0) & (splits.signs[r].flatten(1) == 0)
        intercept = torch.where(unstable, -up * lo / (up - lo).clamp(min=1e-30), 0.0)
        lam = recorded.get(r)
        if lam is None:  # not on the path to the output: splitting it cannot help
            lam = torch.zeros_like(lo)
        else:
            lam = lam.expand(D, -1, *lam.shape[2:]).sum(1).flatten(1)
        score = (-lam).clamp(min=0) * intercept + 1e-2 * lam.abs() * intercept
        # tiny tie-breaker: among equal scores prefer wider neurons
        score = score + 1e-8 * intercept
        scores[r] = torch.where(unstable, score, float("-inf"))
    return scores


ACS_FLOOR = 1e-3  # a domain whose active constraint scores are all below this uses BaBSR
# (the public MN-BaB code uses the same threshold; at 1e-9 near-zero multipliers steered
# the search into thousands of useless splits on a 29-ReLU network)


def acs_or_babsr(graph: Graph, intervals: list[Interval], rows: Tensor, splits: Splits,
                 state) -> dict[int, Tensor]:
    """Active constraint scores (MN-BaB, Eq. 6) of the unstable unsplit neurons, per domain;
    BaBSR's scores in domains where every ACS score is ~0 (no multi-neuron row active).
    ``state`` is the domains' :class:`verifriend.bounds.optimizer.OptState`."""
    babsr = babsr_scores(graph, intervals, rows, splits)
    # only the rows still to prove count, as in BaBSR
    acs = acs_scores(graph, state.mnc, state.gammas, rows) if state.gammas else {}
    D = rows.shape[0]
    best = torch.zeros(D, dtype=intervals[0][0].dtype, device=rows.device)
    masked = {}
    for r, s in babsr.items():
        a = acs.get(r)
        a = torch.zeros_like(s) if a is None else a.to(s.dtype)
        masked[r] = torch.where(torch.isfinite(s), a, float("-inf"))
        best = torch.maximum(best, masked[r].amax(1).clamp(min=0))
    use = (best > ACS_FLOOR).unsqueeze(1)
    return {r: torch.where(use, masked[r], s) for r, s in babsr.items()}


def split_costs(graph: Graph, intervals: list[Interval], m: int) -> dict[int, float]:
    """Per ReLU node, the estimated cost (multiply-adds) of bounding a child split there
    when the layers after the split are recomputed: every refined node ``t`` after it
    back-substitutes two rows per unstable neuron through the nodes before it, and the
    ``m`` spec rows go through all of them (MN-BaB's cost model: operation counts)."""
    sizes = [math.prod(n.shape) for n in graph.nodes]
    before = [sum(sizes[: j + 1]) for j in range(len(sizes))]
    refine = {}
    for t, mode in refinement_plan(graph).items():
        lo, up = intervals[t]
        wanted = (up > lo) if mode == "all" else (lo < 0) & (up > 0)
        refine[t] = 2 * float(wanted.flatten(1).sum(1).float().mean()) * before[t]
    final = 2 * m * before[-1]
    return {r: final + sum(c for t, c in refine.items() if t > r) for r in graph.relu_nodes()}


def top_candidates(scores: dict[int, Tensor], k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best (node, neuron) pairs per domain: (D, k) node ids, neuron ids, scores."""
    nodes = list(scores)
    flat = torch.cat([scores[r] for r in nodes], 1)
    sizes = torch.tensor([scores[r].shape[1] for r in nodes])
    offsets = torch.cumsum(sizes, 0) - sizes
    k = min(k, flat.shape[1])
    best, idx = flat.topk(k, dim=1)
    which = torch.bucketize(idx, offsets.to(idx.device), right=True) - 1
    node_ids = torch.tensor(nodes, device=idx.device)[which]
    neuron = idx - offsets.to(idx.device)[which]
    return node_ids, neuron, best


def branch(splits: Splits, rows: Tensor, nodes: Tensor, neurons: Tensor) -> tuple[Splits, Tensor]:
    """Both children of each domain ``rows[i]``, split on neuron ``neurons[i]`` of ReLU
    ``nodes[i]``: all ``z <= 0`` children first, then the ``z >= 0`` ones (same order);
    returns (children, parent index of each child)."""
    neg = splits.select(rows)
    pos = splits.select(rows)
    ar = torch.arange(rows.numel(), device=rows.device)
    for r in neg.signs:
        pick = nodes == r
        if not bool(pick.any()):
            continue
        for child, sign in ((neg, -1), (pos, 1)):
            flat = child.signs[r].flatten(1).clone()
            flat[ar[pick], neurons[pick]] = sign
            child.signs[r] = flat.view_as(child.signs[r])
    both = Splits({r: torch.cat([neg.signs[r], pos.signs[r]]) for r in neg.signs})
    return both, torch.cat([rows, rows])


def choose(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    intervals: list[Interval],
    rows: Tensor,
    splits: Splits,
    margin,
    *,
    method: str = "babsr",
    candidates: int = 3,
    state=None,
    costs: dict[int, float] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One (node, neuron) to split per domain: returns node ids (D,), neuron ids (D,) and
    ``ok`` (D,) False where no unstable unsplit neuron is left.

    ``margin(lower (N, m)) -> (N,)`` scores a child's bounds (higher is closer to
    proved); FSB uses it to compare candidates by their worse child. ``state`` (the
    domains' optimizer state) feeds ACS; ``costs`` (:func:`split_costs`), when given,
    divide every score (CAB).
    """
    if method == "acs":
        scores = acs_or_babsr(graph, intervals, rows, splits, state)
    else:
        scores = babsr_scores(graph, intervals, rows, splits)
    if costs is not None:
        scores = {r: s / costs[r] for r, s in scores.items()}
    if method != "fsb":
        nodes, neurons, best = top_candidates(scores, 1)
        return nodes[:, 0], neurons[:, 0], torch.isfinite(best[:, 0])
    # imported here: the optimizer is only needed for FSB
    from verifriend.bounds.beta_crown import beta_crown

    nodes, neurons, best = top_candidates(scores, candidates)
    D, k = nodes.shape
    dom = torch.arange(D, device=nodes.device).repeat_interleave(k)
    kids, parent = branch(splits, dom, nodes.flatten(), neurons.flatten())
    with torch.no_grad():
        b, _ = beta_crown(graph, x_lower[parent], x_upper[parent], None, kids, iterations=0)
    m = margin(b.lower).view(2, D, k)
    value = torch.minimum(m[0], m[1])
    value = torch.where(torch.isfinite(best), value, float("-inf"))
    pick = value.argmax(1)
    ar = torch.arange(D, device=nodes.device)
    return nodes[ar, pick], neurons[ar, pick], torch.isfinite(best[ar, pick])
