"""Per-node bound rules and the two sweeps that apply them.

Every node kind has one function pair:

* an **interval rule** ``(node, *input_intervals) -> (lower, upper)``: sound
  elementwise bounds of the node's output from boxes around its inputs;
* a **backward rule** ``(node, A, input_intervals, alpha) -> (A_inputs, bias)``:
  given coefficients ``A`` of shape ``(Ba, S, *node.shape)`` (``Ba`` is the batch
  or 1 when shared, ``S`` the number of linear functions), returns coefficients
  on each input and a bias ``(Ba, S)`` such that ``A . out >= sum_i A_i . in_i +
  bias`` on the input box. Only lower bounds are needed: an upper bound of
  ``c . y`` is minus the lower bound of ``-c . y``.

Adding a node kind means writing one such pair and registering it below.
IBP, CROWN and later alpha/beta passes are separate sweeps over the same rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.activations import (
    SigmoidNode,
    TanhNode,
    backward_s_shape,
    interval_s_shape,
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
from verifriend.deadline import Deadline, gradient_check

Interval = tuple[Tensor, Tensor]
BackwardResult = tuple[tuple[Tensor, ...], Tensor | None]

# nodes whose backward rule needs the bounds of their input (all others are affine)
NEEDS_INPUT_BOUNDS = (ReLUNode, MaxPoolNode, SigmoidNode, TanhNode)


def is_affine(node: Node) -> bool:
    """True for nodes whose output is an exact affine function of their inputs."""
    return not isinstance(node, (InputNode, *NEEDS_INPUT_BOUNDS))


def _center_radius(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    return (lower + upper) / 2, (upper - lower) / 2


def _bias_term(A: Tensor, bias: Tensor) -> Tensor:
    """``sum A * bias`` where ``bias`` holds one value per channel (dim 2 of ``A``)."""
    Ba, S, C = A.shape[:3]
    return A.reshape(Ba, S, C, -1).sum(-1) @ bias


# ---------------------------------------------------------------- ReLU relaxation


def relu_relaxation(
    lower: Tensor, upper: Tensor, alpha: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Linear bounds ``lo * z <= relu(z) <= up * z + icpt`` for ``z`` in ``[lower, upper]``.

    Returns ``(lo, up, icpt)``, broadcasting ``lower``/``upper`` with ``alpha``. Stable
    neurons are exact. An unstable neuron gets the upper line through ``(l, 0)`` and
    ``(u, u)`` and lower slope ``alpha`` (clamped to [0, 1]) when given, otherwise
    CROWN's adaptive choice: 1 if ``u > -l`` else 0.
    """
    unstable = (lower < 0) & (upper > 0)
    active = (lower >= 0).to(lower.dtype)
    denom = torch.where(unstable, upper - lower, torch.ones_like(lower))
    up = torch.where(unstable, upper / denom, active)
    icpt = torch.where(unstable, -lower * up, torch.zeros_like(lower))
    if alpha is None:
        free = (upper > -lower).to(lower.dtype)
    else:
        free = alpha.clamp(0.0, 1.0)
    lo = torch.where(unstable, free, active)
    return lo, up, icpt


# ---------------------------------------------------------------- Linear


def interval_linear(node: LinearNode, x: Interval) -> Interval:
    c, r = _center_radius(*x)
    mid, rad = F.linear(c, node.weight, node.bias), F.linear(r, node.weight.abs())
    return mid - rad, mid + rad


def backward_linear(node: LinearNode, A: Tensor, ins, alpha) -> BackwardResult:
    return (A @ node.weight,), A @ node.bias


# ---------------------------------------------------------------- Conv2d


def interval_conv(node: Conv2dNode, x: Interval) -> Interval:
    c, r = _center_radius(*x)
    mid = F.conv2d(c, node.weight, node.bias, node.stride, node.padding, node.dilation)
    rad = F.conv2d(r, node.weight.abs(), None, node.stride, node.padding, node.dilation)
    return mid - rad, mid + rad


