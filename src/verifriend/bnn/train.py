"""Training binarized networks for exact verification (EEV-style).

`train_bnn` runs Adam on cross-entropy with, all optional:

- PGD adversarial training on the real input in [0, 1] (before quantization, through the
  STEs), eps ramped linearly 0 -> ``eps`` and the step count 0 -> ``pgd_steps`` over the first
  ``ramp`` share of training (per batch); the attack runs with BatchNorm frozen (batch
  statistics, running ones untouched);
- adaptive gradient cancelling: at the start of each epoch where the ramped attack is on,
  every candidate alpha (0.6, 1.0, ..., 3.0) is tried as the activations' STE sharpness for a
  PGD attack (the epoch's eps and steps, the same random start) on ``alpha_batches`` fixed
  training batches, and the alpha with the most successful attacks is kept (ties: the one
  nearest 1);
- cardinality-bound decay (CBD): ``cbd * sum_i max(b_i - cbd_tau, 0)`` over hidden neurons,
  b_i the differentiable surrogate of the encoder's bound (`layers.BinBlock.soft_bounds`); the
  first layer is left out by default (``cbd_first_layer``: its bound counts thermometer
  literals, levels per input, so tau = 5 is far out of its reach);
- BinMask sparsity decay ``mask_decay``: every step adds ``mask_decay`` to the gradient of each
  mask M > 0 (weight decay of the binary mask value [M > 0], passed straight through, so it
  pushes the masks that are on across 0 at a steady rate); with ternary weights it adds
  ``mask_decay * sign(W)`` to the nonzero latent weights instead.

- adversarial examples made by the verifier (``verifier_epochs`` > 0, with PGD on): at the
  start of each of the last ``verifier_epochs`` epochs, the network is exported to its integer
  form and encoded, and of ``verifier_images`` fixed training images, those PGD does not break
  are handed to the native solver (``verifier_time`` seconds each); every counterexample it
  finds (replayed exactly) replaces that image's PGD example for the epoch.

After training, every BatchNorm's running statistics are recomputed on the training set
(`network.recompute_batchnorm`). Runs are seeded and deterministic on CPU.

The command line is ``verifriend bnn train`` (`verifriend.app.bnn_train.train_and_save`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bnn.network import BNN, recompute_batchnorm
from verifriend.errors import UserError

ALPHA_CANDIDATES = (0.6, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0)


@dataclass
class BNNTrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_factor * lr) or "constant"
    lr_min_factor: float = 0.01
    seed: int = 0
    limit: int | None = None  # use the first `limit` training examples
    # adversarial training
    eps: float = 0.0
    pgd_steps: int = 10
    ramp: float = 0.5  # share of training over which eps and steps ramp up
    pgd_step_size: float = 2.5  # step = pgd_step_size * eps / steps
    # adaptive gradient cancelling
    alpha: float = 1.0
    adaptive_alpha: bool = True
    alpha_candidates: tuple[float, ...] = ALPHA_CANDIDATES
    alpha_batches: int = 40
    # cardinality-bound decay
    cbd: float = 0.0
    cbd_tau: float = 5.0
    cbd_first_layer: bool = False
    # adversarial examples made by the verifier, in the last `verifier_epochs` epochs
    verifier_epochs: int = 0
    verifier_images: int = 500
    verifier_time: float = 0.05
    # sparsity
    mask_decay: float = 0.0
    weight_clip: float = 1.0
    recompute_bn: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("epochs and batch_size must be positive.")
        if self.lr_schedule not in ("cosine", "constant"):
            raise UserError(f"Unknown lr_schedule {self.lr_schedule!r}: cosine or constant.")
        if self.eps < 0 or self.pgd_steps < 0 or not 0 < self.ramp <= 1:
            raise UserError("eps and pgd_steps must be >= 0 and ramp in (0, 1].")
        if self.cbd < 0 or self.mask_decay < 0:
            raise UserError("cbd and mask_decay must be >= 0.")
        if self.verifier_epochs < 0 or self.verifier_images < 0 or self.verifier_time <= 0:
            raise UserError("verifier_epochs and verifier_images must be >= 0, verifier_time > 0.")
        self.alpha_candidates = tuple(float(a) for a in self.alpha_candidates)


# --- pieces --------------------------------------------------------------------------------

def _as_xy(data) -> tuple[Tensor, Tensor]:
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    elif hasattr(data, "x_train") and hasattr(data, "y_train"):
        x, y = data.x_train, data.y_train
    else:
        raise UserError("Training data must be a Dataset or an (x, y) pair.")
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y).long()
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise UserError(f"Training data: {x.shape[0]} images and {y.shape[0]} labels.")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise UserError("BNN inputs must lie in [0, 1].")
    return x, y


def ramp(progress: float, length: float) -> float:
    return min(1.0, max(0.0, progress / length))


def pgd_attack(model: BNN, x: Tensor, y: Tensor, eps: float, steps: int, *,
               step_size: float = 2.5, generator: torch.Generator | None = None,
               init: Tensor | None = None) -> Tensor:
    """L-inf PGD on inputs in [0, 1] from a random start (or ``init``), maximizing
    cross-entropy through the STEs; the model's mode is left as it is."""
    if eps <= 0 or steps <= 0:
        return x
    if init is None:
        init = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    adv = torch.max(torch.min(x + init, hi), lo)
    step = step_size * eps / steps
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, adv)
        adv = torch.max(torch.min(adv.detach() + step * g.sign(), hi), lo)
    return adv.detach()


