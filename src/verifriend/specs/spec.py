"""The Spec type: an input box and an unsafe output region (OR of ANDs of linear constraints).

Convention (one form everywhere): clause ``j`` is the AND-group ``A_j Y >= b_j``, with
``A_j`` of shape (k_j, n_out) and ``b_j`` of shape (k_j,). The unsafe region is the OR over
clauses. The property holds on the box iff no input reaches any clause, i.e. iff every
clause ``j`` has a row ``k`` with ``a_jk . Y < b_jk`` for all inputs of the box.

For the bound engine the rows are flipped into the engine's orientation: ``C = -A``,
``d = b`` so that a row is *safe* when the lower bound of ``C Y + d = b - a . Y`` is > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.errors import UserError

F64 = torch.float64


@dataclass(eq=False)  # tensor fields make a generated == ambiguous
class Spec:
    """One input box (``lower``/``upper``, float64, shape (n_in,)) and an unsafe output region.

    ``clauses[j] = (A_j, b_j)`` is the AND-group ``A_j Y >= b_j`` (float64, shapes
    (k_j, n_out) and (k_j,)); the unsafe region is the OR of the clauses. An empty
    ``clauses`` list means nothing is unsafe; a clause with k_j = 0 means every output is.
    ``source`` names where the spec came from (a file path), for messages.
    """

    lower: Tensor
    upper: Tensor
    clauses: list[tuple[Tensor, Tensor]]
    n_outputs: int
    source: str = ""

    @property
    def n_inputs(self) -> int:
        """Length of the flat input vector."""
        return int(self.lower.numel())

    @property
    def n_clauses(self) -> int:
        """Number of AND-groups in the unsafe region."""
        return len(self.clauses)

    @classmethod
    def linf_robustness(
        cls,
        x_flat: Tensor,
        label: int,
        eps: float,
        num_classes: int,
        lo: float = 0.0,
        hi: float = 1.0,
    ) -> Spec:
        """The Linf robustness spec of ``x`` (flattened) with true class ``label``.

        Input box: the ball of radius ``eps`` clipped to ``[lo, hi]``. Unsafe region: the OR
        over ``j != label`` (increasing j) of the one-constraint clause ``Y_j - Y_label >= 0``.
        """
        if not eps >= 0:
            raise UserError("eps must be non-negative.")
        if num_classes < 2:
            raise UserError("a robustness spec needs at least 2 classes.")
        label = int(label)
        if not 0 <= label < num_classes:
            raise UserError(f"labels must lie in [0, {num_classes - 1}].")
        x = torch.as_tensor(x_flat, dtype=F64).detach().flatten().cpu()
        eye = torch.eye(num_classes, dtype=F64)
        clauses = [
            ((eye[j] - eye[label]).unsqueeze(0), torch.zeros(1, dtype=F64))
            for j in range(num_classes)
            if j != label
        ]
        return cls(
            lower=(x - eps).clamp(lo, hi),
            upper=(x + eps).clamp(lo, hi),
            clauses=clauses,
            n_outputs=num_classes,
            source=f"linf(label={label}, eps={eps})",
        )

    def constraints(self) -> list[tuple[int, Tensor, float]]:
        """Every constraint in file order as ``(clause index, a, b)``, reading ``a . Y >= b``."""
        return [
            (j, A[k], float(b[k])) for j, (A, b) in enumerate(self.clauses) for k in range(len(b))
        ]

    def clause_index(self) -> Tensor:
        """(m,) long: the clause of each constraint row, in file order."""
        sizes = torch.tensor([len(b) for _, b in self.clauses], dtype=torch.long)
        return torch.repeat_interleave(torch.arange(len(self.clauses)), sizes)

    def to_spec_matrix(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(C, d, clause)``: C (m, n_out), d (m,), clause (m,) long, rows in file order.

        A row is safe when the lower bound of ``C Y + d`` over the box is > 0 (C = -a, d = b);
        :meth:`proved` combines the rows' verdicts with the OR/AND structure.
        """
        A, b = self._stacked()
        return -A, b, self.clause_index()

    def input_box(
        self, shape: tuple[int, ...] | None = None, dtype: torch.dtype = F64, device=None
    ) -> tuple[Tensor, Tensor]:
        """The box as a batch of one, (1, *shape) each; ``shape`` defaults to (n_in,)."""
        shape = tuple(shape) if shape is not None else (self.n_inputs,)
        n = 1
        for s in shape:
            n *= int(s)
        if n != self.n_inputs:
            raise UserError(
                f"the spec has {self.n_inputs} inputs but the network input shape {shape} has {n}."
            )
        lo = self.lower.to(dtype=dtype, device=device).reshape(1, *shape)
        hi = self.upper.to(dtype=dtype, device=device).reshape(1, *shape)
        return lo, hi

    def proved_mask(self, lower: Tensor) -> Tensor:
        """Bool (...,): for lower bounds (..., m) of ``C Y + d``, whether the property holds.

        True iff every clause has at least one row whose lower bound is > 0. A clause
        without rows can never be excluded; no clauses at all is always proved.
        """
        lower = torch.as_tensor(lower)
        m = sum(len(b) for _, b in self.clauses)
        if lower.shape[-1] != m:
            raise UserError(
                f"expected {m} bounds per spec (one per constraint), got {lower.shape[-1]}."
            )
        idx = self.clause_index().to(lower.device)
        hits = torch.zeros(*lower.shape[:-1], self.n_clauses, dtype=torch.long, device=lower.device)
        hits.index_add_(-1, idx, (lower > 0).long())
        return (hits > 0).all(-1)

    def proved(self, lower: Tensor) -> bool:
        """Whether the lower bounds (m,) — or a batch (B, m) of sub-boxes, all needed — prove it."""
        return bool(self.proved_mask(lower).all())

    def violated_mask(self, y: Tensor) -> Tensor:
        """Bool (...,): for outputs (..., n_out), whether they lie in the unsafe region."""
        y = torch.as_tensor(y).detach().to("cpu", F64)
        if y.shape[-1] != self.n_outputs:
            raise UserError(f"expected outputs of size {self.n_outputs}, got {y.shape[-1]}.")
        A, b = self._stacked()
        failed = (y @ A.T < b).long()  # constraints that do not hold
        misses = torch.zeros(*y.shape[:-1], self.n_clauses, dtype=torch.long)
        misses.index_add_(-1, self.clause_index(), failed)
        return (misses == 0).any(-1)

    def is_violated(self, y: Tensor) -> bool:
        """Whether the concrete output ``y`` (n_out,) is in the unsafe region (exact comparison)."""
        return bool(self.violated_mask(torch.as_tensor(y).detach().reshape(-1)))

    def _stacked(self) -> tuple[Tensor, Tensor]:
        if not self.clauses:
            return torch.zeros(0, self.n_outputs, dtype=F64), torch.zeros(0, dtype=F64)
        return (
            torch.cat([A for A, _ in self.clauses]).to(F64),
            torch.cat([b for _, b in self.clauses]).to(F64),
        )


def stack_specs(specs: list[Spec]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch sub-specs (e.g. from an OR of input boxes) whose clauses have the same row counts.

    Returns ``lower``, ``upper`` (B, n_in) and ``C`` (B, m, n_out), ``d`` (B, m) in the
    orientation of :meth:`Spec.to_spec_matrix`; row b is decided by ``specs[b].proved`` (any
    of them, as the clause structure is shared); the property holds iff all are proved.
    """
    if not specs:
        raise UserError("no spec to stack.")
    mats = [s.to_spec_matrix() for s in specs]
    first = mats[0]
    for s, (C, _, clause) in zip(specs, mats):
        if (
            s.n_inputs != specs[0].n_inputs
            or C.shape != first[0].shape
            or not torch.equal(clause, first[2])
        ):
            raise UserError(
                "the sub-specs have differently shaped output constraints; bound them one at a time."
            )
    return (
        torch.stack([s.lower for s in specs]),
        torch.stack([s.upper for s in specs]),
        torch.stack([C for C, _, _ in mats]),
        torch.stack([d for _, d, _ in mats]),
    )
