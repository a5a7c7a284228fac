"""Bound engine: the graph IR (from modules or ONNX), IBP, CROWN, alpha/beta-CROWN.

Typical use::

    graph = Graph.from_module(model, (1, 28, 28))
    lo, hi = linf_box(x, eps)
    b = compute_bounds(graph, lo, hi, robustness_spec(y, 10), method="crown")
    proved = (b.lower > 0).all(1)
"""

from verifriend.bounds.confirm import confirm_bound, proof_holds
from verifriend.bounds.crown import (
    compute_bounds,
    crown,
    crown_intervals,
    refinement_plan,
    spec_crown,
)
from verifriend.bounds.graph import (
    AddNode,
    AffineNode,
    AvgPoolNode,
    Conv2dNode,
    FlattenNode,
    Graph,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    ReLUNode,
)
from verifriend.bounds.ibp import ibp, interval_pass, spec_interval
from verifriend.bounds.onnx_import import OnnxGraph, load_onnx
from verifriend.bounds.optimize import OptState, alpha_crown, beta_crown
from verifriend.bounds.relax import backsubstitute, concretize, relu_relaxation
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
    "AddNode",
    "AffineNode",
    "AvgPoolNode",
    "Bounds",
    "Conv2dNode",
    "FlattenNode",
    "Graph",
    "InputNode",
    "LinearNode",
    "MaxPoolNode",
    "Node",
    "OnnxGraph",
    "OptState",
    "ReLUNode",
    "Splits",
    "alpha_crown",
    "backsubstitute",
    "beta_crown",
    "compute_bounds",
    "concretize",
    "confirm_bound",
    "crown",
    "crown_intervals",
    "ibp",
    "interval_pass",
    "linf_box",
    "load_onnx",
    "proof_holds",
    "refinement_plan",
    "relu_relaxation",
    "robustness_spec",
    "spec_crown",
    "spec_interval",
    "stable_mask",
    "stable_ratio",
    "unstable_counts",
]