def conv_adjoint_fold(A: Tensor, weight: Tensor, out_hw, stride, padding, dilation) -> Tensor:
    """Adjoint of a conv as a GEMM with the kernel then col2im: ``A`` (N, C_out, h, w)
    -> (N, C_in, *out_hw). On CPU much faster than a transposed convolution when
    the input has few channels (the first layer)."""
    N, C = A.shape[:2]
    cols = weight.reshape(C, -1).t() @ A.reshape(N, C, -1)
    k = weight.shape[2:]
    return F.fold(cols, tuple(out_hw), k, dilation=dilation, padding=padding, stride=stride)


def _conv_transpose(A: Tensor, weight: Tensor, node, dilation, groups: int = 1) -> Tensor:
    """Adjoint of a strided conv: maps ``A`` on the output back onto the input shape."""
    Ba, S = A.shape[:2]
    in_hw, out_hw = node.in_shape[1:], node.shape[1:]
    flat = A.reshape(Ba * S, *node.shape)
    if groups == 1 and weight.shape[1] <= 3 and A.device.type == "cpu":
        x = conv_adjoint_fold(flat, weight, in_hw, node.stride, node.padding, dilation)
        return x.view(Ba, S, *node.in_shape)
    # the sizes a transposed conv produces by default can fall short of the
    # input when the forward conv dropped trailing rows; output_padding restores them
    out_pad = tuple(
        i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, s, p, d, k in zip(
            in_hw, out_hw, node.stride, node.padding, dilation, weight.shape[2:]
        )
    )
    x = F.conv_transpose2d(
        flat,
        weight,
        stride=node.stride,
        padding=node.padding,
        output_padding=out_pad,
        groups=groups,
        dilation=dilation,
    )
    return x.view(Ba, S, *node.in_shape)


def backward_conv(node: Conv2dNode, A: Tensor, ins, alpha) -> BackwardResult:
    return (_conv_transpose(A, node.weight, node, node.dilation),), _bias_term(A, node.bias)


# ---------------------------------------------------------------- Affine (per channel)


def interval_affine(node: AffineNode, x: Interval) -> Interval:
    scale, shift = node.per_channel(node.scale), node.per_channel(node.shift)
    a, b = x[0] * scale + shift, x[1] * scale + shift
    return torch.minimum(a, b), torch.maximum(a, b)  # a negative scale swaps the ends


def backward_affine(node: AffineNode, A: Tensor, ins, alpha) -> BackwardResult:
    return (A * node.per_channel(node.scale),), _bias_term(A, node.shift)


# ---------------------------------------------------------------- ReLU


def interval_relu(node: ReLUNode, x: Interval) -> Interval:
    return F.relu(x[0]), F.relu(x[1])


def backward_relu(node: ReLUNode, A: Tensor, ins, alpha) -> BackwardResult:
    lower, upper = ins[0]
    lo, up, icpt = relu_relaxation(lower.unsqueeze(1), upper.unsqueeze(1), alpha)
    # lower bound: positive coefficients take the lower line, negative ones the upper;
    # written as A * lo + neg * (up - lo) to touch the large tensor A fewer times
    neg = A.clamp(max=0)
    bias = (neg.flatten(2) @ icpt.flatten(2).transpose(1, 2)).squeeze(-1)  # icpt: (B, 1, ...)
    return (A * lo + neg * (up - lo),), bias


# ---------------------------------------------------------------- Flatten


def interval_flatten(node: FlattenNode, x: Interval) -> Interval:
    return x[0].flatten(1), x[1].flatten(1)


def backward_flatten(node: FlattenNode, A: Tensor, ins, alpha) -> BackwardResult:
    return (A.reshape(*A.shape[:2], *node.in_shape),), None


# ---------------------------------------------------------------- Add


def interval_add(node: AddNode, a: Interval, b: Interval) -> Interval:
    return a[0] + b[0], a[1] + b[1]


def backward_add(node: AddNode, A: Tensor, ins, alpha) -> BackwardResult:
    return (A, A), None


# ---------------------------------------------------------------- AvgPool


def _avg(node: AvgPoolNode, x: Tensor) -> Tensor:
    return F.avg_pool2d(x, node.kernel, node.stride, node.padding, divisor_override=node.divisor)


