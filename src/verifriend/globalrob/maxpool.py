"""Max pooling written with ReLUs, so that the difference network can carry it (GROCKET,
Sec. III-B3): ``max(t, r) = r + relu(t - r)``, and a window's maximum is a tree of such
pairs, ``max(t1, t2, t3, t4) = max(max(t1, t2), max(t3, t4))``. Each operator says whether
and how it rewrites itself (:meth:`verifriend.bounds.ops.base.Node.relu_form`; the max pool
does, with selection convolutions, negations, Adds and ReLUs)."""

from __future__ import annotations

import dataclasses

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import Node


def without_maxpool(graph: Graph) -> Graph:
    """``graph`` with every node that has a ReLU form replaced by it (the same function),
    in the graph's dtype and device; ``graph`` itself when there is none."""
    nodes: list[Node] = []
    where: list[int] = []  # old node index -> new node index
    changed = False
    for node in graph.nodes:
        moved = dataclasses.replace(node, inputs=tuple(where[i] for i in node.inputs))
        form = moved.relu_form(len(nodes)) if node.inputs else None
        if form is None:
            nodes.append(moved)
        else:
            nodes.extend(form)
            changed = True
        where.append(len(nodes) - 1)
    if not changed:
        return graph
    return Graph(nodes, graph.input_shape).to(device=graph.device, dtype=graph.dtype)
