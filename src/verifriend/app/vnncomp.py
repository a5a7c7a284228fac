"""VNN-COMP interfaces: result files, one instance end to end (the `vnncomp` job), and
benchmark folders.

Result file format (VNN-COMP 2022-2023; 2021 scripts read the first line only)::

    sat
    ((X_0 0.1)
     (X_1 -2.5e-07)
     (Y_0 0.3)
     (Y_1 1.0))

The first line is the status: ``sat`` (the property is violated: a counterexample follows),
``unsat`` (the property holds), ``timeout`` or ``unknown``. For ``sat`` the assignment
follows as one s-expression: ``((X_0 v)`` on the first line, `` (X_i v)`` on each further
line, all inputs in index order then all outputs ``Y_j`` in index order, the last line
closing with ``))``. Values are Python's ``repr`` of the float64 values (shortest text that
reads back to the same double), so a round trip through :func:`parse_result` is exact.
Other statuses have no further lines. :func:`parse_result` also reads the 2021 words
``violated`` / ``holds`` (as ``sat`` / ``unsat``), ``error``, and SMT-LIB negatives
``(- 0.5)``.
"""

from __future__ import annotations

import csv
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from verifriend.app.outputs import check_out_file, remove_file, write_text_atomic
from verifriend.app.settings import VnncompSettings
from verifriend.deadline import Deadline
from verifriend.device import torch_device
from verifriend.errors import UserError
from verifriend.verify.result import STATUSES, Verdict

F64 = torch.float64

_ALIASES = {"violated": "sat", "holds": "unsat"}
_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+(\(\s*-\s*[^\s()]+\s*\)|[^\s()]+)\s*\)")
_REQUIRED_COLUMNS = ("onnx", "vnnlib", "timeout_s", "verdict")


