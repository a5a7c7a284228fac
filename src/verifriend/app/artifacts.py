"""The files the jobs write whose contents an algorithm package defines: model checkpoints,
ONNX exports, BNN files and figures. The packages build the content (a checkpoint dict, ONNX
bytes, PNG bytes); here it is written, atomically (:mod:`verifriend.app.outputs`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from verifriend.app.outputs import (
    PathLike,
    check_out_file,
    save_torch_atomic,
    write_bytes_atomic,
)
from verifriend.app.settings import ExportSettings
from verifriend.bnn.export import bnn_checkpoint
from verifriend.bnn.network import BNN
from verifriend.models.io import checkpoint, load_model, onnx_bytes


def save_model(model: nn.Module, path: PathLike, *, arch: str, input_shape, num_classes: int,
               dataset: str, mean, std, config: dict | None = None,
               metrics: dict | None = None) -> Path:
    """Write ``model`` and its metadata (:func:`verifriend.models.io.checkpoint`) atomically."""
    return save_torch_atomic(path, checkpoint(
        model, arch=arch, input_shape=input_shape, num_classes=num_classes, dataset=dataset,
        mean=mean, std=std, config=config, metrics=metrics))


def export_onnx(model: nn.Module, path: PathLike, input_shape: tuple[int, int, int]) -> Path:
    """Export ``model`` (normalization included) to ONNX at ``path``, atomically (see
    :func:`verifriend.models.io.onnx_bytes`)."""
    return write_bytes_atomic(path, onnx_bytes(model, input_shape))


def save_bnn(model: BNN, path: PathLike, meta: dict | None = None) -> Path:
    """Write a BNN file (:func:`verifriend.bnn.export.bnn_checkpoint`) atomically: a reader
    never sees half a file."""
    return save_torch_atomic(path, bnn_checkpoint(model, meta))


def write_figure(path: PathLike, png: bytes) -> Path:
    """A rendered figure (``metrics`` plots return their PNG bytes) at ``path``, atomically."""
    return write_bytes_atomic(path, png)


def export_checkpoint(settings: ExportSettings) -> Path:
    """The `export` job: a checkpoint written by `verifriend train` as an ONNX file (its place
    checked before the model is loaded)."""
    check_out_file(settings.onnx, "the ONNX file")
    net, meta = load_model(settings.model)
    return export_onnx(net, settings.onnx, tuple(meta["input_shape"]))
