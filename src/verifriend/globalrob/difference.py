"""The difference network of a graph, and the certified bounds read from it.

Global robustness (Wang et al., "A Tool for Neural Network Global Robustness Certification
and Training" (GROCKET), Definition 1): for an output j and a perturbation size delta,
``eps_j = sup |F_j(x') - F_j(x)|`` over every x, x' in the input domain X with
``||x' - x||_inf <= delta``. Its interleaving twin network carries the difference of each
node, ``dv = v(x') - v(x)``: an affine node maps ``dx`` to ``W dx`` (no bias), a ReLU
becomes the difference ReLU of :mod:`verifriend.bounds.ops.diff_relu` (Sec. III-B). Each
operator says what it becomes (:meth:`verifriend.bounds.ops.base.Node.difference`), so the
difference network is one more graph, and the bound engine (CROWN, alpha-CROWN,
beta-CROWN and their splits) runs on it unchanged, over the box of input differences
``[max(-delta, lo - hi), min(delta, hi - lo)]`` (Sec. III-C, Eq. 9).

Two relaxations: **input-free** (the paper's: nothing is known of y, so every difference
ReLU gets the lines of its ``dy`` interval alone) and **input-aware** (ours: the
pre-activation intervals of the original network over X, by CROWN, tighten every line).

The pair set is symmetric under swapping x and x', which negates every difference, so
``sup |dF_j| = sup dF_j``: one upper bound per output is the certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.crown import crown, crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import Interval
from verifriend.errors import UserError
from verifriend.globalrob.maxpool import without_maxpool


@dataclass
class GlobalProblem:
    """One network, its input domain and delta, in the dtype the bounds are computed in.

    ``graph`` is the original network, ``domain`` the box X (each (1, *input shape)),
    ``pre`` the bounds of every node of ``graph`` over X (input-aware), or None. Max pools
    are written as ReLUs first (:mod:`verifriend.globalrob.maxpool`).
    """

    graph: Graph
    domain: Interval
    delta: float
    pre: list[Interval] | None = None

    @classmethod
    def build(cls, graph: Graph, delta: float, domain: tuple[float, float] = (0.0, 1.0),
              input_aware: bool = True, dtype: torch.dtype = torch.float64,
              device=None) -> GlobalProblem:
        lo_v, hi_v = domain
        if not (delta > 0):
            raise UserError(f"delta must be positive; got {delta}.")
        if not lo_v < hi_v:
            raise UserError(f"the domain {lo_v}:{hi_v} is empty; give LOW:HIGH with LOW < HIGH.")
        g = without_maxpool(graph.to(device=device, dtype=dtype))
        lo = torch.full((1, *g.input_shape), float(lo_v), dtype=dtype, device=device)
        hi = torch.full_like(lo, float(hi_v))
        pre = None
        if input_aware:
            with torch.no_grad():
                pre = crown_intervals(g, lo, hi)
        return cls(g, (lo, hi), float(delta), pre)

    def difference_box(self) -> Interval:
        """The input differences: ``|dx| <= delta`` with ``x, x + dx`` in X."""
        lo, hi = self.domain
        return (torch.clamp(lo - hi, min=-self.delta), torch.clamp(hi - lo, max=self.delta))

    def difference_graph(self) -> Graph:
        return difference_graph(self.graph, self.pre)

    def rows(self, outputs: list[int]) -> Tensor:
        """Spec rows ``-e_j`` (1, k, n_out): their lower bound is minus the certificate."""
        n = self.graph.num_outputs
        bad = [j for j in outputs if not 0 <= j < n]
        if bad:
            raise UserError(f"output {bad[0]} does not exist; the network has outputs 0..{n - 1}.")
        lo = self.domain[0]
        C = torch.zeros(1, len(outputs), n, dtype=lo.dtype, device=lo.device)
        C[0, torch.arange(len(outputs)), torch.tensor(outputs)] = -1.0
        return C


def difference_graph(graph: Graph, pre: list[Interval] | None) -> Graph:
    """The difference network of ``graph``: node j carries ``v_j(x') - v_j(x)``.

    ``pre[j]`` bounds node j over the input domain (None: unknown, the input-free
    relaxation). Raises ``UnsupportedLayerError`` for a node without a difference rule.
    """
    nodes = [graph.nodes[0]]
    for node in graph.nodes[1:]:
        src = node.inputs[0]
        if pre is None:
            inf = torch.full((1, *graph.nodes[src].shape), float("inf"),
                             dtype=graph.dtype or torch.float64, device=graph.device)
            iv = (-inf, inf)
        else:
            iv = pre[src]
        nodes.append(node.difference(iv))
    return Graph(nodes, graph.input_shape)


def crown_certificate(problem: GlobalProblem, outputs: list[int]) -> Tensor:
    """CROWN's upper bounds (k,) of ``F_j(x') - F_j(x)`` for the ``outputs``."""
    dlo, dhi = problem.difference_box()
    with torch.no_grad():
        b = crown(problem.difference_graph(), dlo, dhi, problem.rows(outputs))
    return -b.lower[0]


def alpha_certificate(problem: GlobalProblem, outputs: list[int], iterations: int = 20,
                      deadline=None):
    """alpha-CROWN's upper bounds (k,) and its result (bounds with the node intervals, and the
    optimized state, for branch and bound to start from)."""
    dlo, dhi = problem.difference_box()
    bounds, state = alpha_crown(problem.difference_graph(), dlo, dhi, problem.rows(outputs),
                                iterations=iterations, intermediate=True, deadline=deadline)
    return -bounds.lower[0].detach(), bounds, state
