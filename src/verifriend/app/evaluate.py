"""The `evaluate` job: friendliness metrics of a saved model, and the complete verifier's
figures from a resumable campaign."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from verifriend.app.outputs import check_out_dir, output_dir
from verifriend.app.settings import CampaignSettings, EvaluateSettings
from verifriend.data import load_dataset, select_per_class
from verifriend.metrics import evaluate_friendliness
from verifriend.models import load_model


def complete_verification(ckpt: str | Path, eps: float, timeout: float, per_class: int,
                          jsonl: str | Path, *, data_dir: str | None = None, seed: int = 0,
                          progress: bool = True) -> dict:
    """The complete verifier on ``per_class`` test images per class (a resumable campaign
    logged to ``jsonl``): UNSAT / SAT / timeout %, mean time, mean time over UNSAT+timeout."""
    from verifriend.app.campaign import campaign

    res = campaign(CampaignSettings(Path(ckpt), eps, timeout, per_class, data_dir, Path(jsonl),
                                    seed), progress=progress)
    s = res.summary
    return {"unsat_pct": s["unsat_pct"], "sat_pct": s["sat_pct"],
            "timeout_pct": s["timeout_pct"], "misclassified_pct": s["misclassified_pct"],
            "verify_time_s": s["mean_time_s"],
            "verify_time_unsat_timeout_s": s["mean_time_unsat_timeout_s"],
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


def evaluate(settings: EvaluateSettings, *, progress: bool = True) -> dict:
    """The `evaluate` job: friendliness metrics of a saved model at each radius, on its own
    data set's test split.

    With ``timeout`` > 0 every property also goes to the complete verifier (that many
    seconds each); its campaign log, ``<model>.eps<E>.t<T>.verify.jsonl`` in ``log_dir``
    (default: the model's folder), lets an interrupted evaluation resume. ``test_limit``
    measures clean and PGD accuracy on the first N test images only (PGD-100 over a whole
    test set dominates a reduced-scale evaluation); the properties are unaffected.
    """
    s, path = settings, Path(settings.model)
    model, meta = load_model(path)
    logs = Path(s.log_dir) if s.log_dir is not None else path.parent
    if s.timeout > 0:  # the campaign logs' places, before any work
        from verifriend.app.campaign import check_results_file

        check_out_dir(logs, "the log folder")
        for e in s.eps:
            check_results_file(_log_path(logs, path, e, s.timeout), "the verifier log")
    data = load_dataset(meta["dataset"], s.data_dir)
    idx = select_per_class(data.y_test, s.per_class)
    results = []
    say = Console(stderr=True).print if progress else (lambda *a: None)
    for e in s.eps:
        n_acc = len(data.x_test) if s.test_limit is None else min(s.test_limit, len(data.x_test))
        say(f"eps {e:g}: clean and PGD-{s.pgd_steps} accuracy on {n_acc} test images, bounds on "
            f"{len(idx)} properties ...")
        r = evaluate_friendliness(model, data.x_test, data.y_test, idx, e,
                                  pgd_steps=s.pgd_steps, accuracy_limit=s.test_limit).to_dict()
        if s.timeout > 0:
            with output_dir(logs, check=False):
                r.update(complete_verification(path, e, s.timeout, s.per_class,
                                               _log_path(logs, path, e, s.timeout),
                                               data_dir=s.data_dir, progress=progress))
        results.append(r)
    return {"model": str(path), "arch": meta["arch"], "dataset": data.display_name,
            "per_class": s.per_class, "timeout": s.timeout, "test_limit": s.test_limit,
            "results": results}


def _log_path(logs: Path, model: Path, eps: float, timeout: float) -> Path:
    return logs / f"{model.stem}.eps{eps:g}.t{timeout:g}.verify.jsonl"
