"""Max pooling written with ReLUs, so that the difference network can carry it (GROCKET,
Sec. III-B3): ``max(t, r) = r + relu(t - r)``, and a window's maximum is a tree of such
pairs, ``max(t1, t2, t3, t4) = max(max(t1, t2), max(t3, t4))``.

:func:`without_maxpool` returns a graph that computes the same function with every
MaxPool node replaced by selection convolutions (one-hot kernels with the pool's stride:
each picks one position of every window), Affine negations, Adds and ReLUs. Only
unpadded, undilated pools are rewritten (a padded position would be -inf); others are
refused with one sentence.
"""

from __future__ import annotations

import dataclasses

import torch

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import AddNode, AffineNode, Conv2dNode, MaxPoolNode, Node, ReLUNode
from verifriend.errors import UnsupportedLayerError


class _Builder:
    def __init__(self, dtype, device):
        self.nodes: list[Node] = []
        self.dtype, self.device = dtype, device

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def select(self, src: int, pool: MaxPoolNode, i: int, j: int) -> int:
        C, _, _ = pool.in_shape
        kh, kw = pool.kernel
        w = torch.zeros(C, C, kh, kw, dtype=self.dtype, device=self.device)
        w[torch.arange(C), torch.arange(C), i, j] = 1.0
        return self.add(Conv2dNode(inputs=(src,), shape=pool.shape, name=f"{pool.name}.sel{i}{j}",
                                   weight=w, bias=w.new_zeros(C), stride=pool.stride,
                                   padding=(0, 0), dilation=(1, 1), in_shape=pool.in_shape))

    def maximum(self, a: int, b: int, pool: MaxPoolNode) -> int:
        """``b + relu(a - b)``."""
        C = pool.shape[0]
        one = torch.ones(C, dtype=self.dtype, device=self.device)
        neg = self.add(AffineNode(inputs=(b,), shape=pool.shape, name=f"{pool.name}.neg",
                                  scale=-one, shift=0 * one))
        diff = self.add(AddNode(inputs=(a, neg), shape=pool.shape, name=f"{pool.name}.diff"))
        r = self.add(ReLUNode(inputs=(diff,), shape=pool.shape, name=f"{pool.name}.relu"))
        return self.add(AddNode(inputs=(b, r), shape=pool.shape, name=f"{pool.name}.max"))


def without_maxpool(graph: Graph) -> Graph:
    """``graph`` with each MaxPool node written as ReLUs (the same function)."""
    if not any(isinstance(n, MaxPoolNode) for n in graph.nodes):
        return graph
    b = _Builder(graph.dtype or torch.float32, graph.device)
    where: list[int] = []  # old node index -> new node index
    for node in graph.nodes:
        ins = tuple(where[i] for i in node.inputs)
        if not isinstance(node, MaxPoolNode):
            where.append(b.add(dataclasses.replace(node, inputs=ins)))
            continue
        if node.padding != (0, 0) or node.dilation != (1, 1) or node.extra != (0, 0):
            raise UnsupportedLayerError(
                f"max pool '{node.name}' is padded or dilated; global robustness rewrites only "
                "plain max pools as ReLUs.")
        kh, kw = node.kernel
        level = [b.select(ins[0], node, i, j) for i in range(kh) for j in range(kw)]
        while len(level) > 1:
            pairs = [b.maximum(level[k], level[k + 1], node) for k in range(0, len(level) - 1, 2)]
            level = pairs + ([level[-1]] if len(level) % 2 else [])
        where.append(level[0])
    return Graph(b.nodes, graph.input_shape)
