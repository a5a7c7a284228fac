"""The exact global robustness of a small network by one MILP over its twin network.

The interleaving twin-network encoding (Wang, Huang, Zhu, "Efficient Global Robustness
Certification of Neural Networks via Interleaving Twin-Network Encoding", DATE 2022)
without its relaxations: two copies of the network's exact MILP (each node's own rows,
:func:`verifriend.verify.milp.add_network`, with big-M constants from CROWN bounds over the
domain), inputs x and x' in the domain X, rows ``-delta <= x' - x <= delta``, and the
objective ``F_j(x') - F_j(x)``. Its optimum is ``eps_j`` exactly (up to HiGHS's
feasibility tolerance, ~1e-6): what the certified bounds are tested against. The number
of binaries doubles the network's unstable ReLUs, so this is for networks of tens of
neurons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.crown import crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ops.milp_rows import MilpRows
from verifriend.errors import UserError
from verifriend.verify.milp import MilpModel, add_network, encodable


@dataclass
class TwinResult:
    """``value``: the largest ``F_j(x') - F_j(x)`` (exact when ``status`` is "optimal");
    ``bound``: HiGHS's upper bound of it; ``x``, ``x_prime``: a pair that attains ``value``."""

    status: str
    value: float
    bound: float
    x: Tensor | None
    x_prime: Tensor | None


def twin_milp(graph: Graph, delta: float, output: int, domain: tuple[float, float] = (0.0, 1.0),
              time_limit: float | None = None) -> TwinResult:
    """``max F_output(x') - F_output(x)`` over x, x' in ``[lo, hi]^n``, ``|x' - x| <= delta``."""
    if not encodable(graph):
        raise UserError("the exact twin MILP needs a piecewise-linear network.")
    if not 0 <= output < graph.num_outputs:
        raise UserError(f"output {output} does not exist (0..{graph.num_outputs - 1}).")
    g = graph.to(device="cpu", dtype=torch.float64)
    lo = torch.full((1, *g.input_shape), float(domain[0]), dtype=torch.float64)
    hi = torch.full_like(lo, float(domain[1]))
    with torch.no_grad():
        intervals = crown_intervals(g, lo, hi)
    rel = math.sqrt(torch.finfo(torch.float64).eps)
    rows, fix = MilpRows(), []
    first, _ = add_network(rows, fix, g, lo, hi, intervals, None, 0, rel, False)
    second, _ = add_network(rows, fix, g, lo, hi, intervals, None, 0, rel, False)
    k = first[0].size
    one = np.ones(k)
    rows.rows(np.full(k, -delta), np.full(k, delta), (np.arange(k), second[0], one),
              (np.arange(k), first[0], -one))
    highs, nbin = rows.build(fix)
    both = torch.cat([lo, lo]), torch.cat([hi, hi])
    model = MilpModel(highs, np.concatenate([first[0], second[0]]).astype(np.int32),
                      np.concatenate([first[-1], second[-1]]).astype(np.int32),
                      both[0], both[1], False, nbin)
    n = g.num_outputs
    cost = torch.zeros(2 * n, dtype=torch.float64)
    cost[output], cost[n + output] = 1.0, -1.0  # minimize F(x) - F(x')
    res = model.minimize(cost, time_limit)
    if res.x is None:
        return TwinResult(res.status, -math.inf, -res.bound, None, None)
    return TwinResult(res.status, -res.value, -res.bound, res.x[0], res.x[1])
