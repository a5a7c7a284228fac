"""The `bounds` job: bound every output constraint of a VNN-LIB spec over its input box(es)."""

from __future__ import annotations

import time

import torch

from verifriend.app.settings import BoundsSettings
from verifriend.bounds import Graph, compute_bounds
from verifriend.device import torch_device
from verifriend.errors import UserError
from verifriend.specs.spec import Spec


def _bound_rows(graph: Graph, spec: Spec, A: torch.Tensor, method: str, iterations: int):
    """Lower/upper bounds of ``A @ Y`` (A: (m, n_out)) over the spec's box."""
    dtype = graph.dtype or torch.float32
    lo, hi = spec.input_box(graph.input_shape, dtype=dtype, device=graph.device)
    C = A.to(dtype=dtype, device=graph.device).unsqueeze(0)
    if method == "alpha":
        from verifriend.bounds.alpha_crown import alpha_crown

        b, _ = alpha_crown(graph, lo, hi, C, iterations=iterations, bound_upper=True)
        return b.lower[0], b.upper[0]
    b = compute_bounds(graph, lo, hi, C, method=method)
    return b.lower[0], b.upper[0]


def bound_constraints(graph: Graph, specs: list[Spec], method: str = "crown",
                      iterations: int = 20) -> dict:
    """``{"method", "time_s", "constraints": [{"clause", "lower", "upper"}]}`` for ``a.Y - b``
    (``method``: one of :data:`~verifriend.app.settings.BOUND_METHODS`).

    Constraints are listed in file order. A file whose inputs form several boxes (an OR over
    input constraints) yields one spec per box; a constraint's bounds are then the loosest
    over the boxes, i.e. its bounds over their union.
    """
    n_out = graph.num_outputs
    if specs and specs[0].n_outputs != n_out:
        raise UserError(f"the spec has {specs[0].n_outputs} outputs but the network has {n_out}.")
    start = time.perf_counter()
    rows: list[dict] | None = None
    for spec in specs:
        cons = spec.constraints()
        if not cons:
            continue
        A = torch.stack([a for _, a, _ in cons])
        b = torch.tensor([bb for _, _, bb in cons], dtype=torch.float64)
        lower, upper = _bound_rows(graph, spec, A, method, iterations)
        lower, upper = lower.to("cpu", torch.float64) - b, upper.to("cpu", torch.float64) - b
        these = [{"clause": j, "lower": float(lo), "upper": float(up)}
                 for (j, _, _), lo, up in zip(cons, lower, upper)]
        if rows is None:
            rows = these
        elif [r["clause"] for r in rows] != [r["clause"] for r in these]:
            raise UserError("the spec's input boxes carry different output constraints; "
                            "bound each box's spec separately.")
        else:
            for r, t in zip(rows, these):
                r["lower"], r["upper"] = min(r["lower"], t["lower"]), max(r["upper"], t["upper"])
    return {"method": method, "time_s": time.perf_counter() - start, "constraints": rows or []}


def bound_files(settings: BoundsSettings) -> dict:
    """Load an ONNX network and a VNN-LIB spec and bound every output constraint (on
    ``settings.device``)."""
    from verifriend.bounds.frontends.onnx import load_onnx
    from verifriend.specs.vnnlib import read_vnnlib

    graph = load_onnx(settings.model).to(device=torch_device(settings.device))
    specs = read_vnnlib(settings.spec)
    return bound_constraints(graph, specs, settings.method, settings.iterations)
