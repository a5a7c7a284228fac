"""A graph of affine maps and ReLUs as plain ``(W, b)`` layers, and back to an ONNX model.

Everything between two ReLUs (a linear layer, an input normalization, a flatten) is one
affine map, read off the operators' own forward passes on a basis, so an input
normalization is folded into the first layer and the layers are in pixel space.
"""

from __future__ import annotations

import numpy as np
import torch

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops.milp_rows import dense_map
from verifriend.errors import UserError

Layer = tuple[np.ndarray, np.ndarray]


class _Chain:
    """Nodes applied one after another, with the one-operator ``forward`` interface."""

    def __init__(self, graph: Graph, nodes: list[int]):
        self.ops = [graph.nodes[j] for j in nodes]

    def forward(self, x):
        for op in self.ops:
            x = op.forward(x)
        return x


def _segment_map(graph: Graph, nodes: list[int], in_shape) -> Layer:
    """``(W, b)`` of the chain of affine nodes ``nodes`` on flat inputs of ``in_shape``."""
    W, b = dense_map(_Chain(graph, nodes), in_shape)
    return np.ascontiguousarray(W), b


def layers_of(graph: Graph, what: str) -> list[Layer]:
    """The network as affine layers with a ReLU between consecutive ones (float64).

    Refuses (one sentence naming ``what``) anything else: a branch (residual connection),
    a nonlinearity other than ReLU, a convolution (not supported yet), no hidden layer.
    """
    g = graph.to(device="cpu", dtype=torch.float64)
    layers, segment, shape = [], [], g.input_shape
    for j, node in enumerate(g.nodes[1:], 1):
        if node.inputs != (j - 1,):
            raise UserError(f"{what} is not a plain chain of layers (node '{node.name}' reads "
                            "other nodes: a residual connection?); it cannot be rewritten.")
        if node.grows_window:
            raise UserError(f"{what} has a convolution ('{node.name}'); sparsify rewrites "
                            "fully connected ReLU networks only, so far.")
        if node.relaxed and not node.branchable:
            raise UserError(f"{what} has a {node.kind} layer ('{node.name}'); sparsify "
                            "rewrites networks of affine layers and ReLUs only.")
        if node.branchable:  # a ReLU closes the affine segment before it
            if not segment:
                raise UserError(f"{what} has two ReLUs in a row ('{node.name}').")
            layers.append(_segment_map(g, segment, shape))
            segment, shape = [], node.shape
        else:
            segment.append(j)
    if not segment or not layers:
        raise UserError(f"{what} must end with an affine layer after at least one ReLU.")
    layers.append(_segment_map(g, segment, shape))
    return layers


def onnx_bytes(layers: list[Layer], input_name: str, input_shape, output_name: str) -> bytes:
    """An ONNX model (Gemm with transB, Relu between) computing ``layers`` in float32, with
    the given input (flattened first when it has more than two dims) and output names."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], input_name
    if len(input_shape) != 2:
        nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
        x = "flat"
    for k, (W, b) in enumerate(layers):
        inits += [numpy_helper.from_array(W.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k}")]
        last = k == len(layers) - 1
        z = output_name if last else f"z{k}"
        nodes.append(helper.make_node("Gemm", [x, f"W{k}", f"b{k}"], [z], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [z], [f"a{k}"]))
            x = f"a{k}"
    graph = helper.make_graph(
        nodes, "verifriend_sparsified",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       [1, layers[-1][0].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()
