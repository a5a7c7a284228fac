"""The operators of the graph IR, one module each (see :mod:`verifriend.bounds.ops.base`
for what an operator provides). This is the one place that lists them: importing a module
registers its frontend names (``ONNX_OPS``, ``TORCH_MODULES``)."""

from verifriend.bounds.ops.add import AddNode as AddNode
from verifriend.bounds.ops.affine import AffineNode as AffineNode
from verifriend.bounds.ops.base import ONNX_OPS as ONNX_OPS
from verifriend.bounds.ops.base import TORCH_MODULES as TORCH_MODULES
from verifriend.bounds.ops.base import InputNode as InputNode
from verifriend.bounds.ops.base import Interval as Interval
from verifriend.bounds.ops.base import MilpStep as MilpStep
from verifriend.bounds.ops.base import Node as Node
from verifriend.bounds.ops.conv import Conv2dNode as Conv2dNode
from verifriend.bounds.ops.diff_relu import DiffReLUNode as DiffReLUNode
from verifriend.bounds.ops.leaky_relu import LeakyReLUNode as LeakyReLUNode
from verifriend.bounds.ops.linear import LinearNode as LinearNode
from verifriend.bounds.ops.pool import AvgPoolNode as AvgPoolNode
from verifriend.bounds.ops.pool import MaxPoolNode as MaxPoolNode
from verifriend.bounds.ops.relu import ReLUNode as ReLUNode
from verifriend.bounds.ops.relu import relu_relaxation as relu_relaxation
from verifriend.bounds.ops.s_shaped import SigmoidNode as SigmoidNode
from verifriend.bounds.ops.s_shaped import TanhNode as TanhNode
from verifriend.bounds.ops.shape import FlattenNode as FlattenNode
from verifriend.bounds.ops.shape import PadNode as PadNode
from verifriend.bounds.ops.shape import PermuteNode as PermuteNode
