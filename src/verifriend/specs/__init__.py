"""Specifications: the Spec type (input box + unsafe output region) and the VNN-LIB reader.

Typical use::

    for spec in read_vnnlib("prop_1.vnnlib.gz"):
        lo, hi = spec.input_box(input_shape, dtype=torch.float32)
        C, d, _ = spec.to_spec_matrix()
        b = compute_bounds(graph, lo, hi, C[None].float())
        holds = spec.proved(b.lower[0].double() + d)
"""

from verifriend.specs.spec import Spec, stack_specs
from verifriend.specs.vnnlib import parse_vnnlib, read_vnnlib

__all__ = ["Spec", "parse_vnnlib", "read_vnnlib", "stack_specs"]