def interval_avgpool(node: AvgPoolNode, x: Interval) -> Interval:
    return _avg(node, x[0]), _avg(node, x[1])  # positive weights: monotone


def backward_avgpool(node: AvgPoolNode, A: Tensor, ins, alpha) -> BackwardResult:
    ch = node.shape[0]
    weight = A.new_full((ch, 1, *node.kernel), 1.0 / node.divisor)
    return (_conv_transpose(A, weight, node, (1, 1), groups=ch),), None


# ---------------------------------------------------------------- MaxPool


def interval_maxpool(node: MaxPoolNode, x: Interval) -> Interval:
    pool = (node.kernel, node.stride, node.padding, node.dilation)
    return F.max_pool2d(x[0], *pool), F.max_pool2d(x[1], *pool)


def _windows(node: MaxPoolNode, x: Tensor) -> Tensor:
    """Pooling windows of ``x`` (B, C, H, W) as (B, C, K, L), padding filled with -inf."""
    ph, pw = node.padding
    x = F.pad(x, (pw, pw, ph, ph), value=float("-inf"))
    cols = F.unfold(x, node.kernel, dilation=node.dilation, stride=node.stride)
    return cols.view(x.shape[0], x.shape[1], -1, cols.shape[-1])


def backward_maxpool(node: MaxPoolNode, A: Tensor, ins, alpha) -> BackwardResult:
    """Sound relaxation of ``y = max_i x_i`` over each window.

    Let ``j`` be the input with the largest lower bound. Always ``y >= x_j``. If
    ``l_j >= u_i`` for every other ``i`` the max is ``x_j`` exactly, so ``y <= x_j``;
    otherwise ``y <= max_i u_i`` (a constant). Padding never wins (-inf).
    """
    lower, upper = ins[0]
    lw, uw = _windows(node, lower), _windows(node, upper)
    lmax, j = lw.max(2, keepdim=True)  # (B, C, 1, L)
    others = uw.scatter(2, j, float("-inf")).amax(2)
    exact = (lmax.squeeze(2) >= others).to(A.dtype)  # (B, C, L)
    umax = uw.amax(2)

    Ba, S, C = A.shape[:3]
    a = A.reshape(Ba, S, C, -1)  # (Ba, S, C, L)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    coef = pos + neg * exact.unsqueeze(1)
    # the constant upper bound only enters where the window is not exact
    bias = (neg * ((1 - exact) * umax).unsqueeze(1)).flatten(2).sum(-1)

    B, K, L = lw.shape[0], lw.shape[2], lw.shape[3]
    idx = j.unsqueeze(1).expand(B, S, C, 1, L)
    cols = coef.new_zeros(coef.shape[0], S, C, K, L).scatter(3, idx, coef.unsqueeze(3))
    folded = F.fold(
        cols.view(-1, C * K, L),
        node.in_shape[1:],
        node.kernel,
        dilation=node.dilation,
        padding=node.padding,
        stride=node.stride,
    )
    return (folded.view(-1, S, *node.in_shape),), bias


# ---------------------------------------------------------------- registry

INTERVAL_RULES: dict[type, Callable[..., Interval]] = {
    LinearNode: interval_linear,
    Conv2dNode: interval_conv,
    AffineNode: interval_affine,
    ReLUNode: interval_relu,
    FlattenNode: interval_flatten,
    AddNode: interval_add,
    AvgPoolNode: interval_avgpool,
    MaxPoolNode: interval_maxpool,
    SigmoidNode: interval_s_shape,
    TanhNode: interval_s_shape,
}

BACKWARD_RULES: dict[type, Callable[..., BackwardResult]] = {
    LinearNode: backward_linear,
    Conv2dNode: backward_conv,
    AffineNode: backward_affine,
    ReLUNode: backward_relu,
    FlattenNode: backward_flatten,
    AddNode: backward_add,
    AvgPoolNode: backward_avgpool,
    MaxPoolNode: backward_maxpool,
    SigmoidNode: backward_s_shape,
    TanhNode: backward_s_shape,
}


