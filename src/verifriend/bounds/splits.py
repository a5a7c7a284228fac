"""ReLU split constraints of a batch of branch-and-bound domains.

A domain restricts some ReLU inputs to one side of zero. ``Splits`` holds, for
each ReLU node of a graph, a ``(D, *shape)`` int8 tensor over the D domains:
``-1`` means the neuron's input ``z <= 0``, ``+1`` means ``z >= 0``, ``0`` unsplit.
Split constraints enter the bounds through beta-CROWN's multipliers (Wang et al., NeurIPS
2021; :mod:`verifriend.bounds.beta_crown`) and clamp the split neurons' intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.errors import UserError


@dataclass
class Splits:
    """Per ReLU node index, a (D, *node shape) int8 tensor in {-1, 0, +1}."""

    signs: dict[int, Tensor]

    @classmethod
    def empty(cls, graph: Graph, D: int, device=None) -> Splits:
        """D domains with no split at all."""
        return cls(
            {
                r: torch.zeros(D, *graph.nodes[r].shape, dtype=torch.int8, device=device)
                for r in graph.relu_nodes()
            }
        )

    @classmethod
    def from_point(cls, graph: Graph, x: Tensor) -> Splits:
        """The activation pattern of each input of the batch ``x``: every neuron split.

        ``z >= 0`` gives +1 and ``z < 0`` gives -1, so ``x`` lies in its own domain.
        """
        values = graph.forward_all(x)
        return cls(
            {
                r: torch.where(values[graph.nodes[r].inputs[0]] >= 0, 1, -1).to(torch.int8)
                for r in graph.relu_nodes()
            }
        )

    def to(self, device) -> Splits:
        """These splits on ``device``."""
        return Splits({r: s.to(device) for r, s in self.signs.items()})

    def __len__(self) -> int:
        return next(iter(self.signs.values())).shape[0] if self.signs else 0

    def select(self, rows: Tensor) -> Splits:
        """The domains ``rows`` (a 1-d index tensor, repeats allowed)."""
        return Splits({r: s[rows] for r, s in self.signs.items()})

    def with_split(self, rows: Tensor, node: int, neuron: Tensor, sign: int | Tensor) -> Splits:
        """Children: domain ``rows[i]`` with flat neuron ``neuron[i]`` of ReLU ``node``
        set to ``sign`` (a number or one value per child in {-1, +1})."""
        if node not in self.signs:
            raise UserError(f"node {node} is not a ReLU node of these splits.")
        rows, neuron = torch.as_tensor(rows).view(-1), torch.as_tensor(neuron).view(-1)
        sign = torch.as_tensor(sign, dtype=torch.int8).expand(rows.numel())
        if bool(((sign != 1) & (sign != -1)).any()):
            raise UserError("a split sign must be -1 (z <= 0) or +1 (z >= 0).")
        child = self.select(rows)
        flat = child.signs[node].flatten(1).clone()
        flat[torch.arange(rows.numel(), device=flat.device), neuron] = sign.to(flat.device)
        child.signs[node] = flat.view_as(child.signs[node])
        return child

    def branch(self, rows: Tensor, node: int, neuron: Tensor) -> tuple[Splits, Tensor]:
        """Both children of each domain ``rows[i]`` split on ``neuron[i]`` of ``node``.

        Returns ``(children, parent)``: the ``z <= 0`` children of all rows first,
        then the ``z >= 0`` ones; ``parent`` maps each child to its domain index
        (pass it as ``parent=`` to warm-start beta-CROWN).
        """
        rows = torch.as_tensor(rows).view(-1)
        neg = self.with_split(rows, node, neuron, -1)
        pos = self.with_split(rows, node, neuron, 1)
        return cat([neg, pos]), torch.cat([rows, rows])

    def clamp_hook(self, graph: Graph):
        """The ``tighten(j, bounds)`` hook of ``crown_intervals`` that enforces the splits:
        ``z >= 0`` raises the lower bound of the ReLU input to 0, ``z <= 0`` lowers the upper."""
        by_input: dict[int, list[Tensor]] = {}
        for r, s in self.signs.items():
            by_input.setdefault(graph.nodes[r].inputs[0], []).append(s)

        def tighten(j: int, bounds: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            lo, up = bounds
            for s in by_input.get(j, ()):
                lo = torch.where(s > 0, lo.clamp(min=0), lo)
                up = torch.where(s < 0, up.clamp(max=0), up)
            return lo, up

        return tighten

    def count(self) -> Tensor:
        """(D,) number of split neurons per domain."""
        return sum(s.flatten(1).ne(0).sum(1) for s in self.signs.values())

    def check(self, graph: Graph, D: int) -> None:
        """Raise ``UserError`` unless these splits fit ``graph`` and D domains."""
        for r, s in self.signs.items():
            if not (0 <= r < len(graph.nodes)) or not graph.nodes[r].branchable:
                raise UserError(f"splits name node {r}, which is not a ReLU node of the graph.")
            if tuple(s.shape) != (D, *graph.nodes[r].shape):
                raise UserError(
                    f"splits of ReLU node {r} have shape {tuple(s.shape)}; expected "
                    f"{(D, *graph.nodes[r].shape)}."
                )


def cat(parts: list[Splits]) -> Splits:
    """Domains of several ``Splits`` (same nodes) one after another."""
    return Splits({r: torch.cat([p.signs[r] for p in parts]) for r in parts[0].signs})
