"""One deadline for a whole verification run, threaded through every stage.

A :class:`Deadline` is a point on the monotonic clock. Every stage that loops (CROWN's
layer-by-layer intermediate bounds, the alpha/beta optimization steps, PGD, branch and
bound, input splitting) calls :meth:`Deadline.check` between iterations, which raises
:class:`DeadlineExpired` once the point has passed — or, with a :class:`StepClock`, once
less time is left than the loop's slowest step took, since a step that ends after the
deadline cannot give a verdict that counts (on a loaded machine one backward pass of the
optimizer can take a second). A stage that cannot be interrupted (a HiGHS solve) is handed
only :meth:`Deadline.left`. The verifier turns
:class:`DeadlineExpired` into a ``timeout`` verdict, and reports any verdict reached after
the deadline as ``timeout`` too (the late verdict is kept in the details, never counted).

:func:`process_elapsed` says how long the current process has been running, so that a
command-line run (``verifriend vnncomp``) can count its interpreter start-up and imports
against its timeout, as a VNN-COMP harness measures it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass


class DeadlineExpired(Exception):
    """Raised by :meth:`Deadline.check` once the deadline has passed."""


@dataclass(frozen=True)
class Deadline:
    """The monotonic time ``at`` (``time.monotonic()`` seconds) after which work stops."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now (``inf``: none)."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    def left(self) -> float:
        """Seconds until the deadline, 0 once it has passed."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() > self.at

    def check(self, need: float = 0.0) -> None:
        """Raise :class:`DeadlineExpired` if the deadline has passed, or if less than
        ``need`` seconds are left (a step expected to take that long would end after it,
        and a verdict after the deadline is not counted)."""
        if time.monotonic() + need > self.at:
            raise DeadlineExpired

    def cap(self, seconds: float | None) -> float:
        """``seconds`` (None: unlimited), but no more than the time left."""
        left = self.left()
        return left if seconds is None else min(seconds, left)

    def earlier(self, seconds: float) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now (a stage's own budget)."""
        return Deadline(min(self.at, time.monotonic() + seconds))


def check(deadline: Deadline | None, need: float = 0.0) -> None:
    """:meth:`Deadline.check` for an optional deadline (None never expires)."""
    if deadline is not None:
        deadline.check(need)


def gradient_check(deadline: Deadline):
    """A tensor hook (``tensor.register_hook``) that checks ``deadline`` when the backward
    pass reaches that tensor: :class:`DeadlineExpired` then leaves ``backward()`` as it is,
    so a long backward pass stops at the deadline too."""
    def hook(grad):
        deadline.check()
    return hook


class StepClock:
    """The longest step of a loop so far, for :meth:`Deadline.check`'s ``need``: call
    :meth:`tick` at the top of every step; it raises when the time left is shorter than
    ``1 + reserve`` times the slowest step so far (so the loop stops before a step that
    would end too late; ``reserve`` steps' worth is kept for the caller's next stage)."""

    def __init__(self, deadline: Deadline | None, reserve: float = 0.0):
        self.deadline, self.last, self.slowest = deadline, None, 0.0
        self.factor = 1.0 + reserve

    def tick(self) -> None:
        if self.deadline is None:
            return
        now = time.monotonic()
        if self.last is not None:
            self.slowest = max(self.slowest, now - self.last)
        self.last = now
        self.deadline.check(self.factor * self.slowest)


def process_elapsed() -> float:
    """Seconds since this process started (interpreter start-up and imports included).

    Linux: the process's start time from ``/proc/self/stat`` against the boot-time clock
    (resolution one clock tick, 10 ms). Elsewhere, or when that reading is implausible,
    0.0 (the clock then starts at the call).
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode()
        # the command name (field 2) may hold spaces and parentheses: split after it
        fields = stat[stat.rindex(")") + 2:].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        elapsed = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    return elapsed if 0.0 <= elapsed < 3600.0 else 0.0
