"""Model zoo (paper architectures by name), checkpoint contents and ONNX export bytes."""

from verifriend.models.io import checkpoint, load_model, onnx_bytes
from verifriend.models.layers import Normalize, Residual
from verifriend.models.zoo import build_model, describe_architecture, list_architectures

__all__ = [
    "Normalize",
    "Residual",
    "build_model",
    "checkpoint",
    "describe_architecture",
    "list_architectures",
    "load_model",
    "onnx_bytes",
]
