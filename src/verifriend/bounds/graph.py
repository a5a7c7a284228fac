"""The graph IR: the one network representation every bound analysis reads.

A ``Graph`` is a list of typed nodes (:mod:`verifriend.bounds.ops`) in topological order.
``nodes[0]`` is the input, the last node is the output, and each node names the indices of
the nodes it reads. Parameters are copies taken when the graph is built (a snapshot), so
analyses never touch ``nn.Module`` internals. The frontends build graphs:
:mod:`verifriend.bounds.frontends.torch` from modules,
:mod:`verifriend.bounds.frontends.onnx` from ONNX files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.ops import FlattenNode, LinearNode, Node
from verifriend.errors import UserError

Shape = tuple[int, ...]


# ---------------------------------------------------------------- the graph


@dataclass(eq=False)
class Graph:
    """Nodes in topological order; ``nodes[0]`` is the input, ``nodes[-1]`` the output."""

    nodes: list[Node]
    input_shape: Shape

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].shape

    @property
    def num_outputs(self) -> int:
        return math.prod(self.output_shape)

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters (None for a parameter-free graph)."""
        t = next(_tensors(self), None)
        return None if t is None else t.dtype

    @property
    def device(self) -> torch.device | None:
        t = next(_tensors(self), None)
        return None if t is None else t.device

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """The output of every node for the batch ``x``."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise UserError(
                f"input of shape {tuple(x.shape)} does not match the graph's input shape "
                f"(B, {', '.join(map(str, self.input_shape))})."
            )
        values: list[Tensor] = [x]
        for node in self.nodes[1:]:
            values.append(node.forward(*(values[i] for i in node.inputs)))
        return values

    def forward(self, x: Tensor) -> Tensor:
        """The network's output; equals the source module's eval-mode output."""
        return self.forward_all(x)[-1]

    __call__ = forward

    def relu_nodes(self) -> list[int]:
        """Indices of the ReLU nodes (the branchable ones), in graph order."""
        return [i for i, n in enumerate(self.nodes) if n.branchable]

    def to(self, device=None, dtype: torch.dtype | None = None) -> Graph:
        """A copy with parameters moved to ``device`` and floating ones cast to ``dtype``."""

        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        nodes = [
            dataclasses.replace(
                n,
                **{
                    f.name: move(getattr(n, f.name))
                    for f in dataclasses.fields(n)
                    if isinstance(getattr(n, f.name), Tensor)
                },
            )
            for n in self.nodes
        ]
        return Graph(nodes, self.input_shape)

    def with_output_map(self, C: Tensor, d: Tensor) -> Graph:
        """The graph of ``x -> C f(x) + d`` (C (m, n_out), d (m,)): a spec's rows as outputs.

        A final Linear node is merged with the map, so no extra layer is bounded.
        """
        last = self.nodes[-1]
        C = C.to(dtype=self.dtype, device=self.device)
        d = d.to(dtype=self.dtype, device=self.device)
        if C.dim() != 2 or C.shape[1] != self.num_outputs or d.shape != (C.shape[0],):
            raise UserError(
                f"an output map needs C of shape (m, {self.num_outputs}) and d of shape (m,); "
                f"got {tuple(C.shape)} and {tuple(d.shape)}."
            )
        name = "spec"
        if isinstance(last, LinearNode):
            merged = dataclasses.replace(
                last, weight=C @ last.weight, bias=C @ last.bias + d, shape=(C.shape[0],)
            )
            return Graph([*self.nodes[:-1], merged], self.input_shape)
        nodes = list(self.nodes)
        src = len(nodes) - 1
        if len(last.shape) != 1:
            nodes.append(FlattenNode(inputs=(src,), shape=(self.num_outputs,), name="flatten",
                                     in_shape=last.shape))
            src += 1
        nodes.append(LinearNode(inputs=(src,), shape=(C.shape[0],), name=name, weight=C, bias=d))
        return Graph(nodes, self.input_shape)

    def __repr__(self) -> str:
        lines = [f"Graph(input_shape={self.input_shape})"]
        for i, n in enumerate(self.nodes):
            lines.append(f"  {i:3d} {n.kind:<8} <- {list(n.inputs)} {n.shape} {n.name}")
        return "\n".join(lines)


def _tensors(graph: Graph):
    for n in graph.nodes:
        for f in dataclasses.fields(n):
            v = getattr(n, f.name)
            if isinstance(v, Tensor) and v.is_floating_point():
                yield v
