"""What both frontends share: appending a node while tracing an example value."""

from __future__ import annotations

import torch
from torch import Tensor

from verifriend.bounds.ops import Node
from verifriend.errors import UserError


def append_traced(
    nodes: list[Node], values: list[Tensor], label: str, kind: type[Node],
    inputs: tuple[int, ...], name: str, /, **params,
) -> int:
    """Append a ``kind`` node, run it on the example ``values`` to learn its output shape.

    Graph builders keep one example value per node; a shape mismatch becomes a
    UserError naming the node (``label``). Returns the new node's index.
    """
    node = kind(inputs=inputs, shape=(), name=name, **params)
    with torch.no_grad():
        try:
            out = node.forward(*(values[i] for i in inputs))
        except RuntimeError as err:
            shapes = [nodes[i].shape for i in inputs]
            msg = str(err).splitlines()[0]
            raise UserError(f"{label} cannot take input(s) of shape {shapes} ({msg}).") from None
    node.shape = tuple(out.shape[1:])
    nodes.append(node)
    values.append(out)
    return len(nodes) - 1
