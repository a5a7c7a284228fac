"""Robustness verification campaigns: many Linf properties of one model, resumable.

A campaign takes ``per_class`` test images of each class of the model's data set (or the test
images of an explicit index range; the model a verifriend checkpoint or an ONNX network) and
verifies, for each image the model classifies correctly, that every input of the
eps-ball (clipped to [0, 1]) gets the same class. Misclassified images are recorded as
"misclassified" and not verified (the NBC paper counts them among the properties).

Results go to a JSON-lines file: a header line with the settings, then one line per
finished property, flushed and fsynced as soon as the property is decided. Restarting the
same command reads the file, skips the properties already there and appends the rest, so
a killed campaign loses at most the property it was working on. A last line cut short by
the kill is dropped (the file is rewritten atomically without it) and that property redone.

Each property is decided by :func:`~verifriend.app.campaign_property.property_row`, here or
on Ray workers (``--ray``, :mod:`verifriend.app.campaign_ray`); either way this process is
the file's only writer, appending each line as its property finishes. ``--shard I/N``
verifies the properties at positions p % N == I of the selection into a file of its own
(the header records the shard, so another shard's file is refused); :func:`merge_results`
sums up the shards' files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from verifriend.app.campaign_property import (
    MISCLASSIFIED,
    file_sha256,
    load_problem,
    property_row,
    select_properties,
    select_shard,
)
from verifriend.app.display import campaign_bar
from verifriend.app.loaded import load_model_file
from verifriend.app.outputs import check_out_file, output_dir, write_text_atomic
from verifriend.app.settings import CampaignSettings
from verifriend.device import torch_device
from verifriend.errors import UserError
from verifriend.verify.verifier import verify_spec

FORMAT = "verifriend-campaign"
VERSION = 1
# the settings a results file is bound to; a file written for other settings is refused
# (a file from before shards has no "shard": it reads as None, an unsharded campaign)
SETTING_KEYS = ("model", "model_sha256", "eps", "timeout", "per_class", "seed", "dataset",
                "indices", "shard")


@dataclass
class CampaignSummary:
    """What :func:`run_campaign` did and the campaign's statistics so far.

    ``summary`` is :func:`summarize` of every line in the file (resumed ones included);
    ``resumed`` counts the properties found in the file on start, ``new`` those decided now.
    """

    model: str
    dataset: str
    eps: float
    timeout: float
    per_class: int
    seed: int
    out_jsonl: str
    total: int
    resumed: int
    new: int
    summary: dict = field(default_factory=dict)
    shard: list[int] | None = None  # [I, N]: the shard's properties only

    @property
    def complete(self) -> bool:
        return self.summary.get("n", 0) == self.total

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(lines: Iterable[dict]) -> dict:
    """Statistics of property lines (header lines are ignored).

    Percentages (0-100) are over all properties, misclassified ones included; ``timeout_pct``
    counts "timeout" and "unknown". ``stable_pct``, ``mean_time_s`` and ``mean_domains`` are
    means over the verified properties (not misclassified), ``mean_time_unsat_timeout_s`` over
    those that ended UNSAT, timeout or unknown (the SAT ones are mostly found fast by attack).
    Means over nothing are None.
    """
    props = [ln for ln in lines if "index" in ln]
    n = len(props)
    count = {s: 0 for s in ("unsat", "sat", "timeout", "unknown", MISCLASSIFIED)}
    for p in props:
        count[p["status"]] = count.get(p["status"], 0) + 1
    verified = [p for p in props if p["status"] != MISCLASSIFIED]
    hard = [p for p in verified if p["status"] in ("unsat", "timeout", "unknown")]

    def pct(k: int) -> float:
        return 100.0 * k / n if n else 0.0

    return {
        "n": n,
        "n_verified": len(verified),
        "unsat_pct": pct(count["unsat"]),
        "sat_pct": pct(count["sat"]),
        "timeout_pct": pct(count["timeout"] + count["unknown"]),
        "misclassified_pct": pct(count[MISCLASSIFIED]),
        "stable_pct": _mean([p["stable_pct"] for p in verified if p.get("stable_pct") is not None]),
        "mean_time_s": _mean([p["time_s"] for p in verified]),
        "mean_time_unsat_timeout_s": _mean([p["time_s"] for p in hard]),
        "mean_domains": _mean([p["domains"] for p in verified]),
        "counts": count,
    }


def read_results(path: str | os.PathLike) -> tuple[dict | None, list[dict], bool]:
    """``(header, property lines, truncated)`` of a campaign file (missing file: no lines).

    ``truncated`` is True when the last line was cut short (no newline or not JSON), which
    is what a kill during a write leaves; it is not among the lines returned. Any other line
    that is not a JSON object is a damaged file (UserError).
    """
    path = Path(path)
    if not path.exists():
        return None, [], False
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read the results file {path}: {e}.") from e
    raw = text.split("\n")  # the part after the last newline is "" for a complete file
    header, lines, truncated = None, [], False
    for i, s in enumerate(raw):
        last = i == len(raw) - 1
        if last and s == "":
            break
        try:
            obj = json.loads(s)
            ok = isinstance(obj, dict)
        except json.JSONDecodeError:
            ok = False
        if last:  # a complete line always ends with a newline
            truncated = True
            break
        if not ok:
            if i == len(raw) - 2 and raw[-1] == "":
                # the kill landed after a partial flush that happened to end in a newline: drop it
                truncated = True
                break
            raise UserError(f"Line {i + 1} of {path} is not a JSON object; the results file is "
                            "damaged (move it away to start the campaign afresh).")
        if i == 0 and obj.get("format") == FORMAT:
            header = obj
        elif "index" in obj:
            lines.append(obj)
        else:
            raise UserError(f"Line {i + 1} of {path} is neither a campaign header nor a property "
                            "result; is it a verifriend campaign file?")
    return header, lines, truncated


# how every header line begins (json.dumps keeps the key order of the dict it writes)
_HEADER_START = json.dumps({"format": FORMAT})[:-1]


def check_results_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse (UserError) a results file a campaign must not write: a directory, an unwritable
    place, or an existing non-empty file that is not a verifriend campaign log (a campaign
    never overwrites a file it did not write). A log for other settings is refused later,
    by :func:`run_campaign`, once the model's hash is known."""
    path = check_out_file(path, what, append=True)
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror}).") from None
    if not first:
        return path  # an empty file: nothing to lose
    try:
        text = first.decode("utf-8")
        if text.endswith("\n"):
            ours = json.loads(text).get("format") == FORMAT
        else:  # one line cut short: only a header torn by a kill is ours
            ours = text.startswith(_HEADER_START) or _HEADER_START.startswith(text)
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        ours = False
    if not ours:
        raise UserError(f"{what} {path} exists and is not a verifriend campaign log; it is "
                        "left alone (choose another --out or move the file away).")
    return path