def interval_rule(node: Node, ins: list[Interval]) -> Interval:
    """Apply the node's interval rule to its input intervals."""
    return INTERVAL_RULES[type(node)](node, *ins)


# ---------------------------------------------------------------- backward sweep


def concretize(A: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``min A . x`` over the box ``[lower, upper]``: (Ba, S, *shape) x (B, *shape) -> (B, S)."""
    c, r = _center_radius(lower.flatten(1).unsqueeze(-1), upper.flatten(1).unsqueeze(-1))
    a = A.flatten(2)
    return (a @ c - a.abs() @ r).squeeze(-1)


def _select_rows(t: Tensor, select: Tensor) -> Tensor:
    """Rows ``select`` (B, S') of ``t`` (Ba, S, ...) per batch element -> (B, S', ...)."""
    if t.shape[0] == 1:
        return t[0][select]
    return t[torch.arange(t.shape[0], device=t.device).view(-1, 1), select]


def backsubstitute(
    graph: Graph,
    start: int,
    A: Tensor,
    intervals: list[Interval | None],
    *,
    lower_slopes: dict[int, Tensor] | None = None,
    input_terms: dict[int, Tensor] | None = None,
    stop: Callable[[int], bool] | None = None,
    select: Tensor | None = None,
    record: dict[int, Tensor] | None = None,
    deadline: Deadline | None = None,
) -> Tensor:
    """Lower bound ``(B, S)`` of the linear functions ``A . v_start`` over the input box.

    ``A`` is ``(Ba, S, *shape of node start)`` with ``Ba`` = B or 1 (shared by the
    batch). Coefficients flow in reverse topological order and are summed where a
    node feeds several others. ``intervals[j]`` must hold bounds of node ``j`` for the
    input node, for inputs of ReLU/MaxPool nodes reached, and for every node where
    ``stop(j)`` is true: there the linear function is concretized at the interval
    instead of being propagated further (IBP's elided final layer uses this).
    ``lower_slopes[j]`` overrides the lower slopes of unstable neurons of ReLU node
    ``j`` (alpha-CROWN). ``input_terms[j]`` (B, S, *shape of j's input) is added to
    the coefficients on node ``j``'s input after ``j``'s rule: beta-CROWN's split
    multipliers enter there (the caller makes sure the added term is sound).
    ``select`` (B, S') picks per batch element which of the S
    shared rows are wanted; shared rows stay batch-free (cheap) until the first
    node whose rule depends on the batch. ``record``, when given, receives the
    coefficients reaching each ReLU node's output and the input node (key 0).
    ``deadline`` is checked at every node, in this pass and (for coefficients that need a
    gradient) in the backward pass through it (raises ``DeadlineExpired``).
    """
    pending: dict[int, Tensor] = {start: A}
    bias: Tensor | None = None
    for j in range(start, -1, -1):
        a = pending.pop(j, None)
        if a is None:
            continue
        if deadline is not None:
            deadline.check()
            if a.requires_grad:
                a.register_hook(gradient_check(deadline))
        node = graph.nodes[j]
        if j == 0 or (stop is not None and stop(j)):
            if record is not None and j == 0:
                record[0] = a
            term = concretize(a, *intervals[j])
        else:
            if select is not None and isinstance(node, NEEDS_INPUT_BOUNDS) and a.shape[0] == 1:
                a = _select_rows(a, select)
                pending = {i: _select_rows(v, select) for i, v in pending.items()}
                bias = None if bias is None else _select_rows(bias, select)
                select = None
            if record is not None and isinstance(node, ReLUNode):
                record[j] = a
            ins = [intervals[i] for i in node.inputs]
            alpha = lower_slopes.get(j) if lower_slopes else None
            coefs, term = BACKWARD_RULES[type(node)](node, a, ins, alpha)
            extra = input_terms.get(j) if input_terms else None
            if extra is not None:
                coefs = (coefs[0] + extra, *coefs[1:])
            for i, ai in zip(node.inputs, coefs):
                pending[i] = pending[i] + ai if i in pending else ai
        if term is not None:
            bias = term if bias is None else bias + term
    if select is not None:
        bias = _select_rows(bias, select)
    return bias
