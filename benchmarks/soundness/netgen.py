"""Random small networks for the soundness campaign, as ONNX models and float64 numpy views.

``make_net`` draws a fully connected or convolutional network (ReLU, sigmoid, tanh or mixed;
1-3 hidden layers) as ONNX-ready ops with float32 weights; ``Net.dense`` is its float64
view (convolutions expanded to dense matrices) that ``forward`` and the oracle use, built
without verifriend; ``onnx_bytes`` writes it as a real ONNX model (Gemm, MatMul + Add, Conv,
Relu, Sigmoid, Tanh, Flatten / Reshape); ``OrtNet`` runs such a model in onnxruntime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ------------------------------------------------------------------ activations (numpy)


def _sigmoid(z):
    return 0.5 * np.tanh(0.5 * z) + 0.5


def _relu(z):
    return np.maximum(z, 0.0)


ACT = {"relu": _relu, "sigmoid": _sigmoid, "tanh": np.tanh}
ONNX_ACT = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


# ------------------------------------------------------------------ networks


@dataclass
class Net:
    """A network as ONNX-ready ops (float32 weights) plus its dense float64 view.

    ``ops``: dicts with ``op`` in conv / dense / act / flatten. ``onnx_shape`` is the ONNX
    input shape (the flat input is its C-order flattening, VNN-LIB's X order).
    """

    kind: str  # "fc" | "conv"
    family: str  # "relu" | "s-shaped"
    ops: list[dict]
    onnx_shape: tuple[int, ...]

    @property
    def n_in(self) -> int:
        return math.prod(self.onnx_shape)

    def dense(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
        """(layers, acts): float64 (W, b) per affine op (conv expanded), activation after each
        but the last. The oracle's own view, built without verifriend."""
        shape = self.onnx_shape[1:] if self.kind == "conv" else (self.n_in,)
        layers, acts = [], []
        for op in self.ops:
            if op["op"] == "conv":
                W, b, shape = _conv_as_dense(op, shape)
                layers.append((W, b))
            elif op["op"] == "dense":
                layers.append((op["W"].astype(np.float64), op["b"].astype(np.float64)))
                shape = (op["W"].shape[0],)
            elif op["op"] == "act":
                acts.append(op["name"])
        return layers, acts

    def activations(self) -> list[str]:
        return [op["name"] for op in self.ops if op["op"] == "act"]

    def hidden_sizes(self) -> list[int]:
        layers, _ = self.dense()
        return [W.shape[0] for W, _ in layers[:-1]]


def _conv_as_dense(op: dict, shape):
    """The convolution as a dense matrix over C-order flattened (C, H, W) maps."""
    w = op["W"].astype(np.float64)
    o_ch, c_in, kh, kw = w.shape
    _, H, W_ = shape
    s, p = op["stride"], op["pad"]
    ho, wo = (H + 2 * p - kh) // s + 1, (W_ + 2 * p - kw) // s + 1
    M = np.zeros((o_ch, ho, wo, c_in, H, W_))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    y, x = i * s - p + a, j * s - p + b
                    if 0 <= y < H and 0 <= x < W_:
                        M[:, i, j, :, y, x] += w[:, :, a, b]
    bias = np.zeros(o_ch) if op["B"] is None else op["B"].astype(np.float64)
    return (M.reshape(o_ch * ho * wo, c_in * H * W_), np.repeat(bias, ho * wo),
            (o_ch, ho, wo))


def forward(layers, acts, x: np.ndarray) -> np.ndarray:
    """float64 forward pass of flat inputs (N, n) -> (N, n_out)."""
    for k, (W, b) in enumerate(layers):
        x = x @ W.T + b
        if k < len(acts):
            x = ACT[acts[k]](x)
    return x


def _weights(rng, n_out: int, n_in: int, gain: float):
    W = rng.normal(0.0, gain / math.sqrt(n_in), (n_out, n_in)).astype(np.float32)
    b = rng.normal(0.0, 0.4, n_out).astype(np.float32)
    return W, b


def make_net(rng, kind: str, family: str) -> Net:
    """A random small network of the given kind (fc | conv) and family (relu | s-shaped)."""
    gain = float(rng.uniform(0.8, 2.0))

    def act() -> dict:
        if family == "relu":
            return {"op": "act", "name": "relu"}
        return {"op": "act", "name": str(rng.choice(["sigmoid", "tanh", "relu"],
                                                    p=[0.45, 0.4, 0.15]))}

    ops: list[dict] = []
    if kind == "fc":
        n_in = int(rng.integers(2, 7) if family == "relu" else rng.integers(1, 4))
        one_d = rng.random() < 0.15
        style = "matmul" if one_d else str(rng.choice(["gemm_t", "gemm", "matmul", "mix"]))
        width = n_in
        for _ in range(int(rng.integers(1, 4))):
            w = int(rng.integers(3, 17) if family == "relu" else rng.integers(3, 9))
            W, b = _weights(rng, w, width, gain)
            ops += [{"op": "dense", "W": W, "b": b, "style": _style(rng, style)}, act()]
            width = w
        n_out = int(rng.integers(2, 6))
        W, b = _weights(rng, n_out, width, gain)
        ops.append({"op": "dense", "W": W, "b": b, "style": _style(rng, style)})
        if family == "s-shaped" and all(o["name"] == "relu" for o in ops if o["op"] == "act"):
            ops[1]["name"] = "sigmoid"  # at least one S-shaped activation
        shape = (n_in,) if one_d else (1, n_in)
        return Net(kind, family, ops, shape)
    c, h = [(1, 4), (2, 5), (1, 5), (2, 4)][int(rng.integers(0, 4))]
    shape, size, ch = (1, c, h, h), h, c
    n_conv = 2 if rng.random() < 0.3 else 1
    cap = 48 if family == "relu" else 80  # neurons per conv layer
    for k in range(n_conv):
        for _ in range(20):
            o = int(rng.integers(2, 4)) if k == 0 else 2
            kern = int(rng.integers(2, 4))
            stride = int(rng.integers(1, 3)) if k == 0 else 1
            pad = int(rng.integers(0, 2))
            side = (size + 2 * pad - kern) // stride + 1
            if side >= 2 and o * side * side <= cap:
                break
        else:
            o, kern, stride, pad = 2, 2, 2, 0
        w = rng.normal(0.0, gain / math.sqrt(ch * kern * kern), (o, ch, kern, kern))
        bias = rng.normal(0.0, 0.3, o).astype(np.float32) if rng.random() < 0.8 else None
        ops += [{"op": "conv", "W": w.astype(np.float32), "B": bias, "stride": stride,
                 "pad": pad}, act()]
        size, ch = (size + 2 * pad - kern) // stride + 1, o
        if size < 3:
            break
    ops.append({"op": "flatten", "style": str(rng.choice(["flatten", "reshape"]))})
    width = ch * size * size
    if rng.random() < 0.5:
        w = int(rng.integers(4, 9))
        W, b = _weights(rng, w, width, gain)
        ops += [{"op": "dense", "W": W, "b": b, "style": _style(rng, "mix")}, act()]
        width = w
    n_out = int(rng.integers(2, 5))
    W, b = _weights(rng, n_out, width, gain)
    ops.append({"op": "dense", "W": W, "b": b, "style": _style(rng, "mix")})
    if family == "s-shaped" and all(o["name"] == "relu" for o in ops if o["op"] == "act"):
        ops[1]["name"] = "tanh"
    return Net(kind, family, ops, shape)


def _style(rng, style: str) -> str:
    return str(rng.choice(["gemm_t", "gemm", "matmul"])) if style == "mix" else style


def onnx_bytes(net: Net) -> bytes:
    """The network as a serialized ONNX model (opset 13)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "input"
    last = len(net.ops) - 1
    for k, op in enumerate(net.ops):
        out = "output" if k == last else f"t{k}"
        kind = op["op"]
        if kind == "conv":
            inits.append(numpy_helper.from_array(op["W"], f"W{k}"))
            ins = [cur, f"W{k}"]
            if op["B"] is not None:
                inits.append(numpy_helper.from_array(op["B"], f"B{k}"))
                ins.append(f"B{k}")
            kh, kw = op["W"].shape[2:]
            p, s = op["pad"], op["stride"]
            nodes.append(helper.make_node("Conv", ins, [out], name=f"conv{k}",
                                          kernel_shape=[kh, kw], strides=[s, s],
                                          pads=[p, p, p, p]))
        elif kind == "dense":
            W, b = op["W"], op["b"]
            inits.append(numpy_helper.from_array(b, f"b{k}"))
            if op["style"] == "gemm_t":
                inits.append(numpy_helper.from_array(W, f"W{k}"))
                nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [out],
                                              name=f"gemm{k}", transB=1))
            elif op["style"] == "gemm":
                inits.append(numpy_helper.from_array(np.ascontiguousarray(W.T), f"W{k}"))
                nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [out],
                                              name=f"gemm{k}"))
            else:
                inits.append(numpy_helper.from_array(np.ascontiguousarray(W.T), f"W{k}"))
                nodes.append(helper.make_node("MatMul", [cur, f"W{k}"], [f"m{k}"],
                                              name=f"matmul{k}"))
                nodes.append(helper.make_node("Add", [f"m{k}", f"b{k}"], [out],
                                              name=f"add{k}"))
        elif kind == "act":
            nodes.append(helper.make_node(ONNX_ACT[op["name"]], [cur], [out], name=f"act{k}"))
        else:  # flatten
            if op["style"] == "flatten":
                nodes.append(helper.make_node("Flatten", [cur], [out], name=f"flat{k}", axis=1))
            else:
                inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), f"s{k}"))
                nodes.append(helper.make_node("Reshape", [cur, f"s{k}"], [out],
                                              name=f"reshape{k}"))
        cur = out
    graph = helper.make_graph(
        nodes, "soundness", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                           list(net.onnx_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


class OrtNet:
    """onnxruntime on one model: flat float64 points -> float64 outputs of the float32 run."""

    def __init__(self, model: bytes, onnx_shape):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.shape = tuple(onnx_shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x32 = np.asarray(x, dtype=np.float32).reshape(self.shape)
        (y,) = self.sess.run(None, {"input": x32})
        return np.asarray(y, dtype=np.float64).reshape(-1)
