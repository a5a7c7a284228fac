"""The `evaluate` job: friendliness metrics of a saved model, and the complete verifier's
figures from a resumable campaign."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from rich.console import Console

from verifriend.app.campaign import campaign
from verifriend.app.campaign_property import property_images
from verifriend.app.display import batch_bars
from verifriend.app.loaded import LoadedModel, load_model_file
from verifriend.app.outputs import check_out_dir, output_dir
from verifriend.app.settings import CampaignSettings, CompareSettings, EvaluateSettings
from verifriend.device import torch_device
from verifriend.metrics import evaluate_friendliness


def complete_verification(ckpt: str | Path, eps: float, timeout: float, per_class: int,
                          jsonl: str | Path, *, data_dir: str | None = None, seed: int = 0,
                          progress: bool = True, dataset: str | None = None,
                          indices: tuple[int, int] | None = None, ray: str | None = None,
                          shard: tuple[int, int] | None = None, device: str = "cpu") -> dict:
    """The complete verifier on ``per_class`` test images per class, or on the test images
    ``indices`` (a resumable campaign logged to ``jsonl``): UNSAT / SAT / timeout %, mean time,
    mean time over UNSAT+timeout. ``ray``: on Ray workers; ``shard`` (I, N): those properties
    only (:func:`~verifriend.app.campaign.campaign`)."""
    res = campaign(CampaignSettings(Path(ckpt), eps, timeout, per_class, data_dir, Path(jsonl),
                                    seed, dataset=dataset, indices=indices, device=device,
                                    ray=ray, shard=shard), progress=progress)
    s = res.summary
    return {"unsat_pct": s["unsat_pct"], "sat_pct": s["sat_pct"],
            "timeout_pct": s["timeout_pct"], "misclassified_pct": s["misclassified_pct"],
            "verify_time_s": s["mean_time_s"],
            "verify_time_unsat_timeout_s": s["mean_time_unsat_timeout_s"],
            "verify_domains": s["mean_domains"],
            "verify_log": str(jsonl)}


def evaluate_checkpoint(path: str | Path, eps_list: list[float], *, per_class: int = 10,
                        data_dir: str | None = None, pgd_steps: int = 100, timeout: float = 0.0,
                        log_dir: str | Path | None = None, progress: bool = True,
                        test_limit: int | None = None) -> dict:
    """:func:`evaluate` from keyword arguments."""
    return evaluate(EvaluateSettings(Path(path), tuple(eps_list), per_class, pgd_steps, timeout,
                                     test_limit, data_dir,
                                     None if log_dir is None else Path(log_dir)),
                    progress=progress)


def evaluate(settings: EvaluateSettings, *, progress: bool = True,
             loaded: LoadedModel | None = None) -> dict:
    """The `evaluate` job: friendliness metrics of a saved model (a checkpoint, or an ONNX
    network on ``dataset``) at each radius, on the data set's test split: the properties are
    ``per_class`` test images per class, or the test images ``indices`` = [start, stop).

    With ``timeout`` > 0 every property also goes to the complete verifier (that many
    seconds each); its campaign log, ``<model>.eps<E>.t<T>.verify.jsonl`` in ``log_dir``
    (default: the model's folder), lets an interrupted evaluation resume. With ``ray`` the
    properties go to Ray workers; with ``shard`` (I, N) the complete verifier takes only the
    properties at positions p % N == I (log ``...verify.shard<I>of<N>.jsonl``; its figures
    are that shard's), the other metrics all properties. ``test_limit``
    measures clean and PGD accuracy on the first N test images only (PGD-100 over a whole
    test set dominates a reduced-scale evaluation); the properties are unaffected.
    ``loaded`` is the model file already read, if the caller has it.
    """
    s, path = settings, Path(settings.model)
    dev = torch_device(s.device)
    loaded = loaded or load_model_file(path, s.dataset)
    logs = _check_logs(s)
    x, y, idx = property_images(loaded, s.data_dir, s.per_class, 0, s.indices)
    on_dev, x, y = loaded.to(dev), x.to(dev), y.to(dev)  # bounds and PGD on the device
    results = []
    for e in s.eps:
        # a bar per phase on stderr (clean accuracy, PGD, bounds), then the verifier's own
        with batch_bars(progress, Console(stderr=True, soft_wrap=True)) as bar:
            tell = None if bar is None else (
                lambda phase, *rest, e=e, bar=bar: bar(f"eps={e:g} {phase}", *rest))
            r = evaluate_friendliness(on_dev.module, x, y, torch.tensor(idx, device=dev), e,
                                      pgd_steps=s.pgd_steps, accuracy_limit=s.test_limit,
                                      graph=on_dev.graph, alpha=s.alpha, progress=tell).to_dict()
        if s.timeout > 0:
            with output_dir(logs, check=False):
                r.update(complete_verification(path, e, s.timeout, s.per_class,
                                               _log_path(logs, path, e, s.timeout, s.shard),
                                               data_dir=s.data_dir, progress=progress,
                                               dataset=s.dataset, indices=s.indices,
                                               ray=s.ray, shard=s.shard, device=s.device))
        results.append(r)
    return {"model": str(path), "arch": loaded.arch, "dataset": loaded.dataset,
            "per_class": s.per_class, "timeout": s.timeout, "test_limit": s.test_limit,
            "indices": None if s.indices is None else list(s.indices), "results": results}


def _check_logs(s: EvaluateSettings) -> Path:
    """The folder of the campaign logs, checked (with the logs) before any work."""
    path = Path(s.model)
    logs = Path(s.log_dir) if s.log_dir is not None else path.parent
    if s.timeout > 0:
        from verifriend.app.campaign import check_results_file

        check_out_dir(logs, "the log folder")
        for e in s.eps:
            check_results_file(_log_path(logs, path, e, s.timeout, s.shard), "the verifier log")
    return logs


def evaluate_models(settings: CompareSettings, *, progress: bool = True) -> dict:
    """The `evaluate` job on one or more models: :func:`evaluate` for each, and the verified-%
    table of :mod:`verifriend.metrics.verified_table` (markdown, CSV, plot), written with
    ``results.json`` to ``settings.out`` when given. Everything is checked before any work."""
    from verifriend.metrics.verified_table import verified_csv, verified_markdown, verified_plot

    out = settings.out
    files = ("results.json", "verified.md", "verified.csv", "verified.png", "report.html")
    if out is not None:
        check_out_dir(out, files=files)
    for run in settings.runs:
        torch_device(run.device)  # before work: one sentence when the GPU is not there
    models = [load_model_file(run.model, run.dataset) for run in settings.runs]  # before work
    for run in settings.runs:
        _check_logs(run)
    with _ray_for(settings):  # one Ray instance for every model and radius
        results = [evaluate(run, progress=progress, loaded=m)
                   for run, m in zip(settings.runs, models)]
    stems = [Path(r.model).stem for r in settings.runs]
    names = stems if len(set(stems)) == len(stems) else [str(r.model) for r in settings.runs]
    by_name = dict(zip(names, results))
    result = {"models": results, "verified_md": verified_markdown(by_name),
              "verified_csv": verified_csv(by_name), "files": []}
    if out is not None:
        from verifriend.app.artifacts import write_figure
        from verifriend.app.outputs import write_json_atomic, write_text_atomic
        from verifriend.app.report import write_report

        with output_dir(out, check=False):
            paths = [out / f for f in files]
            write_json_atomic(paths[0], {k: v for k, v in result.items() if k != "files"})
            write_text_atomic(paths[1], result["verified_md"])
            write_text_atomic(paths[2], result["verified_csv"])
            write_figure(paths[3], verified_plot(by_name, "verified % against radius"))
            write_report(out)  # paths[4]: every table and plot on one HTML page
        result["files"] = [str(p) for p in paths]
    return result


def _ray_for(settings: CompareSettings) -> contextlib.AbstractContextManager:
    """Connected to Ray while the models are evaluated, when their verifier runs on Ray."""
    run = settings.runs[0]
    if run.ray is None or run.timeout <= 0:
        return contextlib.nullcontext()
    from verifriend.app.campaign_ray import ray_session

    return ray_session(run.ray, run.device)


def _log_path(logs: Path, model: Path, eps: float, timeout: float,
              shard: tuple[int, int] | None = None) -> Path:
    part = "" if shard is None else f".shard{shard[0]}of{shard[1]}"
    return logs / f"{model.stem}.eps{eps:g}.t{timeout:g}.verify{part}.jsonl"
