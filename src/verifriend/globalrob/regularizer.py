"""The global-robustness regularizer (GROCKET, Sec. IV, Eq. 12-13).

``R_GR = (||C||_1 delta + d) - (-||A||_1 delta + b)``: the width of the certified interval
of the output change under any input perturbation of size delta, from the input-free
difference network and CROWN without branch and bound, so it is differentiable in the
weights and independent of the batch. Averaged over the outputs here (the paper states it
for one output). The training loss is ``CE + lambda * R_GR`` (``verifriend train --method
global``; ``lambda`` is ``global_weight``, delta is ``global_delta`` or the training eps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifriend.bounds.crown import crown
from verifriend.bounds.graph import Graph
from verifriend.globalrob.difference import difference_graph
from verifriend.globalrob.maxpool import without_maxpool


def global_regularizer(graph: Graph, delta: float, domain: tuple[float, float] = (0.0, 1.0)
                       ) -> Tensor:
    """Mean over outputs of ``ub_j - lb_j`` of ``F_j(x') - F_j(x)`` (a scalar with gradients
    to every parameter ``graph`` references; build it with ``from_module(...,
    detach=False)``)."""
    lo, hi = domain
    dgraph = difference_graph(without_maxpool(graph), None)
    like = next(t for n in graph.nodes for t in vars(n).values() if isinstance(t, Tensor))
    box = torch.full((1, *graph.input_shape), min(delta, hi - lo), dtype=like.dtype,
                     device=like.device)
    b = crown(dgraph, -box, box)
    return (b.upper - b.lower).mean()
