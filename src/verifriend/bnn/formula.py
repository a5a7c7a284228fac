"""Plain data between the encoder and the solvers: clauses plus reified cardinality constraints.

Literals follow DIMACS: variable v >= 1 is the literal v, its negation -v.
A card (y, lits, bound) means  y <-> (number of true literals in lits) >= bound.
lits may repeat a literal (it then counts as many times as it appears) but never holds a
literal together with its negation; bound may be <= 0 (y is then true) or > len(lits) (false).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CardFormula:
    num_vars: int = 0
    clauses: list[list[int]] = field(default_factory=list)
    cards: list[tuple[int, list[int], int]] = field(default_factory=list)
    # a hint, not a constraint: variables worth deciding first (the encoder lists the inputs)
    priority: list[int] = field(default_factory=list)

    def new_var(self) -> int:
        self.num_vars += 1
        return self.num_vars

    def add_clause(self, lits: list[int]) -> None:
        self.clauses.append(list(lits))

    def add_card(self, y: int, lits: list[int], bound: int) -> None:
        """Add y <-> sum(lits) >= bound."""
        self.cards.append((y, list(lits), int(bound)))

    def check(self, assignment: dict[int, bool] | list[int]) -> bool:
        """True when a full assignment (var -> bool, or a model of signed literals) satisfies it."""
        if not isinstance(assignment, dict):
            assignment = {abs(v): v > 0 for v in assignment}

        def val(lit: int) -> bool:
            return assignment.get(abs(lit), False) == (lit > 0)

        if not all(any(val(lit) for lit in c) for c in self.clauses):
            return False
        return all(val(y) == (sum(val(lit) for lit in ls) >= b) for y, ls, b in self.cards)
