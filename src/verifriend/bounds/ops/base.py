"""What every operator of the graph IR provides, and the traits the analyses read.

A node kind is one dataclass (its parameters are fields) with four rules:

* ``forward(*xs)``: the operation on a batch;
* ``interval(*ins)``: sound elementwise bounds ``(lower, upper)`` of its output from boxes
  around its inputs (IBP);
* ``backward(A, ins, alpha)``: given coefficients ``A`` of shape ``(Ba, S, *shape)`` on its
  output (``Ba`` the batch, or 1 when shared by the batch; ``S`` linear functions), the
  coefficients on each input and a bias ``(Ba, S)`` (or None) such that
  ``A . out >= sum_i A_i . in_i + bias`` on the input boxes ``ins`` (CROWN's linear
  relaxation; only lower bounds are needed, an upper bound of ``c . y`` is minus the lower
  bound of ``-c . y``). ``alpha`` are optimizable lower slopes (alpha-CROWN), or None;
* ``milp(step)``: its exact rows in the MILP (see :class:`MilpStep`).

Class-level traits tell the analyses what they need to know about a kind without naming
it (an analysis never switches on node types): see :class:`Node`.

A one-input elementwise kind can also say where the frontends find it: ``onnx_op`` (an ONNX
op type) and ``torch_module`` (an ``nn.Module`` class), with ``params_from_onnx`` /
``params_from_torch`` reading its parameters. Defining such a class registers it in
:data:`ONNX_OPS` / :data:`TORCH_MODULES`, which the frontends consult for any op they do not
convert themselves: adding an activation is one module and one import line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from verifriend.errors import UnsupportedLayerError

Shape = tuple[int, ...]
Pair = tuple[int, int]
Interval = tuple[Tensor, Tensor]
BackwardResult = tuple[tuple[Tensor, ...], Tensor | None]


ONNX_OPS: dict[str, type[Node]] = {}
TORCH_MODULES: dict[type, type[Node]] = {}


@dataclass(eq=False, kw_only=True)
class Node:
    """One operation; ``shape`` is its output shape without the batch dim.

    Traits (class attributes), read by the analyses:

    * ``relaxed``: the backward rule needs the bounds of the input (a nonlinear node);
    * ``relax_all``: its relaxation depends on the bounds of every input neuron (otherwise,
      for a piecewise-linear activation, only on those of the unstable ones);
    * ``elementwise``: output i is a monotone function of input i alone (or a fixed
      permutation of inputs), so an input box maps onto an output box;
    * ``mixing``: a fixed linear map (or a max over windows) of one input: applied to a box it
      has exact per-coordinate intervals;
    * ``branchable``: a ReLU: branch and bound splits its neurons and alpha-CROWN optimizes
      their lower slopes;
    * ``has_milp``: :meth:`milp` encodes it exactly;
    * ``linear``: linear without a constant (``f(x') - f(x) = f(x' - x)``), so it is its own
      difference node (:meth:`difference`);
    * ``patchable``: :meth:`backward_patches` back-substitutes window-shaped coefficients
      (patch mode, :mod:`verifriend.bounds.patches`); ``grows_window``: its
      :meth:`patch_window` widens the window (a convolution); ``zero_off_map``: its patch
      rule reads 0 outside the feature map by itself, so coefficients there need no mask.
    """

    inputs: tuple[int, ...]
    shape: Shape
    name: str = ""

    relaxed: ClassVar[bool] = False
    relax_all: ClassVar[bool] = False
    elementwise: ClassVar[bool] = False
    mixing: ClassVar[bool] = False
    branchable: ClassVar[bool] = False
    has_milp: ClassVar[bool] = True
    linear: ClassVar[bool] = False
    patchable: ClassVar[bool] = False
    grows_window: ClassVar[bool] = False
    zero_off_map: ClassVar[bool] = False
    onnx_op: ClassVar[str | None] = None
    torch_module: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("onnx_op"):
            ONNX_OPS[cls.onnx_op] = cls
        if cls.__dict__.get("torch_module") is not None:
            TORCH_MODULES[cls.torch_module] = cls

    @classmethod
    def params_from_onnx(cls, attrs: dict, consts: list) -> dict:
        """The node's parameters from an ONNX node's attributes and its constant inputs
        after the first; raise ``ValueError`` (one sentence) for settings it cannot take."""
        return {}

    @classmethod
    def params_from_torch(cls, module) -> dict:
        """The node's parameters from a torch module of class ``torch_module``; raise
        ``ValueError`` (one sentence) for settings it cannot take."""
        return {}

    @property
    def kind(self) -> str:
        """The operator's name for messages (``Linear``, ``ReLU``, ...)."""
        return type(self).__name__.removesuffix("Node")

    def forward(self, *xs: Tensor) -> Tensor:
        raise NotImplementedError

    def interval(self, *ins: Interval) -> Interval:
        raise NotImplementedError

    def backward(self, A: Tensor, ins: list[Interval], alpha: Tensor | None) -> BackwardResult:
        raise NotImplementedError

    def difference(self, pre: Interval | None) -> Node:
        """This node in the difference network (:mod:`verifriend.globalrob.difference`): a
        node whose output bounds ``f(x') - f(x)`` from the difference of its inputs.
        ``pre`` bounds the node's input over the input domain (None: unknown)."""
        if self.linear:
            return self
        raise UnsupportedLayerError(
            f"layer '{self.name}' ({self.kind}) has no difference rule for global robustness; "
            "it supports Linear, Conv, Affine, AvgPool, Add, shape layers and ReLU.")

    def relu_form(self, first: int) -> list[Node] | None:
        """The same function as nodes without this kind (the last one is its output), to be
        placed from graph index ``first`` on; None when the node stays as it is. The max
        pool writes itself with ReLUs for difference networks
        (:mod:`verifriend.globalrob.maxpool`)."""
        return None

    def initial_slopes(self, lower: Tensor, upper: Tensor) -> Tensor:
        """The slopes alpha-CROWN starts a ``branchable`` node's neurons from, given the
        bounds of its input: CROWN's adaptive choice for a ReLU (1 where ``upper > -lower``)."""
        return (upper > -lower).to(lower.dtype)

    def milp_columns(self, src: list[np.ndarray]) -> np.ndarray | None:
        """Columns to reuse for this node's output instead of new ones (a pure reshape or
        permutation of its input's), or None."""
        return None

    def milp(self, step: MilpStep) -> None:
        raise UnsupportedLayerError(
            f"layer '{self.name}' ({self.kind}) has no MILP encoding.")

    def patch_window(self, win: Window) -> Window:
        """The window on this node's input that a window on its output reads."""
        return win

    def conv_kernel(self) -> tuple[Tensor, Tensor, Pair, Pair] | None:
        """``(weight, bias, stride, padding)`` of a plain 2-d convolution (groups and dilation
        1), else None: what rewrites a convolution's kernel (the VNN sparsifier) reads."""
        return None

    def backward_patches(self, P: Tensor, step: PatchStep) -> tuple[Tensor, Tensor | None]:
        """Patch coefficients ``P`` (..., C, Kh, Kw) on the output -> on the input, and the
        bias they collect (like :meth:`backward`, for ``patchable`` kinds)."""
        raise NotImplementedError


