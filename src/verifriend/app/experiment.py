"""Friendliness experiments from a YAML recipe: train every method, evaluate each with the
NBC paper's protocol, and write the comparison (table, CSV, radar charts, UNSAT curve).

A recipe (see ``experiments/``)::

    description: RQ1 at reduced scale
    dataset: mnist
    arch: cnn_4layer
    train: {epochs: 3, eps: 0.1, lr: 0.001, limit: 10000}   # shared TrainConfig fields
    methods:                                   # name -> its settings over ``train``
      natural: {method: natural}
      nbc: {method: nbc}
      rs-then-rs+nbc: {phases: [{method: rs, epochs: 2}, {method: rs+nbc, epochs: 1}]}
      nbc-tuned: {from: natural, method: nbc, epochs: 5, stop_acc_band: [0.95, 0.97]}
    evaluate: {eps: [0.02, 0.05], per_class: 10, timeout: 10, pgd_steps: 100}

``from`` fine-tunes a method from an earlier one's trained weights (RQ3: each method
fine-tunes the natural model until its validation accuracy drops into a band).

Every step resumes: training from its state file, verification from its campaign log, and a
finished method's metrics from ``<method>/evaluation.json`` (kept while the checkpoint and the
evaluation settings are unchanged), so running the same command again after an interruption
loses at most one epoch or property. ``only`` runs some of the methods (e.g. one process per
core on the same ``out``); the tables then cover every method evaluated there so far.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from verifriend.app.artifacts import write_figure
from verifriend.app.outputs import check_out_dir, output_dir, write_json_atomic, write_text_atomic
from verifriend.app.report import write_report
from verifriend.app.settings import EvaluateSettings, EvaluationPlan, ExperimentSettings
from verifriend.errors import UserError
from verifriend.metrics.paper import paper_csv, paper_markdown, radar_chart, unsat_curve
from verifriend.train import TrainConfig
from verifriend.train.recipe import read_yaml, recipe_phases

RECIPE_KEYS = {"description", "dataset", "arch", "train", "methods", "evaluate"}
EVAL_KEYS = tuple(f.name for f in dataclasses.fields(EvaluationPlan))


@dataclass
class Experiment:
    """A parsed recipe: per method its training phases, and the evaluation settings."""

    dataset: str
    arch: str
    methods: dict[str, list[TrainConfig]]
    plan: EvaluationPlan = field(default_factory=EvaluationPlan)
    description: str = ""
    start_from: dict[str, str] = field(default_factory=dict)  # method -> earlier method

    @property
    def evaluate(self) -> dict:
        """The evaluation settings as the recipe writes them."""
        return self.plan.as_dict()


def parse_experiment(data: object, *, dataset: str | None = None, arch: str | None = None
                     ) -> Experiment:
    """An :class:`Experiment` from a parsed recipe; ``dataset``/``arch`` override its own."""
    if not isinstance(data, dict):
        raise UserError("an experiment recipe must be a mapping (see experiments/*.yaml).")
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise UserError(f"unknown experiment key(s): {', '.join(map(str, unknown))}.")
    methods = data.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise UserError("an experiment needs 'methods': a mapping of names to settings.")
    base = TrainConfig.from_dict(data.get("train") or {})
    parsed, start_from = {}, {}
    for name, spec in methods.items():
        spec = dict(spec or {})
        if not isinstance(spec, dict):
            raise UserError(f"the settings of method {name!r} must be a mapping.")
        if "from" in spec:
            src = spec.pop("from")
            if src not in parsed:
                raise UserError(f"method {name!r} starts from {src!r}, which must be listed "
                                "before it.")
            start_from[str(name)] = str(src)
        try:
            if "phases" in spec:
                parsed[str(name)] = recipe_phases(spec, base)
            else:
                parsed[str(name)] = [TrainConfig.from_dict({**base.to_dict(), **spec})]
        except UserError as exc:
            raise UserError(f"method {name!r}: {exc}") from exc
    given = data.get("evaluate") or {}
    if not isinstance(given, dict) or set(given) - set(EVAL_KEYS):
        raise UserError(f"'evaluate' takes {', '.join(EVAL_KEYS)}.")
    return Experiment(dataset or data.get("dataset", "mnist-embedded"),
                      arch or data.get("arch", "cnn_4layer"), parsed, EvaluationPlan(**given),
                      str(data.get("description", "")), start_from)


def load_experiment(path: str | Path, **overrides) -> Experiment:
    """Read a recipe file (see the module docstring)."""
    return parse_experiment(read_yaml(path), **overrides)


def run_experiment(settings: ExperimentSettings, console: Console | None = None) -> dict:
    """The `experiment` job: train and evaluate every method of the recipe under
    ``settings.out``; write results.json, table.md, results.csv, radar_eps<E>.png and
    unsat_vs_eps.png there."""
    from verifriend.app.campaign import check_results_file
    from verifriend.app.train import train_files

    exp, out, ev = settings.experiment, settings.out, settings.experiment.plan
    chosen = _chosen(exp, settings.only, Path(out))
    files = ["results.json", "table.md", "results.csv", "unsat_vs_eps.png", "report.html",
             *(f"radar_eps{e:g}.png" for e in ev.eps)]
    check_out_dir(out, "--out", files=files)  # every output place, before any work
    for name in chosen:
        check_out_dir(Path(out) / name, "the method folder", files=[*train_files(), EVALUATION])
        if ev.timeout > 0:  # the verifier's logs (evaluate's names)
            for e in ev.eps:
                check_results_file(Path(out) / name / f"model.eps{e:g}.t{ev.timeout:g}"
                                   ".verify.jsonl", "the verifier log")
    with output_dir(out, check=False) as folder:  # folders left empty by a failure go
        return _run(exp, chosen, folder, settings.data_dir, console or Console())


EVALUATION = "evaluation.json"  # a method's metrics, with what they were computed from


def _chosen(exp: Experiment, only: tuple[str, ...], out: Path) -> list[str]:
    """The methods to run: all, or those named in ``only`` (checked against the recipe, and a
    fine-tuned one's start must be trained already or run in the same call)."""
    if not only:
        return list(exp.methods)
    unknown = [n for n in only if n not in exp.methods]
    if unknown:
        raise UserError(f"--only {unknown[0]!r} is not a method of the recipe; it has "
                        f"{', '.join(exp.methods)}.")
    for name in only:
        src = exp.start_from.get(name)
        if src is not None and src not in only and not (out / src / "model.pt").exists():
            raise UserError(f"method {name!r} fine-tunes {src!r}, which is not trained in "
                            f"{out} yet: add --only {src}.")
    return [n for n in exp.methods if n in only]


def _evaluation_key(ckpt: Path, plan: EvaluationPlan) -> dict:
    from verifriend.app.campaign import file_sha256

    return {"checkpoint_sha256": file_sha256(ckpt), "evaluate": plan.as_dict()}


def _cached_evaluation(folder: Path, key: dict) -> dict | None:
    """The metrics saved in ``folder`` for exactly this checkpoint and plan, else None."""
    try:
        saved = json.loads((folder / EVALUATION).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("result") if isinstance(saved, dict) and saved.get("key") == key else None


def _collect(exp: Experiment, out: Path) -> dict[str, dict]:
    """Every method of the recipe evaluated in ``out`` under the recipe's plan, in its order."""
    found = {}
    for name in exp.methods:
        ckpt = out / name / "model.pt"
        if ckpt.exists():
            res = _cached_evaluation(out / name, _evaluation_key(ckpt, exp.plan))
            if res is not None:
                found[name] = res
    return found


def _run(exp: Experiment, chosen: list[str], out: Path, data_dir: str | None,
         console: Console) -> dict:
    from verifriend.app.evaluate import evaluate
    from verifriend.app.train import train_and_save
    from verifriend.data import load_dataset

    data = load_dataset(exp.dataset, data_dir)
    ev = exp.plan
    console.print(f"[bold]experiment[/] {exp.description or ''} on {data.display_name}, "
                  f"arch {exp.arch}, methods {', '.join(exp.methods)}")
    for name in chosen:
        phases = exp.methods[name]
        src = exp.start_from.get(name)
        if src is not None:  # fine-tuning: start from that method's trained weights
            phases = [dataclasses.replace(phases[0], init=str(out / src / "model.pt")),
                      *phases[1:]]
        console.print(f"\n[bold]{name}[/]: training" + (f" from {src}" if src else ""))
        _, ckpt, history = train_and_save(exp.arch, data, phases, out / name)
        key = _evaluation_key(ckpt, ev)
        res = _cached_evaluation(out / name, key)
        if res is None:
            console.print(f"{name}: evaluating at eps {', '.join(f'{e:g}' for e in ev.eps)}")
            res = evaluate(EvaluateSettings(ckpt, ev.eps, ev.per_class, ev.pgd_steps,
                                            ev.timeout, ev.test_limit, data_dir))
            res["train_time_s"] = sum(h["time_s"] for h in history)
            write_json_atomic(out / name / EVALUATION, {"key": key, "result": res})
        results = _collect(exp, out)  # after every method, so a killed run leaves its table
        write_json_atomic(out / "results.json", {"experiment": _describe(exp, data),
                                                 "methods": results})
    missing = [n for n in exp.methods if n not in results]
    if missing:
        console.print(f"not evaluated in {out} yet: {', '.join(missing)}; the tables cover "
                      f"{', '.join(results) or 'nothing'}")
    if not results:
        return results
    title = f"{exp.arch} on {data.display_name}"
    write_text_atomic(out / "table.md", f"# {exp.description or 'experiment'}\n\n{title}, "
                      f"{ev.per_class} properties per class, timeout {ev.timeout:g} s\n\n"
                      + paper_markdown(results))
    write_text_atomic(out / "results.csv", paper_csv(results))
    for eps in ev.eps:
        write_figure(out / f"radar_eps{eps:g}.png",
                     radar_chart(results, eps, f"{title}, eps = {eps:g}"))
    write_figure(out / "unsat_vs_eps.png", unsat_curve(results, title))
    console.print(paper_markdown(results))
    console.print(f"wrote {write_report(out)}", highlight=False, soft_wrap=True)
    return results


def _describe(exp: Experiment, data) -> dict:
    return {"description": exp.description, "dataset": data.display_name, "arch": exp.arch,
            "evaluate": exp.evaluate,
            "methods": {n: [p.to_dict() for p in ph] for n, ph in exp.methods.items()}}
