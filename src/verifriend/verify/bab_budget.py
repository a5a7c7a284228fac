"""How branch and bound spends its time: the batch size per step, the share of exact
leaves (small MILPs) and the share of the counterexample search."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch import Tensor


class BatchSizer:
    """How many domains the next step splits. Starts small and doubles while the time per
    domain does not grow by more than a quarter (on CPU a large batch of conv domains can
    cost several times more per domain: 0.07 s at 32 domains, 0.18 s at 128 on verivital's
    avg-pool net), never above ``limit``, halved on out-of-memory, and never so large that
    the step would end far past the deadline."""

    def __init__(self, limit: int):
        self.limit, self.batch, self.growing = limit, min(limit, 8), True
        self.rate: float | None = None  # seconds per domain of the best size so far

    def size(self, left: float) -> int:
        if self.rate is None or self.rate <= 0:
            return self.batch
        return max(1, min(self.batch, int(left / self.rate)))

    def record(self, n: int, seconds: float) -> None:
        rate = seconds / max(n, 1)
        if n < self.batch:  # a step cut short by the deadline or a small pool says little
            self.rate = rate if self.rate is None else self.rate
            return
        if self.growing and (self.rate is None or rate <= 1.25 * self.rate):
            self.rate = rate if self.rate is None else min(self.rate, rate)
            if self.batch >= self.limit:
                self.growing = False
            self.batch = min(self.limit, self.batch * 2)
        elif self.growing:
            self.growing, self.batch = False, max(1, self.batch // 2)
        else:
            self.rate = rate

    def out_of_memory(self, n: int) -> None:
        self.growing, self.batch = False, max(1, n // 2)


LEAF_SHARE = 0.25  # of the time, at most, in exact leaves chosen before full splitting
ATTACK_SHARE = 0.1  # of the time, at most, in PGD from the bounds' minimizers
ATTACK_STEPS = 20
ATTACK_STARTS = 16  # the worst domains' minimizers that PGD starts from


class CandidateAttack:
    """Counterexample search inside branch and bound: every batch's minimizers are checked
    in float64; PGD runs from the worst ones while it has used at most ATTACK_SHARE."""

    def __init__(self, attack):
        self.attack, self.start, self.spent = attack, time.monotonic(), 0.0

    def __call__(self, xs: Tensor):
        t0 = time.monotonic()
        hit = self.attack(xs, 0)
        if hit is None and self.spent <= ATTACK_SHARE * (t0 - self.start):
            hit = self.attack(xs[:ATTACK_STARTS], ATTACK_STEPS)
        self.spent += time.monotonic() - t0
        return hit


@dataclass
class LeafBudget:
    """When a domain that still has unstable ReLUs goes to an exact MILP (a binary each)
    instead of being split: when it has at most ``unstable`` of them and the leaves so
    far took at most ``share`` of the elapsed time. Near a tie an exact leaf saves a whole
    subtree; on small networks a MILP with a few dozen binaries beats splitting outright,
    while on large ones a single leaf can take seconds. So the limit adapts: it grows
    while such leaves take under ``FAST`` seconds and halves when one takes over ``SLOW``.
    """

    unstable: int = 8
    share: float = LEAF_SHARE
    floor: int = 8
    ceiling: int = 64
    start: float = field(default_factory=time.monotonic)
    spent: float = 0.0

    FAST = 0.05
    SLOW = 0.5

    def open(self, now: float) -> bool:
        """Whether exact leaves may be started now (the time share is not used up)."""
        return self.spent <= self.share * (now - self.start)

    def record(self, seconds: float, early: bool = True) -> None:
        """Account one leaf; ``early``: chosen by the limit (not a fully split domain)."""
        self.spent += seconds
        if not early:
            return
        if seconds < self.FAST:
            self.unstable = min(self.ceiling, self.unstable + 2)
        elif seconds > self.SLOW:
            self.unstable = max(self.floor, self.unstable // 2)
