"""The `train` job: build a zoo model, train it (phases of a recipe too), checkpoint every epoch, resume."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from verifriend.app.artifacts import save_model
from verifriend.app.display import batch_bars
from verifriend.app.outputs import check_out_dir, output_dir, save_torch_atomic, write_json_atomic
from verifriend.app.settings import TrainSettings
from verifriend.data import Dataset
from verifriend.errors import UserError
from verifriend.models import build_model, load_model
from verifriend.train import TrainConfig
from verifriend.train.trainer import TrainState, fit


def train_files(name: str = "model") -> list[str]:
    """The files :func:`train_and_save` writes in its output directory."""
    return [f"{name}.pt", f"{name}.train.json", f"{name}.state.pt"]


def check_train_out(out_dir: str | Path, name: str = "model", what: str = "--out") -> Path:
    """Refuse (UserError) an output directory :func:`train_and_save` could not write."""
    return check_out_dir(out_dir, what, files=train_files(name))


def train_model(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                cfg: TrainConfig, *, progress: bool = True,
                on_epoch_end: Callable[[int, nn.Module, dict], None] | None = None,
                resume: TrainState | None = None,
                on_state: Callable[[TrainState], None] | None = None) -> list[dict]:
    """:func:`verifriend.train.trainer.fit` with a progress bar per epoch when ``progress``."""
    with batch_bars(progress) as bar:
        return fit(model, x_train, y_train, cfg, progress=bar, on_epoch_end=on_epoch_end,
                   resume=resume, on_state=on_state)


def run_train(settings: TrainSettings, *, progress: bool = True
              ) -> tuple[nn.Module, Path, list[dict]]:
    """The `train` job: the output directory is checked before the data set is loaded,
    then :func:`train_with` on that data set."""
    from verifriend.data import load_dataset

    check_train_out(settings.out, settings.name)
    data = load_dataset(settings.dataset, settings.data_dir)
    return train_with(settings, data, progress=progress)


def train_and_save(
    arch: str,
    data: Dataset,
    cfg: TrainConfig | list[TrainConfig],
    out_dir: str | Path,
    *,
    name: str = "model",
    progress: bool = True,
    restart: bool = False,
) -> tuple[nn.Module, Path, list[dict]]:
    """:func:`train_with` from keyword arguments: ``cfg`` is one phase or a list of them."""
    phases = tuple(cfg) if isinstance(cfg, list) else (cfg,)
    settings = TrainSettings(out=Path(out_dir), phases=phases, arch=arch, dataset=data.name,
                             name=name, restart=restart)
    return train_with(settings, data, progress=progress)


def train_with(settings: TrainSettings, data: Dataset, *, progress: bool = True
               ) -> tuple[nn.Module, Path, list[dict]]:
    """Build ``settings.arch`` for ``data``, train it phase by phase, checkpoint every epoch.

    The phases (a recipe: "RS for 2 epochs, then RS+NBC") are trained one after another on
    the same weights, each with its own optimizer and schedules; history entries then name
    their ``phase``. Writes ``<out>/<name>.pt`` (after every epoch, atomically),
    ``<out>/<name>.train.json`` with the config and the per-epoch history, and
    ``<out>/<name>.state.pt`` (the training state). A run started again on the same
    directory with the same arch, data set and config resumes after the last finished epoch
    and ends with the same weights as an uninterrupted run; a different config there is
    refused (choose another directory), unless ``restart`` (start over).
    """
    phases = settings.phases
    config = phases[0].to_dict() if len(phases) == 1 else {
        "phases": [p.to_dict() for p in phases]}
    check_train_out(settings.out, settings.name)
    with output_dir(settings.out, check=False) as folder:  # empty folders made here go on failure
        return _train_into(settings, data, config, folder, progress)


def _train_into(settings: TrainSettings, data: Dataset, config: dict, out_dir: Path,
                progress: bool) -> tuple[nn.Module, Path, list[dict]]:
    arch, phases, name = settings.arch, settings.phases, settings.name
    torch.manual_seed(phases[0].seed)  # the initial weights are part of what a seed fixes
    model = build_model(arch, data.input_shape, data.num_classes, data.mean, data.std)
    if phases[0].init:
        _start_from(model, phases[0].init, arch, data)
    ckpt = out_dir / f"{name}.pt"
    meta = {"arch": arch, "input_shape": data.input_shape, "num_classes": data.num_classes,
            "dataset": data.name, "mean": data.mean, "std": data.std, "config": config}
    state_path = out_dir / f"{name}.state.pt"
    saved = None if settings.restart else _load_state(state_path, meta)
    history: list[dict] = [] if saved is None else [dict(h) for h in saved[1].history]
    if (saved is not None and saved[0] == len(phases) - 1 and ckpt.exists()
            and (saved[1].epoch == phases[-1].epochs or saved[1].stopped)):
        # finished before: leave the files alone (a verification campaign keyed to the
        # checkpoint's bytes may be resumed next)
        done, _ = load_model(ckpt)
        return done, ckpt, history
    start = time.perf_counter()
    first_phase = 0 if saved is None else saved[0]
    for k in range(first_phase, len(phases)):
        pcfg = phases[k]
        resume = None
        if saved is not None and k == saved[0]:
            # the saved history covers earlier phases too; train_model wants this phase's
            resume = dataclasses.replace(saved[1], history=[
                h for h in saved[1].history if h.get("phase", 1) == k + 1])

        def on_state(state: TrainState, k=k) -> None:
            entry = dict(state.history[-1])
            if len(phases) > 1:
                entry["phase"] = k + 1
            full = dataclasses.replace(state, history=[*history, entry])
            save_torch_atomic(state_path, {"meta": _state_key(meta), "phase": k,
                                           "state": dataclasses.asdict(full)})

        def on_epoch_end(epoch: int, m: nn.Module, stats: dict, k=k) -> None:
            if len(phases) > 1:
                stats["phase"] = k + 1
            history.append(stats)
            save_model(m, ckpt, **meta, metrics={"history": history})
            write_json_atomic(out_dir / f"{name}.train.json",
                              {"arch": arch, "dataset": data.display_name, "config": config,
                               "history": history, "checkpoint": str(ckpt)})

        x, y = data.x_train, data.y_train
        if pcfg.limit is not None:
            x, y = x[: pcfg.limit], y[: pcfg.limit]
        # a later phase starts from the weights the previous one left
        train_model(model, x, y, pcfg, progress=progress, on_epoch_end=on_epoch_end,
                    resume=resume, on_state=on_state)
    history[-1]["total_time_s"] = time.perf_counter() - start
    model.to("cpu").eval()
    save_model(model, ckpt, **meta, metrics={"history": history})
    return model, ckpt, history


def _start_from(model: nn.Module, init: str, arch: str, data: Dataset) -> None:
    """Load the weights of checkpoint ``init`` (same arch and data set) into ``model``."""
    start, meta = load_model(init)
    if meta["arch"] != arch or meta["dataset"] != data.name:
        raise UserError(f"init checkpoint {init} is a {meta['arch']} for {meta['dataset']}; "
                        f"this run trains a {arch} for {data.name}.")
    model.load_state_dict(start.state_dict())


def _state_key(meta: dict) -> dict:
    """What must match for a saved training state to be resumed."""
    return {k: meta[k] for k in ("arch", "dataset", "config")}


def _with_defaults(config: dict) -> dict:
    """A saved config with the fields added since it was written at their defaults (so a
    state saved before a new option existed still resumes); unreadable ones as they are."""
    try:
        if isinstance(config, dict) and "phases" in config:
            return {"phases": [TrainConfig.from_dict(p).to_dict() for p in config["phases"]]}
        return TrainConfig.from_dict(config).to_dict()
    except (UserError, TypeError):
        return config


def _load_state(path: Path, meta: dict) -> tuple[int, TrainState] | None:
    """(phase, training state) saved at ``path`` for this run, or None when there is none."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        key, state = saved["meta"], (saved["phase"], TrainState(**saved["state"]))
    except Exception as exc:  # a torn or foreign file: say so rather than guess
        raise UserError(f"{path} is not a training state verifriend can read ({exc}); "
                        "delete it to start over.") from exc
    if {**key, "config": _with_defaults(key.get("config"))} != _state_key(meta):
        raise UserError(f"{path.parent} holds a run with another arch, data set or config; "
                        "use another --out directory (or delete it) to start a new run.")
    return state
