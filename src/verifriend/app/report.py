"""The `report` job: one self-contained HTML page (:mod:`verifriend.metrics.report_html`) of a
run folder, written atomically (default ``RUN_DIR/report.html``).

A run folder is what ``verifriend evaluate --out``, ``verifriend experiment --out`` or
``verifriend demo --out`` write (a ``results.json`` with the models' metrics, and the
complete verifier's logs), or any folder holding verifier logs (``verifriend verify --out
X.jsonl``). Logs are found in the folder and its subfolders (an experiment's method folders);
a log a result names (``verify_log``) is that model's, any other is named after its folder
(or its model file). A folder of logs only gets its figures from the logs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from verifriend.app.outputs import check_out_file, write_text_atomic
from verifriend.errors import UserError
from verifriend.metrics.report_html import RunLog, report_page

REPORT = "report.html"


@dataclass(frozen=True)
class ReportSettings:
    """``run``: a run folder (or one verifier log, ``.jsonl``); ``out``: the HTML file
    (default ``run/report.html``, or for a log ``<log stem>.report.html`` beside it)."""

    run: Path
    out: Path | None = None

    def __post_init__(self) -> None:
        run = Path(self.run)
        if not run.exists():
            raise UserError(f"{run} does not exist (give the folder a `verifriend evaluate`, "
                            "`experiment` or `demo` run wrote with --out).")
        if not run.is_dir() and run.suffix != ".jsonl":
            raise UserError(f"{run} is neither a run folder nor a verifier log (.jsonl).")

    @property
    def out_file(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        run = Path(self.run)
        return run / REPORT if run.is_dir() else run.with_name(run.stem + ".report.html")


@dataclass
class RunData:
    """What a run folder holds that a report can show."""

    kind: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    logs: list[RunLog] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_report(settings: ReportSettings) -> Path:
    """The `report` job: read the run, write the page; returns its path. A folder with no
    results and no verifier logs is a UserError (one sentence)."""
    out = check_out_file(settings.out_file)
    run = Path(settings.run)
    data = read_run(run)
    if not data.models and not data.logs:
        raise UserError(f"{run} holds nothing a report can show: no results.json of "
                        "`verifriend evaluate`, `experiment` or `demo` and no verifier log.")
    return write_text_atomic(out, page_html(run, data))


def write_report(folder: str | Path) -> Path:
    """``folder/report.html`` of a run folder just written (by evaluate, experiment, demo)."""
    return run_report(ReportSettings(Path(folder)))


def page_html(run: Path, data: RunData) -> str:
    """The report page of ``data`` read from ``run``."""
    name = run.resolve().name
    when = time.strftime("%Y-%m-%d %H:%M")
    subtitle = f"{data.kind} · {run} · {len(data.models)} model(s), {len(data.logs)} " \
               f"verifier log(s) · written {when}"
    return report_page(f"verifriend report: {name}", subtitle, data.facts, data.models,
                       data.logs, data.notes)


def read_run(run: Path) -> RunData:
    """The models' metrics (results.json) and the verifier logs of a run folder, or of one
    log file."""
    if not run.is_dir():
        data = RunData(kind="verifier log")
        _add_logs(data, run.parent, [run], {})
        _models_from_logs(data)
        return data
    data = _read_results(run)
    refs = _log_references(run, data.models)
    _add_logs(data, run, _find_logs(run), refs)
    if not data.models and data.logs:
        data.kind = data.kind or "verifier logs"
        _models_from_logs(data)
    return data


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} cannot be read as JSON ({e}).") from None


def _read_results(run: Path) -> RunData:
    """The metrics of results.json as ``{name: evaluate-like result}``, whichever job wrote it."""
    path = run / "results.json"
    if not path.exists():
        return RunData()
    raw = _load_json(path)
    raw = raw if isinstance(raw, dict) else {}
    if isinstance(raw.get("methods"), dict):
        data = _experiment(raw)
    elif isinstance(raw.get("models"), list):
        data = _evaluate(raw)
    elif isinstance(raw.get("models"), dict) and isinstance(raw.get("demo"), dict):
        data = _demo(raw)
    else:
        return RunData(notes=[f"{path} is not a results file of evaluate, experiment or demo."])
    bad = [n for n, m in data.models.items() if not _valid(m)]
    for n in bad:
        del data.models[n]
    if bad:
        data.notes.append(f"Left out (no per-radius results): {', '.join(bad)}.")
    return data


def _valid(m: object) -> bool:
    return (isinstance(m, dict) and isinstance(m.get("results"), list) and bool(m["results"])
            and all(isinstance(r, dict) and isinstance(r.get("eps"), int | float)
                    for r in m["results"]))


def _experiment(raw: dict) -> RunData:
    exp = raw.get("experiment") or {}
    ev = exp.get("evaluate") or {}
    facts = [("job", "verifriend experiment"), ("description", exp.get("description") or "-"),
             ("data set", exp.get("dataset", "-")), ("architecture", exp.get("arch", "-")),
             ("methods", ", ".join(raw["methods"]) or "-")]
    facts += [(f"evaluate: {k}", _text(v)) for k, v in ev.items()]
    return RunData("experiment", facts, dict(raw["methods"]))


def _evaluate(raw: dict) -> RunData:
    models = [m for m in raw["models"] if isinstance(m, dict)]
    stems = [Path(str(m.get("model", "?"))).stem for m in models]
    names = stems if len(set(stems)) == len(stems) else [str(m.get("model")) for m in models]
    first = models[0] if models else {}
    facts = [("job", "verifriend evaluate"),
             ("models", ", ".join(f"{n} ({m.get('arch', '?')})" for n, m in zip(names, models))),
             ("data set", _text(first.get("dataset"))),
             ("properties", f"test images {first['indices'][0]}:{first['indices'][1]}"
              if first.get("indices") else f"{first.get('per_class', '-')} per class"),
             ("verifier timeout s", _text(first.get("timeout"))),
             ("accuracy on", f"first {first['test_limit']} test images"
              if first.get("test_limit") else "the whole test split")]
    return RunData("evaluate", facts, dict(zip(names, models)))


def _demo(raw: dict) -> RunData:
    demo = raw["demo"]
    models = {n: {"results": [m], "timeout": demo.get("verify_timeout"),
                  "train_time_s": m.get("train_time_s")}
              for n, m in raw["models"].items() if isinstance(m, dict)}
    facts = [("job", "verifriend demo"), ("data set", _text(demo.get("dataset"))),
             ("architecture", _text(demo.get("arch"))), ("epochs", _text(demo.get("epochs"))),
             ("train eps", _text(demo.get("train_eps"))), ("eval eps", _text(demo.get("eval_eps"))),
             ("properties", _text(demo.get("n_properties"))),
             ("verifier timeout s", _text(demo.get("verify_timeout")))]
    return RunData("demo", facts, models)


def _text(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _find_logs(run: Path) -> list[Path]:
    """The JSON-lines files of the folder and of its subfolders."""
    return sorted(run.glob("*.jsonl")) + sorted(run.glob("*/*.jsonl"))


def _log_references(run: Path, models: dict[str, dict]) -> dict[Path, tuple[str, dict]]:
    """The logs the results name: resolved path -> (model name, its per-radius result). A
    moved folder still matches: the log is looked for in the folder, then in the subfolder
    of its name, then where the result says."""
    refs = {}
    for name, m in models.items():
        for r in m["results"]:
            log = r.get("verify_log")
            if not isinstance(log, str):
                continue
            p = Path(log)
            for cand in (run / p.name, run / p.parent.name / p.name, p):
                if cand.is_file():
                    refs[cand.resolve()] = (name, r)
                    break
    return refs


def _add_logs(data: RunData, run: Path, paths: list[Path],
              refs: dict[Path, tuple[str, dict]]) -> None:
    """Read each campaign log; a referenced one adds its mean subproblems to its result.
    Files that are not campaign logs are left out with a note."""
    from verifriend.app.campaign import read_results, summarize

    for path in paths:
        try:
            header, lines, _ = read_results(path)
        except UserError:
            header, lines = None, []
        if header is None:
            data.notes.append(f"Left out {path.name}: not a verifier log of verifriend.")
            continue
        summary = summarize(lines)
        ref = refs.get(path.resolve())
        if ref is not None:
            name, result = ref
            result.setdefault("verify_domains", summary["mean_domains"])
        else:
            name = path.parent.name if path.parent.resolve() != run.resolve() else \
                Path(str(header.get("model", path.stem))).stem
        data.logs.append(RunLog(
            name, float(header.get("eps", 0.0)), float(header.get("timeout") or 0.0),
            str(path.relative_to(run)) if path.is_relative_to(run) else str(path), summary,
            [float(ln["time_s"]) for ln in lines if ln.get("status") in ("unsat", "sat")]))


def _models_from_logs(data: RunData) -> None:
    """Models built from the logs alone: per log name, one result per radius with the
    verifier's figures (a name logged with several timeouts gets one model per timeout)."""
    timeouts: dict[str, set[float]] = {}
    for lg in data.logs:
        timeouts.setdefault(lg.name, set()).add(lg.timeout)
    for lg in sorted(data.logs, key=lambda lg: (lg.name, lg.timeout, lg.eps)):
        name = lg.name if len(timeouts[lg.name]) == 1 else f"{lg.name}, {lg.timeout:g} s"
        s = lg.summary
        m = data.models.setdefault(name, {"results": [], "timeout": lg.timeout})
        m["results"].append({
            "eps": lg.eps, "n_properties": s["n"], "unsat_pct": s["unsat_pct"],
            "sat_pct": s["sat_pct"], "timeout_pct": s["timeout_pct"],
            "misclassified_pct": s["misclassified_pct"], "stable_pct": s["stable_pct"],
            "verify_time_s": s["mean_time_s"],
            "verify_time_unsat_timeout_s": s["mean_time_unsat_timeout_s"],
            "verify_domains": s["mean_domains"], "verify_log": lg.source})
    data.facts = data.facts or [("job", "verifriend verify (logs only)"),
                                ("logs", ", ".join(lg.source for lg in data.logs))]
