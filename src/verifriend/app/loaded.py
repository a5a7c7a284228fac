"""A model file as the evaluation jobs (`evaluate`, `verify`) see it: a verifriend checkpoint
(``.pt``) or an ONNX network taking pixels in [0, 1], with its graph for the bound engine, a
module for accuracy and attacks, and the data set whose test images it is checked on."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from verifriend.bounds.graph import Graph
from verifriend.errors import UserError


class GraphModule(nn.Module):
    """An imported graph as a module: ``forward`` is the graph's own (differentiable) forward
    pass, so PGD and accuracy run on exactly what the bound engine bounds."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph.forward(x)


@dataclass
class LoadedModel:
    """``module`` and ``graph`` take inputs of shape ``(B, *input_shape)``; ``dataset`` names
    the data set (the checkpoint's own, or the one given for an ONNX file)."""

    path: Path
    module: nn.Module
    graph: Graph
    input_shape: tuple[int, ...]
    num_classes: int
    dataset: str
    arch: str

    def to(self, device: torch.device) -> LoadedModel:
        """This model with its module and graph on ``device`` (itself when they are there)."""
        device = torch.device(device)
        if self.graph.device in (None, device):
            return self
        graph = self.graph.to(device=device)
        module = (GraphModule(graph).eval() if isinstance(self.module, GraphModule)
                  else copy.deepcopy(self.module).to(device))
        return dataclasses.replace(self, module=module, graph=graph)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Data set images ``(N, C, H, W)`` in this model's input shape (a flat ONNX input
        takes the flattened image); one sentence when the sizes differ."""
        if tuple(x.shape[1:]) == self.input_shape:
            return x
        if x[0].numel() != torch.Size(self.input_shape).numel():
            raise UserError(f"{self.path} takes inputs of shape {self.input_shape}, but the "
                            f"{self.dataset} images have shape {tuple(x.shape[1:])}; choose the "
                            "data set the model was trained on (--dataset).")
        return x.reshape(len(x), *self.input_shape)


def load_model_file(path: str | Path, dataset: str | None = None) -> LoadedModel:
    """A ``.pt`` checkpoint (its data set unless ``dataset`` overrides it) or an ``.onnx``
    network (``dataset``, default MNIST); anything else is refused with one sentence."""
    from verifriend.bounds.frontends.torch import from_module

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from verifriend.models.io import load_model

        model, meta = load_model(path)
        shape = tuple(meta["input_shape"])
        return LoadedModel(path, model, from_module(model, shape), shape,
                           int(meta["num_classes"]), dataset or meta["dataset"], meta["arch"])
    if suffix == ".onnx":
        from verifriend.bounds.frontends.onnx import load_onnx

        graph = load_onnx(path)
        return LoadedModel(path, GraphModule(graph).eval(), graph, tuple(graph.input_shape),
                           int(graph.num_outputs), dataset or "mnist", path.stem)
    raise UserError(f"{path} is neither a verifriend checkpoint (.pt) nor an ONNX network "
                    "(.onnx).")
