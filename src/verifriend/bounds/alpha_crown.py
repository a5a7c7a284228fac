"""alpha-CROWN: CROWN with the lower slopes of unstable ReLUs optimized by gradient ascent.

Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete Neural
Network Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR 2021.
The optimizer itself is shared with beta-CROWN (:mod:`verifriend.bounds.optimizer`).
"""

from __future__ import annotations

from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.optimizer import OptState, optimize_bounds
from verifriend.bounds.result import Bounds


def alpha_crown(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None = None,
    *,
    iterations: int = 20,
    lr: float = 0.1,
    warm_start: OptState | None = None,
    intermediate: bool = True,
    **options,
) -> tuple[Bounds, OptState]:
    """alpha-CROWN bounds of ``C @ f(x)`` over the boxes ``[x_lower, x_upper]`` (D, ...).

    ``C`` is (D, m, n_out), (m, n_out) shared, or None (identity). The lower slope of
    every ReLU neuron is optimized per domain and spec row for ``iterations`` Adam
    steps (learning rate ``lr``), starting from CROWN's slopes, with early stopping
    after ``patience`` (10, auto_LiRPA's default) steps whose total improves by no
    more than ``tol`` relative (default 0: any improvement continues, as auto_LiRPA); each row reports its best iterate (the state keeps the best domain
    iterate with intermediate alphas). ``intermediate=True`` (the
    default) also optimizes the bounds of unstable intermediate neurons, each with
    its own alphas (see the module docstring); False is faster and looser. Lower
    bounds are never looser than CROWN's or IBP's; upper bounds
    are CROWN's unless ``bound_upper=True`` optimizes them too. Returns the bounds
    and the optimized state.
    """
    return optimize_bounds(
        graph,
        x_lower,
        x_upper,
        C,
        None,
        warm_start=warm_start,
        iterations=iterations,
        lr=lr,
        intermediate=intermediate,
        method="alpha-crown",
        **options,
    )
