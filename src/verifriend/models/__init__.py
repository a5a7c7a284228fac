"""Model zoo (paper architectures by name), checkpoints and ONNX export."""

from verifriend.models.io import export_onnx, load_model, save_model
from verifriend.models.layers import Normalize, Residual
from verifriend.models.zoo import build_model, describe_architecture, list_architectures

__all__ = [
    "Normalize",
    "Residual",
    "build_model",
    "describe_architecture",
    "export_onnx",
    "list_architectures",
    "load_model",
    "save_model",
]