def _rewrite(path: Path, header: dict | None, lines: list[dict]) -> None:
    rows = ([header] if header is not None else []) + lines
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _append(f, obj: dict) -> None:
    f.write(json.dumps(obj) + "\n")
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def _discard_if_unused(out: Path, fresh: bool) -> Iterator[None]:
    """Create ``out``'s folder for the block; if the block fails, a log this run started that
    holds no property yet is removed, and so are the folders made for it."""
    with output_dir(out.parent, check=False):
        try:
            yield
        except BaseException:
            if fresh:
                with contextlib.suppress(OSError, UserError):
                    if not read_results(out)[1]:
                        out.unlink(missing_ok=True)
            raise


def _describe(settings: dict) -> str:
    return ", ".join(f"{k}={settings.get(k)}" for k in SETTING_KEYS if k != "model_sha256")


def run_verify(settings: CampaignSettings, *, progress: bool = True) -> CampaignSummary:
    """The `verify` job: the results file is checked before any work (a missing model is
    :func:`campaign`'s to report), then the campaign runs."""
    out = results_path(settings)
    if Path(settings.model).is_file():
        check_results_file(out, "--out" if settings.out is not None else "the results file")
    return campaign(settings, progress=progress)


def run_campaign(model_path: str | os.PathLike, *, eps: float, timeout: float,
                 per_class: int = 10, data_dir: str | os.PathLike | None = None,
                 out_jsonl: str | os.PathLike, seed: int = 0, verify: Callable | None = None,
                 progress: bool = True) -> CampaignSummary:
    """:func:`campaign` from keyword arguments (the verifier's default options)."""
    settings = CampaignSettings(Path(model_path), eps, timeout, per_class, data_dir,
                                Path(out_jsonl), seed)
    return campaign(settings, verify=verify, progress=progress)


