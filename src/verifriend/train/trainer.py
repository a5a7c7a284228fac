"""One training loop for every method; the method only picks the loss function."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from verifriend.errors import UserError
from verifriend.train.config import TrainConfig
from verifriend.train.nbc import nbc_loss

# fn(model, x, y, cfg, *, generator) -> (scalar loss, clean logits f(x))
LossFn = Callable[..., tuple[Tensor, Tensor]]


def natural_loss(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Plain cross-entropy on clean inputs."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


# New methods register here (and in config.METHODS).
LOSSES: dict[str, LossFn] = {"natural": natural_loss, "nbc": nbc_loss}


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)


def _device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Device {name!r} was requested but CUDA is not available.")
    return dev


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


def train_model(model: nn.Module, x_train: Tensor, y_train: Tensor, cfg: TrainConfig, *,
                progress: bool = True,
                on_epoch_end: Callable[[int, nn.Module, dict], None] | None = None
                ) -> list[dict]:
    """Train ``model`` in place with ``cfg.method``; return one history dict per epoch.

    History entries: ``epoch`` (1-based), ``loss`` and ``train_acc`` (means over
    the epoch's batches, accuracy on clean inputs), ``time_s``. Seeds are fixed by
    ``cfg.seed``, so equal inputs give equal weights. ``on_epoch_end(epoch, model,
    entry)`` sees the model in eval mode; the model is left in eval mode.
    """
    loss_fn = LOSSES.get(cfg.method)
    if loss_fn is None:
        raise UserError(f"Training method {cfg.method!r} has no loss function.")
    dev = _device(cfg.device)
    x, y = _training_data(x_train, y_train, cfg, dev)
    torch.manual_seed(cfg.seed)
    model.to(dev)
    optimizer = _make_optimizer(model, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    # perturbations are drawn on the training device, so their generator lives there
    noise_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    n = x.shape[0]
    n_batches = (n + cfg.batch_size - 1) // cfg.batch_size
    history: list[dict] = []

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), disable=not progress)
    with bar:
        for epoch in range(1, cfg.epochs + 1):
            task = bar.add_task(f"{cfg.method} epoch {epoch}/{cfg.epochs}", total=n_batches,
                                stats="")
            model.train()
            start = time.perf_counter()
            order = torch.randperm(n, generator=shuffle_gen).to(dev)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            for b in range(n_batches):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb, yb = x[idx], y[idx]
                loss, logits = loss_fn(model, xb, yb, cfg, generator=noise_gen)
                if not torch.isfinite(loss):
                    raise UserError(f"The training loss became {loss.item()} in epoch {epoch}; "
                                    "lower the learning rate.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(idx)
                correct += (logits.detach().argmax(1) == yb).sum()
                if progress:
                    seen = min((b + 1) * cfg.batch_size, n)
                    bar.update(task, advance=1, stats=f"loss {loss_sum.item() / seen:.4f}  "
                                                      f"acc {correct.item() / seen:.3f}")
            entry = {"epoch": epoch, "loss": loss_sum.item() / n, "train_acc": correct.item() / n,
                     "time_s": time.perf_counter() - start}
            history.append(entry)
            model.eval()
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, entry)
    model.eval()
    return history
