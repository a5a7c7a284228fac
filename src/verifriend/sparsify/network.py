"""A graph of affine maps, convolutions and ReLUs as plain float64 layers
(:mod:`verifriend.sparsify.layers`), and back to an ONNX model.

Everything between two ReLUs (a linear layer, an input normalization, a flatten) is one
affine map, read off the operators' own forward passes on a basis, so an input
normalization is folded into a first fully connected layer and the layers are in pixel
space. A convolution stays a convolution (its weight sharing is what its rewrite keeps); an
input normalization before a first convolution is kept apart as ``pre`` (flat scale and shift,
applied to the pixels before the layers), since with zero padding it does not fold exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops.milp_rows import dense_map
from verifriend.errors import UserError
from verifriend.sparsify.layers import Conv, Dense, Layer

Pre = tuple[np.ndarray, np.ndarray]  # flat (scale, shift) on the pixels, or None


class _Chain:
    """Nodes applied one after another, with the one-operator ``forward`` interface."""

    def __init__(self, graph: Graph, nodes: list[int]):
        self.ops = [graph.nodes[j] for j in nodes]

    def forward(self, x):
        for op in self.ops:
            x = op.forward(x)
        return x


def _segment_map(graph: Graph, nodes: list[int], in_shape) -> Dense:
    """The chain of affine nodes ``nodes`` on flat inputs of ``in_shape``."""
    W, b = dense_map(_Chain(graph, nodes), in_shape)
    return Dense(np.ascontiguousarray(W), b)


def _segment(g: Graph, nodes: list[int], shape, first: bool, what: str
             ) -> tuple[Pre | None, Layer]:
    """One segment between ReLUs: an affine map, or a convolution (after, in the first
    segment only, an elementwise input map kept apart as ``pre``)."""
    convs = [j for j in nodes if g.nodes[j].grows_window]
    if not convs:
        return None, _segment_map(g, nodes, shape)
    j = convs[-1]
    kernel = g.nodes[j].conv_kernel()
    before = nodes[:nodes.index(j)]
    if kernel is None or j != nodes[-1] or len(convs) > 1 or (before and not first) or \
            any(not g.nodes[i].elementwise for i in before):
        raise UserError(f"{what}: '{g.nodes[j].name}' is not a plain convolution followed by "
                        "its ReLU; sparsify rewrites Conv/Linear + ReLU chains only.")
    pre = None
    if before:
        M, shift = dense_map(_Chain(g, before), shape)
        scale = np.diag(M).copy()
        if np.count_nonzero(M - np.diag(scale)):
            raise UserError(f"{what}: the map before '{g.nodes[j].name}' is not per pixel.")
        pre = (scale, shift)
    K, b, stride, padding = kernel
    in_shape = tuple(g.nodes[before[-1]].shape if before else shape)
    return pre, Conv(K.numpy().copy(), b.numpy().copy(), tuple(stride), tuple(padding), in_shape)


def network_of(graph: Graph, what: str) -> tuple[Pre | None, list[Layer]]:
    """The network as ``(pre, layers)``: layers with a ReLU between consecutive ones
    (float64), ``pre`` an input map kept apart (or None; see the module's docstring).

    Refuses (one sentence naming ``what``) anything else: a branch (residual connection),
    a nonlinearity other than ReLU or pooling, a convolution mixed with other layers, no
    hidden layer.
    """
    g = graph.to(device="cpu", dtype=torch.float64)
    layers, segment, shape, pre = [], [], g.input_shape, None
    for j, node in enumerate(g.nodes[1:], 1):
        if node.inputs != (j - 1,):
            raise UserError(f"{what} is not a plain chain of layers (node '{node.name}' reads "
                            "other nodes: a residual connection?); it cannot be rewritten.")
        if node.relaxed and not node.branchable:
            raise UserError(f"{what} has a {node.kind} layer ('{node.name}'); sparsify "
                            "rewrites networks of affine layers and ReLUs only.")
        if node.branchable:  # a ReLU closes the affine segment before it
            if not segment:
                raise UserError(f"{what} has two ReLUs in a row ('{node.name}').")
            p, layer = _segment(g, segment, shape, not layers, what)
            pre = pre if p is None else p
            layers.append(layer)
            segment, shape = [], node.shape
        else:
            segment.append(j)
    if not segment or not layers:
        raise UserError(f"{what} must end with an affine layer after at least one ReLU.")
    layers.append(_segment(g, segment, shape, False, what)[1])
    return pre, layers


def onnx_bytes(layers: list[Layer], input_name: str, input_shape, output_name: str,
               pre: Pre | None = None) -> bytes:
    """An ONNX model computing ``pre`` (Mul, Add) and ``layers`` (Conv, or Gemm with transB;
    Relu between) in float32, with the given input and output names and input shape."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x, dims = [], [], input_name, len(input_shape)

    def const(name: str, value: np.ndarray, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    if pre is not None:
        shape = list(input_shape[1:])
        nodes += [helper.make_node("Mul", [x, const("pre_scale", pre[0].reshape(shape))], ["ps"]),
                  helper.make_node("Add", ["ps", const("pre_shift", pre[1].reshape(shape))],
                                   ["pre"])]
        x = "pre"
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1
        z = output_name if last else f"z{k}"
        if isinstance(layer, Conv):
            shape = const(f"shape{k}", [-1, *layer.in_shape], np.int64)
            nodes += [helper.make_node("Reshape", [x, shape], [f"r{k}"]),
                      helper.make_node("Conv", [f"r{k}", const(f"K{k}", layer.K),
                                                const(f"b{k}", layer.b)], [z],
                                       strides=list(layer.stride), pads=[*layer.padding] * 2)]
            dims = 4
        else:
            if dims != 2:
                nodes.append(helper.make_node("Flatten", [x], [f"f{k}"], axis=1))
                x, dims = f"f{k}", 2
            nodes.append(helper.make_node("Gemm", [x, const(f"W{k}", layer.W),
                                                   const(f"b{k}", layer.b)], [z], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [z], [f"a{k}"]))
            x = f"a{k}"
    out_shape = [1, layers[-1].units] if isinstance(layers[-1], Dense) else None
    graph = helper.make_graph(
        nodes, "verifriend_sparsified",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()
