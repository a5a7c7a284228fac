"""One registry from a bound method's name to its function: ``ibp``, ``crown``, ``alpha``.

Each method lives in the module of its name (:mod:`~verifriend.bounds.ibp`,
:mod:`~verifriend.bounds.crown`, :mod:`~verifriend.bounds.alpha_crown`; beta-CROWN, which
needs splits, in :mod:`~verifriend.bounds.beta_crown`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS, crown
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import ibp
from verifriend.bounds.result import Bounds
from verifriend.errors import UserError


def _ibp(graph, x_lower, x_upper, C, max_elements):
    return ibp(graph, x_lower, x_upper, C)


def _crown(graph, x_lower, x_upper, C, max_elements):
    return crown(graph, x_lower, x_upper, C, max_elements=max_elements)


def _alpha(graph, x_lower, x_upper, C, max_elements):
    return alpha_crown(graph, x_lower, x_upper, C, max_elements=max_elements)[0]


METHODS: dict[str, Callable[..., Bounds]] = {"ibp": _ibp, "crown": _crown, "alpha": _alpha}


def compute_bounds(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None = None,
    method: str = "crown",
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Bounds:
    """Bounds of ``C @ f(x)`` over the box with ``method`` "ibp", "crown" or "alpha".

    ``graph`` may also be an ``nn.Module`` (converted with
    :func:`verifriend.bounds.frontends.torch.from_module`). "alpha" is alpha-CROWN with its
    defaults (20 iterations, intermediate alphas); use
    :func:`verifriend.bounds.alpha_crown.alpha_crown` for its options and state.
    """
    if not isinstance(graph, Graph) and isinstance(graph, torch.nn.Module):
        graph = from_module(graph, tuple(x_lower.shape[1:]))
    rule = METHODS.get(method)
    if rule is None:
        raise UserError(f"unknown bound method '{method}'; choose 'ibp', 'crown' or 'alpha'.")
    return rule(graph, x_lower, x_upper, C, max_elements)