def format_result(verdict: Verdict) -> str:
    """The VNN-COMP result file text of ``verdict`` (see the module docstring), ending in a newline.

    Raises ``ValueError`` for a ``sat`` verdict without a counterexample: such a file would
    claim a violation it cannot show.
    """
    if verdict.status not in STATUSES:
        raise ValueError(f"unknown verdict status {verdict.status!r}")
    if verdict.status != "sat":
        return verdict.status + "\n"
    if verdict.counterexample is None:
        raise ValueError("a sat verdict needs a counterexample to write a VNN-COMP result")
    x, y = (torch.as_tensor(t).detach().to("cpu", F64).reshape(-1).tolist()
            for t in verdict.counterexample)
    pairs = [f"(X_{i} {v!r})" for i, v in enumerate(x)] + [f"(Y_{j} {v!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def _value(text: str) -> float:
    m = re.fullmatch(r"\(\s*-\s*([^\s()]+)\s*\)", text)
    return -float(m.group(1)) if m else float(text)


def _vector(values: dict[int, float], name: str) -> Tensor:
    if sorted(values) != list(range(len(values))):
        missing = min(set(range(max(values) + 1)) - set(values))
        raise ValueError(f"the counterexample has no value for {name}_{missing}")
    return torch.tensor([values[i] for i in range(len(values))], dtype=F64)


def parse_result(text: str) -> tuple[str, Tensor | None, Tensor | None]:
    """``(status, x, y)`` from a VNN-COMP result file's text; ``x``/``y`` float64 or None.

    ``status`` is one of ``sat``, ``unsat``, ``timeout``, ``unknown``, ``error``. ``x`` and
    ``y`` are set when the status is ``sat`` and an assignment follows. Raises ``ValueError``
    for an unknown status, a malformed value, a variable assigned twice or a gap in the
    indices.
    """
    lines = text.strip().splitlines()
    if not lines:
        raise ValueError("the result file is empty")
    status = lines[0].strip().lower()
    status = _ALIASES.get(status, status)
    if status not in (*STATUSES, "error"):
        raise ValueError(f"unknown result status {lines[0].strip()!r}")
    rest = "\n".join(lines[1:])
    if status != "sat" or not rest.strip():
        return status, None, None
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for kind, idx, val in _PAIR.findall(rest):
        try:
            v = _value(val)
        except ValueError:
            raise ValueError(f"{kind}_{idx} has a malformed value {val!r}") from None
        if int(idx) in values[kind]:
            raise ValueError(f"{kind}_{idx} is assigned twice")
        values[kind][int(idx)] = v
    if not values["X"]:
        raise ValueError("the sat result has no input assignment (X_i v)")
    x = _vector(values["X"], "X")
    y = _vector(values["Y"], "Y") if values["Y"] else None
    return status, x, y


def clear_result_file(out: str | Path) -> None:
    """Check that the result file ``out`` can be written and remove any earlier one, so that
    a run that fails leaves no (stale) verdict behind."""
    check_out_file(out, "--out")
    remove_file(out, "result file")


def run_vnncomp(settings: VnncompSettings, *, elapsed: float = 0.0) -> Verdict:
    """The `vnncomp` job: remove any earlier result file at ``settings.out`` (a failed or
    killed run must leave no stale verdict), run the instance (:func:`run_instance`) and
    write its result file atomically."""
    out = settings.out
    if out is not None:
        clear_result_file(out)
    torch_device(settings.device)  # one sentence, before any work, when the GPU is not there
    say = None
    if settings.verbose:  # each stage on stderr; the result file and stdout stay as they are
        from rich.console import Console

        from verifriend.app.display import stage_printer

        say = stage_printer(Console(stderr=True, soft_wrap=True), time.monotonic() - elapsed)
    verdict = run_instance(settings.model, settings.spec, settings.timeout,
                           config=settings.verifier, elapsed=elapsed, progress=say,
                           device=settings.device)
    if say is not None:
        say(f"verdict {verdict.status} (stage {verdict.stage}, {verdict.domains} domains)")
    if out is not None:
        write_text_atomic(out, format_result(verdict))
    return verdict


def run_instance(onnx_path: str | Path, vnnlib_path: str | Path, timeout: float, *,
                 verify=None, config=None, elapsed: float = 0.0, progress=None,
                 device: str = "cpu") -> Verdict:
    """Load the network and the spec, verify, and return the Verdict.

    The deadline is ``timeout`` seconds after the run started, and the run started
    ``elapsed`` seconds before this call (a command line passes the process's age,
    :func:`verifriend.deadline.process_elapsed`, so that interpreter start-up and imports
    count, as VNN-COMP measures them). ``time_s`` of the result covers all of it; the
    verifier gets what is left after loading, and a verdict reached after the deadline
    is reported as "timeout". ``verify`` defaults to
    :func:`verifriend.verify.verifier.verify_spec`, ``config`` (its options) to the
    defaults; ``progress(message)``, when given, hears the loading and the verifier's
    stages. The verifier runs on ``device`` (its exact stages on the CPU); the verdict and
    its counterexample come back on the CPU. Raises ``UserError`` for a bad timeout, missing
    or malformed files,
    unsupported ONNX ops and a spec whose input or output size differs from the network's.
    """
    start = time.perf_counter()
    settings = VnncompSettings(Path(onnx_path), Path(vnnlib_path), timeout, verifier=config)
    deadline = Deadline.after(timeout - elapsed)

    def finish(verdict: Verdict) -> Verdict:
        verdict.time_s = elapsed + time.perf_counter() - start
        if verdict.status in ("sat", "unsat") and deadline.expired():
            return Verdict("timeout", verdict.time_s, verdict.stage, verdict.domains,
                           details={**verdict.details, "late": verdict.status})
        return verdict

    if deadline.expired():
        return finish(Verdict("timeout", 0.0, stage="start"))
    graph, specs = _load(onnx_path, vnnlib_path)
    graph = graph.to(device=torch_device(device)) if device != "cpu" else graph
    if progress is not None:
        progress(f"loaded: {len(graph.relu_nodes())} ReLU layers, {graph.num_outputs} outputs, "
                 f"{len(specs)} input box(es); {max(deadline.left(), 0.0):.1f} s left")
    if verify is None:
        from verifriend.verify.verifier import verify_spec as verify
    if deadline.expired():
        return finish(Verdict("timeout", 0.0, stage="load"))
    more = {} if progress is None else {"progress": progress}
    return finish(verify(graph, specs, graph.input_shape, timeout=deadline.left(),
                         config=settings.verifier, **more))


def _load(onnx_path: str | Path, vnnlib_path: str | Path):
    """The network's graph and the spec's properties, checked to fit each other."""
    from verifriend.bounds.frontends.onnx import load_onnx
    from verifriend.specs.vnnlib import read_vnnlib

    graph = load_onnx(onnx_path)
    specs = read_vnnlib(vnnlib_path)
    n_in, n_out = math.prod(graph.input_shape), graph.num_outputs
    for spec in specs:
        if spec.n_inputs != n_in:
            raise UserError(f"{vnnlib_path} has {spec.n_inputs} inputs but the network "
                            f"{onnx_path} has {n_in}.")
        if spec.n_outputs != n_out:
            raise UserError(f"{vnnlib_path} has {spec.n_outputs} outputs but the network "
                            f"{onnx_path} has {n_out}.")
    return graph, specs


@dataclass
class Instance:
    """One row of a benchmark's ``instances.csv``; paths are resolved against its folder.

    ``verdict`` is the ground truth (``sat`` / ``unsat`` / ``unknown``, or "" when the
    column is empty); ``extra`` holds the other columns as strings.
    """

    benchmark: str
    onnx: Path
    vnnlib: Path
    timeout_s: float
    verdict: str
    extra: dict[str, str] = field(default_factory=dict)


def read_instances(folder: str | Path) -> list[Instance]:
    """The instances of a VNN-COMP benchmark folder (its ``instances.csv``), in file order."""
    folder = Path(folder)
    path = folder / "instances.csv"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}.") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path} has no column {', '.join(missing)}.")
    out = []
    for line, row in enumerate(reader, start=2):
        try:
            timeout = float(row["timeout_s"])
        except (TypeError, ValueError):
            raise UserError(f"{path}:{line}: timeout_s {row['timeout_s']!r} is not a number.") from None
        extra = {k: v for k, v in row.items() if k not in _REQUIRED_COLUMNS and k is not None}
        out.append(Instance(folder.name, folder / row["onnx"], folder / row["vnnlib"], timeout,
                            (row["verdict"] or "").strip(), extra))
    return out
