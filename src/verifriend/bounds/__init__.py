"""Bound engine: the graph IR (from modules or ONNX), IBP, CROWN, alpha/beta-CROWN.

Typical use::

    graph = from_module(model, (1, 28, 28))
    lo, hi = linf_box(x, eps)
    b = compute_bounds(graph, lo, hi, robustness_spec(y, 10), method="crown")
    proved = (b.lower > 0).all(1)

Layout: :mod:`~verifriend.bounds.graph` (the IR), :mod:`~verifriend.bounds.ops` (one module
per operator), :mod:`~verifriend.bounds.frontends` (torch, ONNX), one module per algorithm
(:mod:`~verifriend.bounds.ibp`, :mod:`~verifriend.bounds.crown`,
:mod:`~verifriend.bounds.alpha_crown`, :mod:`~verifriend.bounds.beta_crown`), the registry
:mod:`~verifriend.bounds.methods`, and :mod:`~verifriend.bounds.confirm` (float64).
"""

from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.beta_crown import beta_crown
from verifriend.bounds.confirm import confirm_bound, proof_holds
from verifriend.bounds.crown import crown, crown_intervals, refinement_plan, spec_crown
from verifriend.bounds.frontends.onnx import OnnxGraph, load_onnx
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import ibp, interval_pass, spec_interval
from verifriend.bounds.methods import METHODS, compute_bounds
from verifriend.bounds.optimizer import OptState
from verifriend.bounds.relax import backsubstitute, concretize
from verifriend.bounds.result import (
    Bounds,
    linf_box,
    robustness_spec,
    stable_mask,
    stable_ratio,
    unstable_counts,
)
from verifriend.bounds.splits import Splits

__all__ = [
    "METHODS",
    "Bounds",
    "Graph",
    "OnnxGraph",
    "OptState",
    "Splits",
    "alpha_crown",
    "backsubstitute",
    "beta_crown",
    "compute_bounds",
    "concretize",
    "confirm_bound",
    "crown",
    "crown_intervals",
    "from_module",
    "ibp",
    "interval_pass",
    "linf_box",
    "load_onnx",
    "proof_holds",
    "refinement_plan",
    "robustness_spec",
    "spec_crown",
    "spec_interval",
    "stable_mask",
    "stable_ratio",
    "unstable_counts",
]
