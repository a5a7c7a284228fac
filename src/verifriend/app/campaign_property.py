"""One property of a verification campaign: what deciding it needs, and its result line.

:func:`property_row` is the one function every campaign runs per property, in the
campaign's own process or in a Ray worker (:mod:`verifriend.app.campaign_ray`), so both
give the same verdicts. It reads a :class:`CampaignProblem`, the model and the test images
of the data set, which :func:`load_problem` builds from the model file and the settings
(once per process: a campaign loads it once, each Ray worker once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from verifriend.app.loaded import LoadedModel, load_model_file
from verifriend.app.settings import CampaignSettings
from verifriend.device import torch_device
from verifriend.errors import UserError

MISCLASSIFIED = "misclassified"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CampaignProblem:
    """A model file as loaded, and its data set's test images (in the model's input shape)
    and labels: everything a property's verdict depends on besides the settings."""

    loaded: LoadedModel
    x: torch.Tensor
    y: torch.Tensor
    data_name: str  # the data set's display name, for messages


def load_problem(settings: CampaignSettings, loaded: LoadedModel | None = None
                 ) -> CampaignProblem:
    """The model of ``settings`` (``loaded`` when the caller has read it already) and the
    test split of its data set (``settings.data_dir``)."""
    loaded = loaded or load_model_file(settings.model, settings.dataset)
    return _with_images(loaded.to(torch_device(settings.device)), settings.data_dir)


def _with_images(loaded: LoadedModel, data_dir) -> CampaignProblem:
    from verifriend.data import load_dataset

    data = load_dataset(loaded.dataset, data_dir)
    return CampaignProblem(loaded, loaded.inputs(data.x_test), data.y_test, data.display_name)


def select_properties(problem: CampaignProblem, per_class: int, seed: int,
                      indices: tuple[int, int] | None) -> list[int]:
    """The properties' test indices: ``indices`` = [start, stop) when given, else
    ``per_class`` images of each class (``seed`` picks which)."""
    from verifriend.data import select_per_class

    if indices is None:
        return select_per_class(problem.y, per_class, seed=seed).tolist()
    if indices[1] > len(problem.x):
        raise UserError(f"--indices {indices[0]}:{indices[1]} runs past the {len(problem.x)} "
                        f"test images of {problem.data_name}.")
    return list(range(*indices))


def select_shard(idx: list[int], shard: tuple[int, int] | None) -> list[int]:
    """The properties of shard (I, N): those at positions p of ``idx`` with p % N == I."""
    return idx if shard is None else idx[shard[0]::shard[1]]


def property_images(loaded: LoadedModel, data_dir, per_class: int, seed: int,
                    indices: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The test images in the model's input shape, their labels, and the properties' indices:
    test images ``indices`` = [start, stop) when given, else ``per_class`` of each class."""
    problem = _with_images(loaded, data_dir)
    return problem.x, problem.y, select_properties(problem, per_class, seed, indices)


def property_row(problem: CampaignProblem, settings: CampaignSettings, index: int,
                 verify: Callable) -> dict:
    """The result line of the property of test image ``index``: misclassified, or the
    verdict of ``verify`` (the signature of :func:`~verifriend.verify.verifier.verify_spec`,
    given ``settings.verifier`` as its config) with the share of ReLUs CROWN finds stable."""
    m = problem.loaded
    return {"index": index, **_decide(m.module, m.graph, problem.x[index], int(problem.y[index]),
                                      settings, verify, m.input_shape, m.num_classes)}


def _decide(model, graph, x: torch.Tensor, label: int, s: CampaignSettings, verify: Callable,
            input_shape: tuple, num_classes: int) -> dict:
    """One property's result line (without its index): misclassified, or the verifier's
    verdict with the share of ReLUs CROWN finds stable on the eps-ball."""
    from verifriend.bounds.crown import crown
    from verifriend.bounds.result import stable_mask
    from verifriend.specs.spec import Spec

    x = x.to(graph.device)
    with torch.no_grad():
        pred = int(model(x.unsqueeze(0)).argmax(1))
    row = {"label": label, "predicted": pred}
    if pred != label:
        row.update(status=MISCLASSIFIED, time_s=0.0, domains=0, stage="", stable_pct=None)
        return row
    spec = Spec.linf_robustness(x.flatten(), label, s.eps, num_classes, 0.0, 1.0)
    lo, hi = spec.input_box(input_shape, dtype=torch.float32, device=graph.device)
    with torch.no_grad():
        mask = stable_mask(crown(graph, lo, hi))[0]
    stable = 100.0 * float(mask.double().mean()) if mask.numel() else 100.0
    v = verify(graph, [spec], input_shape, timeout=s.timeout, config=s.verifier)
    row.update(status=v.status, time_s=float(v.time_s), domains=int(v.domains), stage=v.stage,
               stable_pct=stable)
    if "late" in v.details:  # decided after the timeout: logged, not counted
        row["late"] = v.details["late"]
    return row
