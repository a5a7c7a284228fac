"""Multi-step jobs shared by the CLI and the demo: train-and-save, evaluate a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from verifriend.data import Dataset, load_dataset, select_per_class
from verifriend.errors import UserError
from verifriend.metrics import evaluate_friendliness
from verifriend.metrics.report import write_json_atomic
from verifriend.models import build_model, load_model, save_model
from verifriend.train import TrainConfig, train_model


def check_eps(eps: float, name: str = "eps") -> None:
    """Reject radii a robustness property cannot have."""
    if not eps >= 0 or eps > 1:
        raise UserError(f"{name} must be in [0, 1] (pixel space), got {eps}.")


def train_and_save(
    arch: str,
    data: Dataset,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    name: str = "model",
    progress: bool = True,
) -> tuple[nn.Module, Path, list[dict]]:
    """Build ``arch`` for ``data``, train it with ``cfg``, checkpoint every epoch.

    Writes ``out_dir/<name>.pt`` (after every epoch, atomically) and
    ``out_dir/<name>.train.json`` with the config and the per-epoch history.
    """
    check_eps(cfg.eps, "training eps")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # the initial weights are part of what a seed fixes
    model = build_model(arch, data.input_shape, data.num_classes, data.mean, data.std)
    ckpt = out_dir / f"{name}.pt"
    meta = {"arch": arch, "input_shape": data.input_shape, "num_classes": data.num_classes,
                "dataset": data.name, "mean": data.mean, "std": data.std, "config": cfg.to_dict()}
    history: list[dict] = []

    def on_epoch_end(epoch: int, m: nn.Module, stats: dict) -> None:
        history.append(stats)
        save_model(m, ckpt, **meta, metrics={"history": history})
        write_json_atomic(out_dir / f"{name}.train.json",
                          {"arch": arch, "dataset": data.display_name, "config": cfg.to_dict(),
                           "history": history, "checkpoint": str(ckpt)})

    x, y = data.x_train, data.y_train
    if cfg.limit is not None:
        x, y = x[: cfg.limit], y[: cfg.limit]
    start = time.perf_counter()
    train_model(model, x, y, cfg, progress=progress, on_epoch_end=on_epoch_end)
    history[-1]["total_time_s"] = time.perf_counter() - start
    model.to("cpu").eval()
    save_model(model, ckpt, **meta, metrics={"history": history})
    return model, ckpt, history


def evaluate_checkpoint(
    path: str | Path,
    eps_list: list[float],
    *,
    per_class: int = 10,
    data_dir: str | None = None,
    pgd_steps: int = 100,
) -> dict:
    """Friendliness metrics of a saved model at each radius, on its own data set's test split."""
    for e in eps_list:
        check_eps(e)
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}.")
    model, meta = load_model(path)
    data = load_dataset(meta["dataset"], data_dir)
    idx = select_per_class(data.y_test, per_class)
    results = [
        evaluate_friendliness(model, data.x_test, data.y_test, idx, e, pgd_steps=pgd_steps).to_dict()
        for e in eps_list
    ]
    return {"model": str(path), "arch": meta["arch"], "dataset": data.display_name,
            "per_class": per_class, "results": results}

