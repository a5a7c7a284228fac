"""The `bnn train` job: train a BNN, export its exact integer form, save both with a summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from verifriend.app.artifacts import save_bnn
from verifriend.app.display import batch_bars
from verifriend.app.outputs import check_out_file, output_dir, write_json_atomic
from verifriend.app.settings import BnnTrainSettings, parse_arch
from verifriend.bnn.export import bound_stats, export_integer
from verifriend.bnn.network import BNN, BNNSpec
from verifriend.bnn.train import (
    BNNTrainConfig,
    config_dict,
    load_digits_data,
    robust_accuracy,
    train_bnn,
)
from verifriend.errors import UserError


def load_data(dataset: str, data_dir: str | None = None):
    """(x_train, y_train, x_test, y_test, input_shape, classes); 'digits' is scikit-learn's 8x8."""
    if dataset == "digits":
        xtr, ytr, xte, yte = load_digits_data(seed=0)
        return xtr, ytr, xte, yte, (1, 8, 8), 10
    from verifriend.data.datasets import load_dataset

    ds = load_dataset(dataset, data_dir)
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.input_shape, ds.num_classes


def run_bnn_train(settings: BnnTrainSettings, *, progress: bool = True) -> dict:
    """The `bnn train` job: :func:`train_with` on ``settings.threads`` torch threads."""
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    return train_with(settings, progress=progress)


def train_and_save(arch: str, dataset: str, cfg: BNNTrainConfig, out: Path, *,
                   step: float | None = None, sparsity: str = "binmask",
                   data_dir: str | None = None, test_limit: int | None = None,
                   pgd_images: int = 1000, meta: dict | None = None, progress: bool = True,
                   on_epoch_end: Callable[[int, BNN, dict], None] | None = None) -> dict:
    """:func:`train_with` from keyword arguments."""
    settings = BnnTrainSettings(Path(out), arch, dataset, data_dir, cfg, step, sparsity,
                                test_limit, pgd_images)
    return train_with(settings, meta=meta, progress=progress, on_epoch_end=on_epoch_end)


def train_with(settings: BnnTrainSettings, *, meta: dict | None = None, progress: bool = True,
               on_epoch_end: Callable[[int, BNN, dict], None] | None = None) -> dict:
    """Train a BNN, save `out` (.pt) and `out` with .json (summary and history); the summary.

    The summary holds the recipe (arch, dataset, step, sparsity, config) next to the figures:
    test accuracy of the exported integer form (and its agreement with the torch model), PGD-20
    accuracy at the training eps on the first `pgd_images` test images, sparsity and bounds.
    `meta` adds entries to the model file's meta; `on_epoch_end` goes to `train_bnn`.
    """
    out = check_train_out(settings.out)
    with output_dir(out.parent, check=False):  # folders left empty by a failure go
        return _train(settings, out, meta, progress, on_epoch_end)


def check_train_out(out: str | Path, what: str = "--out") -> Path:
    """Refuse (UserError) a model path :func:`train_and_save` could not write, or its .json."""
    out = Path(out)
    if out.suffix == ".json":
        raise UserError(f"{what} {out} ends in .json, the name of the summary written beside "
                        "the model; give the model file a .pt name.")
    check_out_file(out, what)
    check_out_file(out.with_suffix(".json"), f"the summary file beside {what}")
    return out


def _train(s: BnnTrainSettings, out: Path, meta: dict | None, progress: bool,
           on_epoch_end: Callable[[int, BNN, dict], None] | None) -> dict:
    arch, dataset, cfg, test_limit, pgd_images = (s.arch, s.dataset, s.config, s.test_limit,
                                                  s.pgd_images)
    xtr, ytr, xte, yte, shape, classes = load_data(dataset, s.data_dir)
    if test_limit is not None:
        xte, yte = xte[:test_limit], yte[:test_limit]
    model = BNN(BNNSpec(parse_arch(arch), input_shape=shape, num_classes=classes, step=s.step,
                        sparsity=s.sparsity), seed=cfg.seed)
    t0 = time.perf_counter()
    with batch_bars(progress) as bar:
        history = train_bnn(model, (xtr, ytr), cfg, test=(xte, yte), progress=bar,
                            on_epoch_end=on_epoch_end)
    train_s = time.perf_counter() - t0
    net = export_integer(model)
    pred = net.predict(net.quantize(xte.numpy()))
    with torch.no_grad():
        torch_pred = torch.cat([model(xte[i:i + 1000]).argmax(1)
                                for i in range(0, len(xte), 1000)]).numpy()
    summary = {
        "arch": arch, "dataset": dataset, "step": model.step, "sparsity_mode": s.sparsity,
        "config": config_dict(cfg), "train_s": train_s,
        "train_examples": min(len(ytr), cfg.limit or len(ytr)),
        "test_acc": float((pred == yte.numpy()).mean()),
        "torch_int_agree": float((pred == torch_pred).mean()),
        "sparsity": model.sparsity(), "bounds": bound_stats(net), "levels": model.levels,
        "alpha": model.alpha,
    }
    if cfg.eps > 0 and pgd_images > 0:
        k = min(pgd_images, len(xte))
        summary.update({"pgd_eps": cfg.eps, "pgd_images": k,
                        "pgd_acc": robust_accuracy(model, xte[:k], yte[:k], cfg.eps, steps=20)})
    save_bnn(model, out, meta={"dataset": dataset, "summary": summary, "history": history,
                               **(meta or {})})
    write_json_atomic(out.with_suffix(".json"), {"summary": summary, "history": history},
                      indent=1, default=float)
    return summary
