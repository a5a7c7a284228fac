"""Checkpoints (``.pt``) and ONNX export for zoo models: their contents, and reading them.

A checkpoint is a plain dict (format ``verifriend-model``, version 1) holding the
zoo arguments and the state dict, so it loads with ``torch.load(weights_only=True)``
and is rebuilt through :func:`~verifriend.models.zoo.build_model`. :func:`checkpoint`
builds that dict and :func:`onnx_bytes` an ONNX file's bytes; writing them is the jobs'
(:mod:`verifriend.app.artifacts`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from verifriend.errors import UserError
from verifriend.models.zoo import build_model

FORMAT = "verifriend-model"
VERSION = 1
ONNX_OPSET = 17


def _plain(value, where: str):
    """``value`` as str/int/float/bool/None/list/dict only, which weights-only loading accepts."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"checkpoint metadata {where} has a {type(value).__name__}; "
                    "only str, int, float, bool, None, lists and dicts can be stored")


def checkpoint(
    model: nn.Module,
    *,
    arch: str,
    input_shape,
    num_classes: int,
    dataset: str,
    mean,
    std,
    config: dict | None = None,
    metrics: dict | None = None,
) -> dict:
    """The checkpoint of ``model`` and its metadata: what ``torch.save`` writes.

    The state dict must match ``build_model(arch, input_shape, num_classes, mean, std)``;
    this is checked here so that a checkpoint that cannot be loaded is never written.
    """
    meta = _plain({"arch": arch, "input_shape": input_shape, "num_classes": num_classes,
                   "dataset": dataset, "mean": mean, "std": std, "config": config or {},
                   "metrics": metrics or {}}, "metadata")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    reference = build_model(meta["arch"], meta["input_shape"], meta["num_classes"],
                            meta["mean"], meta["std"])
    try:
        reference.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the model's weights do not fit architecture {arch!r}: {e}") from e
    return {"format": FORMAT, "version": VERSION, **meta, "state_dict": state}


def load_model(path, map_location="cpu") -> tuple[nn.Sequential, dict]:
    """Load a checkpoint (a :func:`checkpoint` written by ``torch.save``).

    Returns the rebuilt model in eval mode and the metadata dict (everything but the
    weights; ``input_shape`` as a tuple).
    """
    path = Path(path)
    not_ours = (f"{path} is not a verifriend checkpoint (expected a .pt written by "
                "`verifriend train`).")
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist." if not path.exists() else not_ours)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before failing
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any unpickling or archive failure means the file is not ours
        raise UserError(not_ours) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(not_ours)
    if payload.get("version") != VERSION:
        raise UserError(f"{path} has checkpoint format version {payload.get('version')!r}; this "
                        f"verifriend reads version {VERSION}.")
    meta = {k: v for k, v in payload.items() if k not in ("format", "version", "state_dict")}
    try:
        meta["input_shape"] = tuple(int(d) for d in meta["input_shape"])
        model = build_model(meta["arch"], meta["input_shape"], meta["num_classes"],
                            meta["mean"], meta["std"])
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is a damaged verifriend checkpoint: its weights or metadata do "
                        f"not match architecture {meta.get('arch')!r}.") from e
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval(), meta


def _export(model: nn.Module, x: torch.Tensor) -> bytes:
    kwargs = {"input_names": ["input"], "output_names": ["output"], "opset_version": ONNX_OPSET,
              "dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}}
    try:
        # The TorchScript exporter needs no extra packages (the dynamo one needs
        # onnxscript) and emits plain Conv/Gemm/Relu/Sub/Div/Add nodes.
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), buf, dynamo=False, do_constant_folding=True,
                              **kwargs)
        return buf.getvalue()
    except Exception:
        # a future torch may drop the TorchScript exporter; use the dynamo one if it can run
        if importlib.util.find_spec("onnxscript") is None:
            raise
        program = torch.onnx.export(model, (x,), dynamo=True, **kwargs)
        return program.model_proto.SerializeToString()


def onnx_bytes(model: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """``model`` (normalization included) as a checked ONNX file's bytes: input ``input`` of
    shape (batch, C, H, W), output ``output`` of shape (batch, classes), opset 17."""
    import onnx

    shape = tuple(int(d) for d in input_shape)
    params = list(model.parameters()) + list(model.buffers())
    device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        data = _export(model, torch.rand(1, *shape, device=device))
    finally:
        model.train(was_training)
    onnx.checker.check_model(data)
    return data