def _settings_key(s: CampaignSettings, dataset: str) -> dict:
    """What a results file is bound to (:data:`SETTING_KEYS`); ``dataset`` the one used."""
    model = Path(s.model)
    return {"model": str(model.resolve()), "model_sha256": file_sha256(model), "eps": float(s.eps),
            "timeout": float(s.timeout), "per_class": int(s.per_class), "seed": int(s.seed),
            "dataset": dataset, "indices": None if s.indices is None else list(s.indices),
            "shard": None if s.shard is None else list(s.shard)}


def _check_header(out: Path, header: dict | None, lines: list[dict], key: dict) -> None:
    """Refuse a results file with lines but no header, or written for other settings."""
    if header is None and lines:
        raise UserError(f"{out} has results but no campaign header; it was not written by "
                        "`verifriend verify` (move it away or choose another --out).")
    if header is not None:
        old = {k: header.get(k) for k in SETTING_KEYS}
        if old != key:
            same_but_file = ({k: v for k, v in old.items() if k != "model_sha256"} ==
                             {k: v for k, v in key.items() if k != "model_sha256"})
            what = ("the checkpoint has changed since the campaign began" if same_but_file else
                    f"it holds results for {_describe(old)}, not {_describe(key)}")
            raise UserError(f"{out} was written for other settings: {what} (use another --out "
                            "or delete the file to start afresh).")


def _resume(out: Path, header: dict | None, lines: list[dict], truncated: bool,
            idx: list[int], new_header: dict) -> dict[int, dict]:
    """The properties already decided (by test index); the file rewritten without a cut
    line or duplicates, and given its header when it has none."""
    wanted = set(idx)
    done: dict[int, dict] = {}
    for ln in lines:
        if ln["index"] not in wanted:
            raise UserError(f"{out} holds test index {ln['index']}, which these settings do not "
                            "select; it was written for another data set or selection.")
        done.setdefault(ln["index"], ln)  # a duplicate would only come from a foreign edit
    if truncated or len(done) != len(lines):
        _rewrite(out, header, list(done.values()))
    if header is None:
        _rewrite(out, new_header, [])
    return done


def results_path(settings: CampaignSettings) -> Path:
    """The results file: ``--out``, else `<model stem>.verify.eps<E>.jsonl` beside the model,
    with `.shard<I>of<N>` before `.jsonl` for shard I of N (each shard has its own file)."""
    out = Path(settings.results_file)
    if settings.out is not None or settings.shard is None:
        return out
    i, n = settings.shard
    return out.with_name(f"{out.name.removesuffix('.jsonl')}.shard{i}of{n}.jsonl")