@dataclass(eq=False, kw_only=True)
class InputNode(Node):
    """The network's input (node 0 of every graph)."""

    zero_off_map: ClassVar[bool] = True  # the box's windows are zero-padded
    linear: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return x


@dataclass
class MilpStep:
    """What a node's :meth:`Node.milp` writes its rows with, for one domain.

    ``rows`` collects columns and rows (:class:`verifriend.bounds.ops.milp_rows.MilpRows`);
    ``out`` are the columns of the node's output, ``src`` those of each input (flat,
    numpy); ``in_bounds`` the flat float64 bounds ``(l, u)`` of each input, already valid
    for this domain; ``signs`` the split of each neuron of a branchable node (+1 active,
    -1 inactive, 0 free) or None; ``rel`` the relative widening that covers rounding in the
    bound pass; ``relax`` True for the LP relaxation (binaries continuous). A rule that
    finds the domain empty sets ``empty``; ``bound_fix`` takes ``(cols, lo, hi)`` column
    tightenings applied at the end.
    """

    rows: object
    out: np.ndarray
    src: list[np.ndarray]
    in_bounds: list[tuple[np.ndarray, np.ndarray]]
    signs: np.ndarray | None
    rel: float
    relax: bool
    bound_fix: list
    empty: bool = False


@dataclass(frozen=True)
class Window:
    """Where the patch of a start-node location lies on one node's feature map."""

    kernel: Pair
    stride: Pair
    padding: Pair


@dataclass
class PatchStep:
    """What a node's :meth:`Node.backward_patches` reads: its input's ``interval`` and
    ``shape``, the ``window`` on its input, the locations ``loc`` of the rows, optimized
    lower slopes ``alpha`` (or None), and whether the input kind reads 0 off the map."""

    interval: Interval
    shape: Shape
    window: Window
    loc: Tensor
    alpha: Tensor | None
    input_zero_off_map: bool


def window_rows(x: Tensor, win: Window, loc: Tensor) -> Tensor:
    """Windows of ``x`` (Bx, C, H, W) at locations ``loc`` (L,) -> (Bx, L, C, Kh, Kw)."""
    C = x.shape[1]
    cols = F.unfold(x, win.kernel, padding=win.padding, stride=win.stride)  # (Bx, C*K, L)
    rows = cols.transpose(1, 2)[:, loc]
    return rows.reshape(rows.shape[0], rows.shape[1], C, *win.kernel)


def patch_mask(shape, win: Window, loc: Tensor, like: Tensor) -> Tensor:
    """1 where a window position lies inside a feature map of ``shape``, else 0."""
    ones = like.new_ones(1, 1, *shape[1:])
    return window_rows(ones, win, loc)


def center_radius(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    return (lower + upper) / 2, (upper - lower) / 2


def bias_term(A: Tensor, bias: Tensor) -> Tensor:
    """``sum A * bias`` where ``bias`` holds one value per channel (dim 2 of ``A``)."""
    Ba, S, C = A.shape[:3]
    return A.reshape(Ba, S, C, -1).sum(-1) @ bias
