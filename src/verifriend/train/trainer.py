"""One training loop (:func:`fit`) for every method; the method only picks the loss function.

The loop holds out ``val_split`` of the training set (a seeded permutation) for a
validation accuracy per epoch, follows ``lr_schedule``, passes each loss the share of
training done (for eps / kappa / weight ramps), augments CIFAR-like images when asked,
and can stop after any epoch and resume from :class:`TrainState` with the same result
as an uninterrupted run: the state holds the weights, the optimizer, every random
generator and the history.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from verifriend.device import torch_device
from verifriend.errors import UserError
from verifriend.train.config import TrainConfig
from verifriend.train.losses import loss_for


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)


def _lr_factor(cfg: TrainConfig, done: float) -> float:
    """The learning-rate multiplier after ``done`` (share of training) under ``lr_schedule``."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * done))
    if cfg.lr_schedule == "step":
        return 0.1 ** ((done >= 0.5) + (done >= 0.75))
    return 1.0


def augment_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop with 4-pixel zero padding and a random horizontal flip, per image."""
    B, _, H, W = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 9, (B,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]
    flip = torch.rand(B, generator=generator, device=x.device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[b, c, rows, cols]


def split_validation(n: int, cfg: TrainConfig) -> tuple[Tensor, Tensor]:
    """Seeded (training, validation) index split of n examples by ``val_split``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 7))
    n_val = round(cfg.val_split * n)
    if n_val and n - n_val < 1:
        raise UserError("val_split leaves no training examples.")
    return perm[n_val:].sort().values, perm[:n_val].sort().values


@dataclass
class TrainState:
    """Everything a resumed run needs: epochs done, weights, optimizer, generators, history."""

    epoch: int
    model: dict
    optimizer: dict
    rng: dict
    history: list[dict] = field(default_factory=list)
    stopped: bool = False  # ended early (accuracy band reached)


def _training_data(x: Tensor, y: Tensor, cfg: TrainConfig, dev: torch.device
                   ) -> tuple[Tensor, Tensor]:
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise UserError(f"Training data must be x (N, ...) and y (N,) with the same N, got "
                        f"{tuple(x.shape)} and {tuple(y.shape)}.")
    if y.is_floating_point():
        raise UserError("Training labels must be integers.")
    if cfg.limit is not None:
        x, y = x[:cfg.limit], y[:cfg.limit]
    if x.shape[0] == 0:
        raise UserError("The training set is empty.")
    return x.to(dev, torch.float32), y.to(dev, torch.long)


@dataclass
class _Run:
    """One run's fixed parts: the loss, the data split, the optimizer and the generators."""

    model: nn.Module
    cfg: TrainConfig
    loss_fn: Callable
    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    optimizer: torch.optim.Optimizer
    shuffle_gen: torch.Generator
    noise_gen: torch.Generator
    dev: torch.device

    @property
    def n_batches(self) -> int:
        return (self.x.shape[0] + self.cfg.batch_size - 1) // self.cfg.batch_size