def campaign(settings: CampaignSettings, *, verify: Callable | None = None,
             progress: bool = True) -> CampaignSummary:
    """Verify (or finish verifying) the Linf robustness of ``per_class`` test images per class.

    ``verify`` has the signature of :func:`~verifriend.verify.verifier.verify_spec` (the
    default) and gets ``settings.verifier`` as its ``config``; it is called once per
    correctly classified property not yet in the results file, by
    :func:`~verifriend.app.campaign_property.property_row` in this process, or in Ray workers
    with ``settings.ray`` (:mod:`verifriend.app.campaign_ray`; ``verify`` is sent to them).
    With ``settings.shard`` = (I, N) only the properties at positions p % N == I of the
    selection are verified, into a file of their own (:func:`results_path`).
    Each decided property is appended to the file at once (flushed and fsynced), by this
    process only. Raises UserError for a file written for other settings.
    """
    s = settings
    verify = verify or verify_spec
    torch_device(s.device)  # one sentence before any work when the GPU is not there
    if s.ray is not None:
        from verifriend.app.campaign_ray import import_ray

        import_ray()  # without Ray, one sentence before any work
    loaded = load_model_file(s.model, s.dataset)
    out = check_results_file(results_path(s))
    fresh = not os.path.lexists(out)
    key = _settings_key(s, loaded.dataset)
    header, lines, truncated = read_results(out)
    _check_header(out, header, lines, key)
    with _discard_if_unused(out, fresh):  # a failed new campaign leaves nothing behind
        problem = load_problem(s, loaded)
        selected = select_properties(problem, s.per_class, s.seed, s.indices)
        idx = select_shard(selected, s.shard)
        done = _resume(out, header, lines, truncated, idx, {
            "format": FORMAT, "version": VERSION, **key, "total": len(idx),
            **({"selected": len(selected)} if s.shard else {})})
        todo = [i for i in idx if i not in done]
        with campaign_bar(progress and bool(todo), len(idx),
                          [r["status"] for r in done.values()], s.eps) as tick, \
                open(out, "a") as f:
            def record(row: dict) -> None:
                _append(f, row)
                done[row["index"]] = row
                tick(row["index"], row["status"])

            if s.ray is None:
                for i in todo:
                    record(property_row(problem, s, i, verify))
            else:
                from verifriend.app.campaign_ray import decide_on_ray

                decide_on_ray(s, key, todo, record, verify)
        ordered = [done[i] for i in idx if i in done]
        return CampaignSummary(
            model=str(s.model), dataset=loaded.dataset, eps=float(s.eps),
            timeout=float(s.timeout), per_class=s.per_class, seed=s.seed, out_jsonl=str(out),
            total=len(idx), resumed=len(idx) - len(todo), new=len(todo), summary=summarize(ordered),
            shard=None if s.shard is None else list(s.shard),
        )


def merge_results(files: Iterable[str | os.PathLike]) -> dict:
    """The statistics of a campaign run as shards (``--shard I/N``, one results file each):
    :func:`summarize` over the properties of every file, with ``total`` (the properties of
    the whole selection), ``shards`` (the [I, N] found) and ``complete`` (every shard there,
    every property decided). Files of other settings, a shard given twice or a property in
    two files are refused (UserError)."""
    files = [Path(f) for f in files]
    if not files:
        raise UserError("merge_results needs at least one results file.")
    headers, lines = [], []
    for f in files:
        header, ls, _ = read_results(f)  # a last line cut short is not counted
        if header is None:
            raise UserError(f"{f} has no campaign header; is it a verifriend campaign file?")
        headers.append(header)
        lines += ls
    same = [k for k in SETTING_KEYS if k != "shard"]
    shards = [tuple(h["shard"]) if h.get("shard") else (0, 1) for h in headers]
    for f, h, sh in zip(files, headers, shards):
        if [h.get(k) for k in same] != [headers[0].get(k) for k in same]:
            raise UserError(f"{f} holds results for {_describe(h)}, not {_describe(headers[0])}.")
        if sh[1] != shards[0][1]:
            raise UserError(f"{f} is shard {sh[0]}/{sh[1]}, {files[0]} one of {shards[0][1]}.")
    if len(set(shards)) != len(shards):
        raise UserError("a shard is given twice; give each shard's file once.")
    indices = [ln["index"] for ln in lines]
    if len(set(indices)) != len(indices):
        raise UserError("a property is in two of the files; they are not shards of one campaign.")
    total = headers[0].get("selected", headers[0]["total"])  # "selected": in a shard's file
    complete = len(shards) == shards[0][1] and len(lines) == total
    return {**summarize(lines), "total": total, "shards": sorted(list(sh) for sh in shards),
            "complete": complete}
