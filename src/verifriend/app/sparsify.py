"""The `sparsify` job: read an ONNX network or a checkpoint and the validation images, rewrite
the hidden layers with the VNN LP (:mod:`verifriend.sparsify.vnn_lp`), check and write the new
network in the same format."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from verifriend.app.outputs import check_out_file, write_bytes_atomic
from verifriend.app.settings import SparsifySettings
from verifriend.errors import UserError
from verifriend.sparsify.network import network_of, onnx_bytes
from verifriend.sparsify.vnn_lp import LayerReport, forward, magnitude_prune, sparsify


def _accuracy(layers, x: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float((forward(layers, x)[-1].argmax(1) == y).mean())


def _images(s: SparsifySettings, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    from verifriend.data.datasets import load_dataset

    ds = load_dataset(s.dataset, s.data_dir)
    x = ds.x_test.reshape(len(ds.x_test), -1).double().numpy()
    if x.shape[1] != n_in:
        raise UserError(f"the network takes {n_in} inputs but {ds.display_name} images have "
                        f"{x.shape[1]} pixels.")
    if s.val_indices[1] > len(x):
        raise UserError(f"--val-indices {s.val_indices[0]}:{s.val_indices[1]} runs past the "
                        f"{len(x)} test images of {ds.display_name}.")
    return x, ds.y_test.numpy()


class _Onnx:
    """An ONNX network read and written back with its own input and output names."""

    def __init__(self, path):
        from verifriend.bounds.frontends.onnx import load_onnx

        self.graph = load_onnx(path, dtype=torch.float64)

    def write(self, path, layers, pre) -> None:
        g = self.graph
        write_bytes_atomic(path, onnx_bytes(layers, g.input_name, g.onnx_input_shape,
                                            g.output_name, pre))


class _Checkpoint:
    """A verifriend checkpoint of Conv/Linear + ReLU layers, written back as the same
    architecture: a fully connected one with the input normalization folded into the first
    layer (mean 0, std 1), a convolutional one with its own normalization (``pre``)."""

    def __init__(self, path):
        from verifriend.bounds.frontends.torch import from_module
        from verifriend.models.io import load_model

        self.model, self.meta = load_model(path)
        self.graph = from_module(self.model.double(), self.meta["input_shape"])

    def write(self, path, layers, pre) -> None:
        from torch import nn

        from verifriend.app.artifacts import save_model
        from verifriend.models.zoo import build_model

        m = self.meta
        c = m["input_shape"][0]
        mean, std = (m["mean"], m["std"]) if pre is not None else ([0.0] * c, [1.0] * c)
        new = build_model(m["arch"], m["input_shape"], m["num_classes"], mean, std)
        mods = [mod for mod in new.modules() if isinstance(mod, (nn.Linear, nn.Conv2d))]
        if len(mods) != len(layers) or any(
                mod.weight.shape != layer.weights.shape for mod, layer in zip(mods, layers)):
            raise UserError(f"architecture {m['arch']!r} is not a plain stack of Conv/Linear "
                            "layers and ReLUs; sparsify it as ONNX (`verifriend export`).")
        with torch.no_grad():
            for mod, layer in zip(mods, layers):
                mod.weight.copy_(torch.from_numpy(layer.weights))
                mod.bias.copy_(torch.from_numpy(layer.b))
        save_model(new, path, arch=m["arch"], input_shape=m["input_shape"],
                   num_classes=m["num_classes"], dataset=m["dataset"], mean=mean, std=std,
                   config={**m.get("config", {}), "sparsified": True})


def run_sparsify(s: SparsifySettings, on_layer: Callable[[LayerReport], None] | None = None
                 ) -> dict:
    """Rewrite, check labels on the validation images, write ``s.out`` (and the magnitude
    baseline beside it, ``<stem>.magnitude<suffix>``); returns the figures the command prints."""
    check_out_file(s.out)
    out = Path(s.out)
    base_out = out.with_name(f"{out.stem}.magnitude{out.suffix}")
    if s.baseline:
        check_out_file(base_out, "the baseline's file")
    net = _Checkpoint(s.model) if out.suffix.lower() == ".pt" else _Onnx(s.model)
    pre, layers = network_of(net.graph, f"{s.model}")
    x, y = _images(s, int(np.prod(net.graph.input_shape)))
    if pre is not None:  # the layers read the normalized pixels
        x = x * pre[0] + pre[1]
    a, b = s.val_indices
    start = time.perf_counter()
    new, reports = sparsify(layers, x[a:b], eps=s.eps, workers=s.workers,
                            max_rows=s.max_rows, output=s.output_layer, on_layer=on_layer)
    seconds = time.perf_counter() - start
    kept = forward(new, x[a:b])[-1].argmax(1) == forward(layers, x[a:b])[-1].argmax(1)
    if not kept.all():  # sparsify restores layers until labels hold: this is a bug guard
        raise RuntimeError(f"validation labels changed on samples {np.nonzero(~kept)[0]}")
    net.write(s.out, new, pre)
    result = {
        "model": str(s.model), "out": str(s.out), "eps": s.eps, "seconds": seconds,
        "validation": {"indices": [a, b], "labels_kept": int(kept.sum()), "of": int(kept.size)},
        "layers": [vars(r) for r in reports],
        "test_accuracy": {"original": _accuracy(layers, x, y), "sparsified": _accuracy(new, x, y)},
    }
    if s.baseline:
        mag = magnitude_prune(layers, [r.nonzeros_after for r in reports])
        net.write(base_out, mag, pre)
        result["test_accuracy"]["magnitude"] = _accuracy(mag, x, y)
        result["baseline_out"] = str(base_out)
    return result