def _prepare(model: nn.Module, x_train: Tensor, y_train: Tensor, cfg: TrainConfig) -> _Run:
    """The loss, the (training, validation) split on the device, the optimizer and the
    seeded generators, in the order that fixes a run's random streams."""
    loss_fn = loss_for(cfg)
    dev = torch_device(cfg.device)
    x, y = _training_data(x_train, y_train, cfg, dev)
    tr, va = split_validation(x.shape[0], cfg)
    x_val, y_val = x[va.to(dev)], y[va.to(dev)]
    x, y = x[tr.to(dev)], y[tr.to(dev)]
    if cfg.augment and (x.dim() != 4 or x.shape[-1] < 2):
        raise UserError("augment needs images (N, C, H, W).")
    torch.manual_seed(cfg.seed)
    model.to(dev)
    optimizer = _make_optimizer(model, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    # perturbations are drawn on the training device, so their generator lives there
    noise_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    return _Run(model, cfg, loss_fn, x, y, x_val, y_val, optimizer, shuffle_gen, noise_gen, dev)


def _resume(run: _Run, resume: TrainState | None) -> tuple[list[dict], int]:
    """(history so far, first epoch to train), with ``resume``'s weights, optimizer and
    generators restored."""
    if resume is None:
        return [], 1
    run.model.load_state_dict(resume.model)
    run.optimizer.load_state_dict(resume.optimizer)
    run.shuffle_gen.set_state(resume.rng["shuffle"])
    run.noise_gen.set_state(resume.rng["noise"])
    torch.set_rng_state(resume.rng["torch"])
    first = run.cfg.epochs + 1 if resume.stopped else resume.epoch + 1
    return [dict(h) for h in resume.history], first


def _task(cfg: TrainConfig, epoch: int) -> str:
    return f"{cfg.method} epoch {epoch}/{cfg.epochs}"


def epoch_stats(entry: dict) -> str:
    """``loss 0.1234  acc 0.967  val acc 0.951``: an epoch's history entry in brief."""
    val = f"  val acc {entry['val_acc']:.3f}" if "val_acc" in entry else ""
    return f"loss {entry['loss']:.4f}  acc {entry['train_acc']:.3f}{val}"


def _epoch(run: _Run, epoch: int, progress: Callable[[str, int, int, str], None] | None
           ) -> dict:
    """Train one epoch; its history entry (without the validation accuracy)."""
    cfg, model, x, y, dev = run.cfg, run.model, run.x, run.y, run.dev
    n, n_batches = x.shape[0], run.n_batches
    total_steps = cfg.epochs * n_batches
    task = _task(cfg, epoch)
    if progress:
        progress(task, 0, n_batches, "")
    model.train()
    start = time.perf_counter()
    order = torch.randperm(n, generator=run.shuffle_gen).to(dev)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    lr = cfg.lr
    for b in range(n_batches):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        xb, yb = x[idx], y[idx]
        if cfg.augment:
            xb = augment_batch(xb, run.noise_gen)
        done = ((epoch - 1) * n_batches + b) / total_steps
        lr = cfg.lr * _lr_factor(cfg, done)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss, logits = run.loss_fn(model, xb, yb, cfg, generator=run.noise_gen, progress=done)
        if not torch.isfinite(loss):
            raise UserError(f"The training loss became {loss.item()} in epoch {epoch}; "
                            "lower the learning rate.")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == yb).sum()
        if progress:
            seen = min((b + 1) * cfg.batch_size, n)
            progress(task, b + 1, n_batches, f"loss {loss_sum.item() / seen:.4f}  "
                                             f"acc {correct.item() / seen:.3f}")
    return {"epoch": epoch, "loss": loss_sum.item() / n, "train_acc": correct.item() / n,
            "lr": lr, "time_s": time.perf_counter() - start}


def _validate(run: _Run, entry: dict) -> bool:
    """Add the validation accuracy to ``entry`` (model in eval mode); whether the accuracy
    band stops the run here."""
    run.model.eval()
    if run.x_val.shape[0]:
        entry["val_acc"] = _accuracy(run.model, run.x_val, run.y_val, run.cfg.batch_size)
    band = run.cfg.stop_acc_band
    stop = band is not None and entry["val_acc"] <= band[1]
    if stop:
        entry["stopped"] = True
        entry["in_band"] = entry["val_acc"] >= band[0]
    return stop


def _state(run: _Run, epoch: int, history: list[dict], stopped: bool) -> TrainState:
    return TrainState(epoch, copy.deepcopy(run.model.state_dict()),
                      copy.deepcopy(run.optimizer.state_dict()),
                      {"shuffle": run.shuffle_gen.get_state(), "noise": run.noise_gen.get_state(),
                       "torch": torch.get_rng_state()},
                      [dict(h) for h in history], stopped)


def fit(model: nn.Module, x_train: Tensor, y_train: Tensor, cfg: TrainConfig, *,
        progress: Callable[[str, int, int, str], None] | None = None,
        on_epoch_end: Callable[[int, nn.Module, dict], None] | None = None,
        resume: TrainState | None = None,
        on_state: Callable[[TrainState], None] | None = None,
        ) -> list[dict]:
    """Train ``model`` in place with ``cfg.method``; return one history dict per epoch.

    History entries: ``epoch`` (1-based), ``loss`` and ``train_acc`` (means over
    the epoch's batches, accuracy on clean inputs), ``val_acc`` (with ``val_split``),
    ``lr``, ``time_s`` (and ``stopped``/``in_band`` on the epoch that reached
    ``stop_acc_band``). Seeds are fixed by ``cfg.seed``, so equal inputs give equal
    weights. ``progress(task, batches done, batches, stats)`` hears about every batch
    (the app draws it: :func:`verifriend.app.train.train_model`);
    ``on_epoch_end(epoch, model, entry)`` sees the model in eval mode;
    ``on_state(state)`` receives the :class:`TrainState` after every epoch (save it to
    resume: pass it back as ``resume``, with the same config and data). The model is
    left in eval mode.
    """
    run = _prepare(model, x_train, y_train, cfg)
    history, first = _resume(run, resume)
    for epoch in range(first, cfg.epochs + 1):
        entry = _epoch(run, epoch, progress)
        stop = _validate(run, entry)
        if progress:  # the epoch's bar ends with its means and the validation accuracy
            progress(_task(cfg, epoch), run.n_batches, run.n_batches, epoch_stats(entry))
        history.append(entry)
        if on_state is not None:
            on_state(_state(run, epoch, history, stop))
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, entry)
        if stop:
            break
    model.eval()
    return history


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int) -> float:
    with torch.no_grad():
        right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                    for i in range(0, x.shape[0], batch))
    return right / x.shape[0]
