"""The `bnn verify` job: exact verification of a saved BNN on its test set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from verifriend.app.bnn_train import load_data
from verifriend.app.display import image_bar
from verifriend.app.outputs import check_out_file, write_text_atomic
from verifriend.app.settings import BnnVerifySettings
from verifriend.bnn.encode import encode
from verifriend.bnn.export import bound_stats, export_integer, load_bnn
from verifriend.bnn.network import BNN
from verifriend.bnn.solvers import make_backend
from verifriend.bnn.train import robust_accuracy
from verifriend.bnn.verify import ImageVerdict, verify_dataset
from verifriend.errors import UserError


def load_with_test_set(model_path: Path, dataset: str | None = None,
                       data_dir: str | None = None) -> tuple[BNN, str, torch.Tensor, torch.Tensor]:
    """A saved BNN, its data set's name (given, or the one it was trained on) and test set."""
    model = load_bnn(model_path)
    dataset = dataset or model.meta.get("dataset")
    if not dataset:
        raise UserError(f"{model_path} does not record its data set; pass --dataset.")
    _, _, xte, yte, shape, _ = load_data(dataset, data_dir)
    if tuple(shape) != tuple(model.spec.input_shape):
        raise UserError(f"{dataset} images are {tuple(shape)}, {model_path} reads "
                        f"{tuple(model.spec.input_shape)}.")
    return model, dataset, xte, yte


def run_bnn_verify(settings: BnnVerifySettings, *, progress: bool = True) -> dict:
    """The `bnn verify` job: :func:`verify` with a progress bar on stderr."""
    with image_bar(progress, settings.limit) as tick:
        return verify(settings, progress=tick)


def verify_model(model_path: Path, eps: float, *, solver: str = "native",
                 timeout: float | None = None, limit: int | None = None,
                 dataset: str | None = None, data_dir: str | None = None, pgd_steps: int = 20,
                 log: Path | None = None,
                 progress: Callable[[int, ImageVerdict], None] | None = None) -> dict:
    """:func:`verify` from keyword arguments."""
    return verify(BnnVerifySettings(Path(model_path), eps, solver, timeout, limit, dataset,
                                    data_dir, pgd_steps, None if log is None else Path(log)),
                  progress=progress)


def verify(settings: BnnVerifySettings,
           progress: Callable[[int, ImageVerdict], None] | None = None) -> dict:
    """Exact verification of a saved BNN on the test set: verdicts, times, accuracies, bounds
    (EEV: one reified-cardinality encoding, one SAT query per image under assumptions)."""
    s = settings
    log = None if s.log is None else check_out_file(s.log, "--log")
    model, dataset, xte, yte = load_with_test_set(s.model, s.dataset, s.data_dir)
    if s.limit is not None:
        xte, yte = xte[:s.limit], yte[:s.limit]
    net = export_integer(model)
    backend = make_backend(s.solver)
    enc = encode(net)
    summary = verify_dataset(net, backend, xte.numpy().astype(np.float64), yte.numpy(), s.eps,
                             time_limit=s.timeout, encoded=enc, progress=progress)
    backend.close()
    result = summary.as_dict()
    verdicts = result.pop("verdicts")
    if log is not None:
        write_text_atomic(log, "".join(json.dumps(v) + "\n" for v in verdicts))
    clean = float((net.predict(net.quantize(xte.numpy())) == yte.numpy()).mean())
    result.update({
        "model": str(s.model), "dataset": dataset, "natural_accuracy": clean,
        "pgd_accuracy": robust_accuracy(model, xte, yte, s.eps, steps=s.pgd_steps) if s.eps > 0
        else clean,
        "pgd_steps": s.pgd_steps, "sparsity": model.sparsity(), "bounds": bound_stats(net),
        "formula": {"vars": enc.formula.num_vars, "cards": len(enc.formula.cards),
                    "clauses": len(enc.formula.clauses)},
    })
    return result