def cbd_loss(model: BNN, tau: float, first_layer: bool = False) -> Tensor:
    """sum_i max(b_i - tau, 0) over the hidden neurons' surrogate bounds."""
    blocks = list(model.blocks) if first_layer else list(model.blocks)[1:]
    total = torch.zeros(())
    for b in blocks:
        total = total + F.relu(b.soft_bounds() - tau).sum()
    return total


@torch.no_grad()
def apply_sparse_decay(model: BNN, decay: float) -> None:
    """Add the sparsity decay to the gradients (see the module docstring)."""
    if decay <= 0:
        return
    for m in model.bin_layers():
        if m.mask is not None:
            if m.mask.grad is None:
                m.mask.grad = torch.zeros_like(m.mask)
            m.mask.grad.add_((m.mask > 0).to(m.mask.dtype), alpha=decay)
        elif m.sparsity == "ternary":
            if m.weight.grad is None:
                m.weight.grad = torch.zeros_like(m.weight)
            m.weight.grad.add_(m.binary_weight().detach(), alpha=decay)


def choose_alpha(model: BNN, batches: list[tuple[Tensor, Tensor]], eps: float, steps: int,
                 candidates: tuple[float, ...], step_size: float,
                 generator: torch.Generator) -> tuple[float, dict[float, int]]:
    """The alpha whose PGD attack succeeds most often on ``batches`` (ties: nearest 1)."""
    inits = [(torch.rand(x.shape, generator=generator) * 2 - 1) * eps for x, _ in batches]
    scores: dict[float, int] = {}
    was_training = model.training
    model.train()
    model.set_frozen(True)
    try:
        for a in candidates:
            model.set_alpha(a)
            wrong = 0
            for (x, y), init in zip(batches, inits, strict=True):
                adv = pgd_attack(model, x, y, eps, steps, step_size=step_size, init=init)
                with torch.no_grad():
                    wrong += int((model(adv).argmax(1) != y).sum())
            scores[a] = wrong
    finally:
        model.set_frozen(False)
        model.train(was_training)
    best = max(candidates, key=lambda a: (scores[a], -abs(a - 1.0)))
    model.set_alpha(best)
    return best, scores


@torch.no_grad()
def evaluate(model: BNN, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Accuracy of the eval-mode model."""
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(x.shape[0], 1)


def robust_accuracy(model: BNN, x: Tensor, y: Tensor, eps: float, steps: int = 20,
                    batch_size: int = 500, seed: int = 0, step_size: float = 2.5) -> float:
    """Accuracy under a PGD attack on the eval-mode model (an upper bound on robustness)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        adv = pgd_attack(model, xb, yb, eps, steps, step_size=step_size, generator=gen)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / max(x.shape[0], 1)


def _lr_factor(cfg: BNNTrainConfig, done: float) -> float:
    if cfg.lr_schedule == "constant":
        return 1.0
    m = cfg.lr_min_factor
    return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * done))


# --- the loop ------------------------------------------------------------------------------

@dataclass
class _Run:
    """One run's fixed parts: data, optimizer, generators and the batches alpha is chosen on."""

    model: BNN
    cfg: BNNTrainConfig
    x: Tensor
    y: Tensor
    optimizer: torch.optim.Optimizer
    shuffle_gen: torch.Generator
    noise_gen: torch.Generator
    alpha_gen: torch.Generator
    fixed: Tensor  # a seeded permutation: the alpha batches, then the verifier's images
    alpha_batches: list[tuple[Tensor, Tensor]]

    @property
    def n_batches(self) -> int:
        return (self.x.shape[0] + self.cfg.batch_size - 1) // self.cfg.batch_size


