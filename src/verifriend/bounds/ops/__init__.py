"""The operators of the graph IR, one module each (see :mod:`verifriend.bounds.ops.base`
for what an operator provides). This is the one place that lists them."""

from verifriend.bounds.ops.add import AddNode
from verifriend.bounds.ops.affine import AffineNode
from verifriend.bounds.ops.base import InputNode, Interval, MilpStep, Node
from verifriend.bounds.ops.conv import Conv2dNode
from verifriend.bounds.ops.linear import LinearNode
from verifriend.bounds.ops.pool import AvgPoolNode, MaxPoolNode
from verifriend.bounds.ops.relu import ReLUNode, relu_relaxation
from verifriend.bounds.ops.s_shaped import SigmoidNode, TanhNode
from verifriend.bounds.ops.shape import FlattenNode

__all__ = [
    "AddNode",
    "AffineNode",
    "AvgPoolNode",
    "Conv2dNode",
    "FlattenNode",
    "InputNode",
    "Interval",
    "LinearNode",
    "MaxPoolNode",
    "MilpStep",
    "Node",
    "ReLUNode",
    "SigmoidNode",
    "TanhNode",
    "relu_relaxation",
]
