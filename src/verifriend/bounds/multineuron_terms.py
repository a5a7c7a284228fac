"""Multi-neuron constraints inside back-substitution: the gamma multipliers (MN-BaB).

Ferrari, Mueller, Jovanovic, Vechev, "Complete Verification via Multi-Neuron Relaxation
Guided Branch-and-Bound", ICLR 2022, Section 3.1.

A ReLU node ``r`` with input ``y`` carries rows ``P y + P^ relu(y) <= p``
(:mod:`verifriend.bounds.multineuron`, each row on k neurons). For a linear function
``f`` to be bounded below and multipliers ``gamma >= 0`` (one per domain, bound row and
constraint row), ``f >= f + gamma^T (P y + P^ relu(y) - p)`` on every input, so a lower
bound of the right-hand side is one of ``f``: the sweep adds ``gamma^T P^`` to the
coefficients of the ReLU's output before relaxing it, ``gamma^T P`` to those of its input
after, and ``-gamma^T p`` to the constant. Any ``gamma >= 0`` is sound; the optimizer
tunes them with the slopes and split multipliers.
"""

from __future__ import annotations

import math

from torch import Tensor

from verifriend.bounds.graph import Graph


def _spread(graph: Graph, r: int, gamma: Tensor, idx: Tensor, coef: Tensor) -> Tensor:
    """``gamma^T coef`` as coefficients (D, S, *shape of r) on the node's neurons."""
    D, S, _ = gamma.shape
    n = math.prod(graph.nodes[r].shape)
    values = (gamma.unsqueeze(-1) * coef.to(gamma.dtype)).flatten(2)  # (D, S, R * k)
    out = gamma.new_zeros(D, S, n).index_add(2, idx.flatten(), values)
    return out.view(D, S, *graph.nodes[r].shape)


def gamma_terms(
    graph: Graph, rows: dict, gammas: dict[int, Tensor]
) -> tuple[dict[int, Tensor], dict[int, Tensor], Tensor | None]:
    """The sweep's extra terms for multipliers ``gammas[r]`` (D, S, R) of the rows
    ``rows[r]`` (:class:`verifriend.bounds.multineuron.NeuronRows`): (terms on each ReLU's
    output, terms on its input, the constant (D, S)); the constant is None without rows."""
    out_terms, in_terms, const = {}, {}, None
    for r, g in gammas.items():
        nr = rows[r]
        out_terms[r] = _spread(graph, r, g, nr.idx, nr.cout)
        in_terms[r] = _spread(graph, r, g, nr.idx, nr.cin)
        c = -(g * nr.offset.to(g.dtype)).sum(-1)
        const = c if const is None else const + c
    return out_terms, in_terms, const


def initial_gammas(rows: dict, D: int, S: int, like: Tensor,
                   warm: dict[int, Tensor] | None = None) -> dict[int, Tensor]:
    """Zero multipliers (D, S, R) per node with rows, or the ``warm`` ones where they fit."""
    out = {}
    for r, nr in rows.items():
        shape = (D, S, len(nr))
        if warm is not None and r in warm and tuple(warm[r].shape) == shape:
            out[r] = warm[r].to(like.dtype).clone()
        else:
            out[r] = like.new_zeros(shape)
    return out


def acs_scores(graph: Graph, rows: dict, gammas: dict[int, Tensor],
               weights: Tensor | None = None) -> dict[int, Tensor]:
    """Active Constraint Scores (MN-BaB, Eq. 6): per ReLU node with rows, (D, n) scores
    ``|gamma^T P|_j + |gamma^T P^|_j`` summed over the domain's bound rows, each weighted by
    ``weights`` (D, S) when given (e.g. 1 on the rows not yet proved, 0 on the others)."""
    scores = {}
    for r, g in gammas.items():
        if weights is not None:
            g = g * weights.to(g.dtype).unsqueeze(-1)
        nr = rows[r]
        s_in = _spread(graph, r, g, nr.idx, nr.cin).flatten(2).abs().sum(1)
        s_out = _spread(graph, r, g, nr.idx, nr.cout).flatten(2).abs().sum(1)
        scores[r] = s_in + s_out
    return scores