def _prepare(model: BNN, data, cfg: BNNTrainConfig) -> _Run:
    x, y = _as_xy(data)
    if tuple(x.shape[1:]) != tuple(model.spec.input_shape):  # type: ignore[arg-type]
        raise UserError(f"Training images have shape {tuple(x.shape[1:])}; the BNN expects "
                        f"{tuple(model.spec.input_shape)}.")  # type: ignore[arg-type]
    if cfg.limit is not None:
        x, y = x[:cfg.limit], y[:cfg.limit]
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    alpha_gen = torch.Generator().manual_seed(cfg.seed + 2)
    model.set_alpha(cfg.alpha)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    n, bs = x.shape[0], cfg.batch_size
    fixed = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 3))
    alpha_batches = [(x[fixed[i * bs:(i + 1) * bs]], y[fixed[i * bs:(i + 1) * bs]])
                     for i in range(min(cfg.alpha_batches, (n + bs - 1) // bs))]
    return _Run(model, cfg, x, y, optimizer, shuffle_gen, noise_gen, alpha_gen, fixed,
                alpha_batches)


def _epoch_start(run: _Run, epoch: int, entry: dict) -> dict[int, Tensor]:
    """Before an epoch: choose alpha (adaptive gradient cancelling) and, in the last
    ``verifier_epochs``, collect the verifier's counterexamples (training index -> input)."""
    cfg, model = run.cfg, run.model
    p0 = (epoch - 1) * run.n_batches / (cfg.epochs * run.n_batches)
    eps0 = cfg.eps * ramp(p0, cfg.ramp)
    steps0 = round(cfg.pgd_steps * ramp(p0, cfg.ramp))
    if cfg.adaptive_alpha and eps0 > 0 and steps0 > 0 and run.alpha_batches:
        _, scores = choose_alpha(model, run.alpha_batches, eps0, steps0, cfg.alpha_candidates,
                                 cfg.pgd_step_size, run.alpha_gen)
        entry["alpha_scores"] = {str(k): v for k, v in scores.items()}
    entry["alpha"] = model.alpha
    verified: dict[int, Tensor] = {}
    if (cfg.verifier_epochs > 0 and epoch > cfg.epochs - cfg.verifier_epochs
            and cfg.eps > 0 and cfg.pgd_steps > 0 and cfg.verifier_images > 0):
        verified, entry["verifier"] = verifier_examples(
            model, run.x, run.y, run.fixed[:cfg.verifier_images], cfg.eps, cfg, run.noise_gen)
    return verified


def _step(run: _Run, xb: Tensor, yb: Tensor, lr: float, epoch: int) -> tuple[Tensor, Tensor, float]:
    """One optimizer step on the (attacked) batch: (loss, logits, CBD excess)."""
    cfg, model = run.cfg, run.model
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    logits = model(xb)
    loss = F.cross_entropy(logits, yb)
    excess = 0.0
    if cfg.cbd > 0:
        cbd = cbd_loss(model, cfg.cbd_tau, cfg.cbd_first_layer)
        loss = loss + cfg.cbd * cbd
        excess = float(cbd.detach())
    if not torch.isfinite(loss):
        raise UserError(f"The BNN training loss became {float(loss)} in epoch "
                        f"{epoch}; lower the learning rate or cbd.")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    apply_sparse_decay(model, cfg.mask_decay)
    run.optimizer.step()
    model.clip_(cfg.weight_clip)
    return loss, logits, excess


def _epoch(run: _Run, epoch: int, verified: dict[int, Tensor],
           progress: Callable[[str, int, int, str], None] | None) -> dict:
    """Train one epoch (PGD on each batch, then a step); the entry's training figures."""
    cfg, model, x, y = run.cfg, run.model, run.x, run.y
    n, bs, n_batches = x.shape[0], cfg.batch_size, run.n_batches
    total = cfg.epochs * n_batches
    task = f"BNN epoch {epoch}/{cfg.epochs}"
    if progress:
        progress(task, 0, n_batches, "")
    order = torch.randperm(n, generator=run.shuffle_gen)
    loss_sum = cbd_sum = 0.0
    correct = 0
    eps_b, steps_b, lr = 0.0, 0, cfg.lr
    model.train()
    for b in range(n_batches):
        idx = order[b * bs:(b + 1) * bs]
        xb, yb = x[idx], y[idx]
        done = ((epoch - 1) * n_batches + b) / total
        eps_b = cfg.eps * ramp(done, cfg.ramp)
        steps_b = round(cfg.pgd_steps * ramp(done, cfg.ramp))
        if eps_b > 0 and steps_b > 0:
            model.set_frozen(True)
            try:
                xb = pgd_attack(model, xb, yb, eps_b, steps_b, step_size=cfg.pgd_step_size,
                                generator=run.noise_gen)
            finally:
                model.set_frozen(False)
            if verified:
                for k, i in enumerate(idx.tolist()):
                    if i in verified:
                        xb[k] = verified[i]
        lr = cfg.lr * _lr_factor(cfg, done)
        loss, logits, excess = _step(run, xb, yb, lr, epoch)
        cbd_sum += excess * len(idx)
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.detach().argmax(1) == yb).sum())
        if progress:
            seen = min((b + 1) * bs, n)
            progress(task, b + 1, n_batches,
                     f"loss {loss_sum / seen:.4f}  acc {correct / seen:.3f}  "
                     f"eps {eps_b:.3f}/{steps_b}  alpha {model.alpha:g}")
    return {"loss": loss_sum / n, "cbd": cbd_sum / n, "train_acc": correct / n, "eps": eps_b,
            "steps": steps_b, "lr": lr, "sparsity": model.sparsity()["total"]}


def train_bnn(model: BNN, data, cfg: BNNTrainConfig | None = None, *,
              test=None, progress: Callable[[str, int, int, str], None] | None = None,
              on_epoch_end: Callable[[int, BNN, dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place (see the module docstring; EEV: Jia & Rinard, "Efficient
    Exact Verification of Binarized Neural Networks", NeurIPS 2020); one history dict per
    epoch.

    ``data`` is a `Dataset` or an (x, y) pair with x in [0, 1]; ``test`` likewise (optional:
    its accuracy is then logged per epoch). History entries: epoch, loss, cbd (the mean
    surrogate bound excess), train_acc (on the training batches as attacked), eps, steps,
    alpha (and alpha_scores when chosen), sparsity, lr, time_s, test_acc. ``progress(task,
    batches done, batches, stats)`` hears about every batch. The model is left in eval mode
    with recomputed BatchNorm statistics (``cfg.recompute_bn``).
    """
    cfg = cfg or BNNTrainConfig()
    run = _prepare(model, data, cfg)
    xt = yt = None
    if test is not None:
        xt, yt = _as_xy(test)
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        entry: dict = {"epoch": epoch}
        verified = _epoch_start(run, epoch, entry)
        entry.update(_epoch(run, epoch, verified, progress))
        entry["time_s"] = time.perf_counter() - start
        if xt is not None:
            entry["test_acc"] = evaluate(model, xt, yt)  # running statistics
        history.append(entry)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, entry)
    if cfg.recompute_bn:
        recompute_batchnorm(model, run.x, batch_size=1000)
    model.eval()
    return history


def verifier_examples(model: BNN, x: Tensor, y: Tensor, indices: Tensor, eps: float,
                      cfg: BNNTrainConfig, generator: torch.Generator) -> tuple[dict, dict]:
    """Counterexamples of the exact verifier for the training images `indices` that PGD does
    not break: (training index -> adversarial input, figures for the history)."""
    from verifriend.bnn.export import export_integer
    from verifriend.bnn.verify import find_attacks

    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    xs, ys = x[indices], y[indices]
    adv = pgd_attack(model, xs, ys, eps, cfg.pgd_steps, step_size=cfg.pgd_step_size,
                     generator=generator)
    with torch.no_grad():
        held = (model(adv).argmax(1) == ys).nonzero().reshape(-1)
    net = export_integer(model)
    found = find_attacks(net, xs[held].numpy().astype(np.float64), ys[held].numpy(), eps,
                         time_limit=cfg.verifier_time)
    model.train(was_training)
    out = {int(indices[held[k]]): torch.as_tensor(v, dtype=x.dtype) for k, v in found.items()}
    return out, {"pgd_held": len(held), "attacks": len(out), "time_s": time.perf_counter() - t0}


def config_dict(cfg: BNNTrainConfig) -> dict:
    d = asdict(cfg)
    d["alpha_candidates"] = list(cfg.alpha_candidates)
    return d


# --- data ----------------------------------------------------------------------------------

def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor,
                                                                          Tensor, Tensor]:
    """scikit-learn's 8x8 digits as (x_train, y_train, x_test, y_test), x = pixel / 16 in
    [0, 1] with shape (N, 1, 8, 8); a seeded random split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn comes with mlxtend
        raise UserError("The digits data set needs scikit-learn (pip install scikit-learn).")\
            from None
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]),
            torch.from_numpy(y[te]))
