"""MN-BaB's Table 2 with verifriend's complete verifier: ResNet6-A and ResNet6-B on the first
100 CIFAR-10 test images, one property per image (the true label's logit above every other
on the Linf ball of radius eps in pixel space), one arm per branch-and-bound setting, printed
beside the paper's figures (eps 2/255, 600 s, one GPU).

Data: ../shared/mnbab (see its README): resnet6a.onnx, resnet6b.onnx, cifar10_test_100.csv.
The networks take normalized input, so the property's box is the pixel box
[x/255 - eps, x/255 + eps] clipped to [0, 1], then normalized per channel.

Arms (``VerifierConfig.bab`` options; an arm whose option this verifriend lacks is skipped
with a message):

    babsr          branching babsr, no multi-neuron constraints (beta-CROWN)
    babsr+mnc      branching babsr, multi-neuron constraints
    acs+mnc        branching acs, multi-neuron constraints
    acs+cab+mnc    branching acs, cost-adjusted branching, multi-neuron constraints
    fsb            branching fsb
    babsr+cab, babsr+cab+mnc   (the paper's other rows; not run by default)

Every property runs the whole ``verify_spec`` (bounds, attack, alpha-CROWN, BaB) per arm.
``--skip-decided`` saves time: once an arm decided an image before branch and bound (proved by
IBP/CROWN/alpha-CROWN, or falsified by the attack), the later arms of that image copy its
verdict (``copied: true``, ``copied_from``) instead of running; a proof is copied from an arm
without multi-neuron constraints to every arm, from an arm with them only to arms with them
(in case the root bounds use them), a counterexample to every arm.

Each property is appended to the JSONL file at once; a rerun skips what is there (same net,
eps, arm, image, timeout and extra options). Images are the outer loop and arms the inner
one, so an interrupted run has given every arm the same images.

Every arm sets ``recompute_intermediate`` (MN-BaB recomputes the layers after a split; CAB
prices exactly that). ``--option KEY=VALUE`` sets any VerifierConfig option for all arms.

    python benchmarks/mnbab_table.py --nets resnet6a resnet6b --eps 1/255 \\
        --arms babsr babsr+mnc acs+mnc acs+cab+mnc fsb --timeout 180 --limit 5 \\
        --skip-decided --option alpha_intermediate=false --option attack_share=0.03 \\
        --jsonl runs/mnbab.jsonl
    python benchmarks/mnbab_table.py --jsonl runs/mnbab.jsonl --eps 1/255 --timeout 180 \\
        --limit 5 --option alpha_intermediate=false --option attack_share=0.03 --table-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import statistics
import sys
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2] / "shared" / "mnbab"
NETS = {"resnet6a": "resnet6a.onnx", "resnet6b": "resnet6b.onnx"}
CSV = "cifar10_test_100.csv"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2471, 0.2435, 0.2616)
# clean accuracy on the 100 images, from the data folder's README (and the paper)
ACCURACY = {"resnet6a": 84, "resnet6b": 79}
# the arms: BabConfig options; the babsr arm is the reference of the subproblem ratios
ARMS = {
    "babsr": {"branching": "babsr", "mnc": False, "cab": False},
    "babsr+cab": {"branching": "babsr", "mnc": False, "cab": True},
    "babsr+mnc": {"branching": "babsr", "mnc": True, "cab": False},
    "babsr+cab+mnc": {"branching": "babsr", "mnc": True, "cab": True},
    "acs+mnc": {"branching": "acs", "mnc": True, "cab": False},
    "acs+cab+mnc": {"branching": "acs", "mnc": True, "cab": True},
    "fsb": {"branching": "fsb", "mnc": False, "cab": False},
}
# every arm's BabConfig also gets these (MN-BaB recomputes the bounds of the layers after a
# split, and CAB prices exactly that); --option bab.KEY=VALUE overrides them
COMMON = {"recompute_intermediate": True}
DEFAULT_ARMS = ["babsr", "babsr+mnc", "acs+mnc", "acs+cab+mnc", "fsb"]
# Table 2 (eps 2/255, 600 s, RTX 2080Ti): verified % and mean seconds per net
PAPER = {
    "resnet6a": {"deeppoly": (30, 0.4), "babsr": (42, 253.4), "babsr+cab": (43, 247.3),
                 "babsr+mnc": (45, 225.0), "babsr+cab+mnc": (47, 209.6),
                 "acs+mnc": (50, 193.4), "acs+cab+mnc": (53, 177.9), "upper": 75},
    "resnet6b": {"deeppoly": (58, 0.7), "babsr": (64, 57.1), "babsr+cab": (61, 76.6),
                 "babsr+mnc": (64, 57.5), "babsr+cab+mnc": (63, 68.1),
                 "acs+mnc": (65, 48.1), "acs+cab+mnc": (66, 46.1), "upper": 71},
}
PAPER_RATIO = {"resnet6a": {"babsr+mnc": 137, "acs": 6.9}, "resnet6b": {"babsr+mnc": 10, "acs": 4.5}}
MISCLASSIFIED = "misclassified"
DECIDED = ("sat", "unsat")


class Fail(Exception):
    """A problem with the inputs: one sentence, exit code 2."""


# ------------------------------------------------------------------ data and networks


def parse_eps(text: str) -> Fraction:
    try:
        eps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"eps must be a number or a fraction like 2/255, "
                                         f"got '{text}'") from None
    if eps < 0:
        raise argparse.ArgumentTypeError(f"eps must be non-negative, got '{text}'")
    return eps


def load_images(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) float64 pixels in [0, 1] (channel-first) and (N,) labels."""
    path = folder / CSV
    if not path.is_file():
        raise Fail(f"{path} does not exist (the MN-BaB data folder needs {CSV}).")
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise Fail(f"{path} is not a csv of numbers ({e}).") from None
    if raw.shape[1] != 1 + 32 * 32 * 3:
        raise Fail(f"{path} has {raw.shape[1]} columns a line, expected 3073 "
                   "(label and 32x32x3 pixels).")
    labels = raw[:, 0].astype(np.int64)
    # height-width-channel (RGB interleaved) -> channel-height-width
    x = raw[:, 1:].reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2) / 255.0
    return x, labels


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Pixels (..., 3, 32, 32) in [0, 1] -> the networks' input, per channel."""
    mean = torch.tensor(MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


def load_net(path: Path):
    """The ONNX network as verifriend's graph (and a note, empty: kept for the callers)."""
    from verifriend.bounds.frontends.onnx import load_onnx

    if not path.is_file():
        raise Fail(f"{path} does not exist.")
    return load_onnx(path), ""


def predictions(graph, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        xs = normalize(torch.tensor(x)).float()
        return graph(xs).argmax(1).numpy()


def onnxruntime_predictions(path: Path, x: np.ndarray) -> np.ndarray | None:
    """The same predictions from onnxruntime (a check of the import), None without it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    xs = normalize(torch.tensor(x)).float().numpy()
    return np.array([int(sess.run(None, {name: xs[i:i + 1]})[0].argmax()) for i in range(len(xs))])


def make_spec(x: np.ndarray, label: int, eps: Fraction):
    """The robustness property of one image in the network's (normalized) input space:
    the package's Linf spec in pixel space (clipped to [0, 1]), its box normalized."""
    from verifriend.specs.spec import Spec

    flat = torch.tensor(x, dtype=torch.float64).flatten()
    pix = Spec.linf_robustness(flat, label, float(eps), 10, 0.0, 1.0)
    lo = normalize(pix.lower.view(3, 32, 32)).flatten()
    hi = normalize(pix.upper.view(3, 32, 32)).flatten()
    return dataclasses.replace(pix, lower=lo, upper=hi,
                               source=f"cifar10 label {label}, eps {eps} (pixels), normalized")


# ------------------------------------------------------------------ arms


def arm_config(arm: str, extra: dict):
    """(VerifierConfig, None) or (None, why the arm cannot run here)."""
    from verifriend.errors import UserError
    from verifriend.options import from_mapping
    from verifriend.verify.bab import BabConfig
    from verifriend.verify.branching import BRANCHING
    from verifriend.verify.verifier import VerifierConfig

    names = {f.name for f in dataclasses.fields(BabConfig)}
    bab = {}
    for key, value in {**COMMON, **ARMS[arm]}.items():
        if key not in names:
            if value:  # a False option that does not exist is simply absent
                return None, f"this verifriend has no BabConfig field '{key}'"
            continue
        bab[key] = value
    if bab["branching"] not in BRANCHING:
        return None, (f"this verifriend has no branching '{bab['branching']}' "
                      f"(it has {', '.join(BRANCHING)})")
    data = nested(extra)
    data["bab"] = {**bab, **data.get("bab", {})}
    for key in ARMS[arm]:  # the arm's own options are what the arm is
        if key in bab:
            data["bab"][key] = bab[key]
    try:
        return from_mapping(VerifierConfig, data), None
    except UserError as e:  # a combination this verifriend refuses (e.g. cab without recompute)
        return None, str(e).rstrip(".")


def nested(extra: dict) -> dict:
    """Dotted keys (``bab.batch``) -> the nested mapping ``from_mapping`` reads."""
    data: dict = {}
    for key, value in extra.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def check_options(extra: dict) -> None:
    """Fail on an --option that names no VerifierConfig option or has a bad value."""
    from verifriend.errors import UserError
    from verifriend.options import from_mapping
    from verifriend.verify.verifier import VerifierConfig

    try:
        from_mapping(VerifierConfig, nested(extra))
    except UserError as e:
        raise Fail(f"bad --option: {e}") from None


def parse_options(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise Fail(f"--option wants KEY=VALUE (e.g. bab.batch=64), got '{item}'.")
        key, value = item.split("=", 1)
        try:  # numbers and true/false as JSON reads them, anything else as text
            out[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def options_key(extra: dict) -> str:
    return ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(extra.items()))


def copyable(src_arm: str, dst_arm: str, rec: dict) -> bool:
    """Whether ``rec`` (a verdict of ``src_arm``) holds for ``dst_arm`` without running it."""
    if rec.get("status") not in DECIDED or rec.get("stage") == "bab":
        return False
    if rec["status"] == "sat":
        return True  # a float64-checked counterexample is one for every arm
    return not ARMS[src_arm]["mnc"] or ARMS[dst_arm]["mnc"]


# ------------------------------------------------------------------ the run


def key_of(r: dict) -> tuple:
    return (r["net"], r["eps"], r["arm"], r["image"], float(r["timeout"]), r.get("options", ""))


def load_jsonl(path: Path | None) -> dict[tuple, dict]:
    done: dict[tuple, dict] = {}
    if path is None or not path.is_file():
        return done
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run: that property runs again
        if r.get("status") != "error":  # errors run again: the bug may be fixed
            done[key_of(r)] = r
    return done


class Marks:
    """The verifier's progress lines, timed: when the attack ended, when alpha-CROWN ended,
    when the multi-neuron root ended, when BaB first and last reported (seconds from the
    call), and the worst-clause margin each reached (alpha_margin, mnc_margin, bab_margin:
    the last one BaB reported). A property that times out while the hull is built has no mnc_seconds; its
    alpha_end and time_s bound that stage's time."""

    def __init__(self, verbose: bool):
        self.t0 = time.monotonic()
        self.marks: dict[str, float] = {}
        self.verbose = verbose

    def __call__(self, msg: str) -> None:
        t = round(time.monotonic() - self.t0, 3)
        found = re.search(r"margin (\S+)$", msg)
        margin = float(found.group(1)) if found else None
        if "multi-neuron" in msg:
            self.marks.setdefault("mnc_end", t)
            if margin is not None:
                self.marks["mnc_margin"] = margin
        elif "proved by" in msg and "alpha" not in msg:
            self.marks.setdefault("bounds_proved", t)
        elif msg.startswith("attack found nothing"):
            self.marks.setdefault("attack_end", t)
        elif "alpha-CROWN" in msg:
            self.marks.setdefault("alpha_end", t)
            self.marks["alpha_margin"] = margin
        elif "domains" in msg:
            self.marks.setdefault("bab_first", t)
            self.marks["bab_last"] = t
            self.marks["bab_margin"] = margin
        if self.verbose:
            print(f"    {t:8.2f} s  {msg}", file=sys.stderr, flush=True)


def run_property(graph, spec, cfg, timeout: float, verbose: bool) -> dict:
    from verifriend.verify.verifier import verify_spec

    marks = Marks(verbose)
    cpu = time.process_time()
    v = verify_spec(graph, [spec], tuple(graph.input_shape), timeout=timeout, config=cfg,
                    progress=marks)
    rec = {"status": v.status, "stage": v.stage, "time_s": round(float(v.time_s), 3),
           "cpu_s": round(time.process_time() - cpu, 3),
           "domains": int(v.domains), "mnc_seconds": v.details.get("mnc_seconds"),
           "mnc_rows": v.details.get("mnc_rows"), "marks": marks.marks}
    if "late" in v.details:
        rec["late"] = v.details["late"]
    return rec


def say(rec: dict, note: str = "") -> None:
    cpu = f" (cpu {rec['cpu_s']:.0f} s)" if rec.get("cpu_s") is not None else ""
    print(f"{rec['net']} {rec['eps']} {rec['arm']} #{rec['image']} {rec['status']} "
          f"{rec['time_s']:.1f} s{cpu} {rec['domains']} domains [{rec['stage'] or '-'}]"
          f"{' copied from ' + rec['copied_from'] if rec.get('copied') else ''}{note}",
          file=sys.stderr, flush=True)


def run(args, nets: dict, x: np.ndarray, labels: np.ndarray, arms: dict, extra: dict,
        done: dict) -> None:
    from verifriend.options import to_mapping

    opts = options_key(extra)
    images = range(min(args.limit, len(labels)))
    for net, (graph, pred) in nets.items():
        for eps in args.eps:
            for i in images:
                here: dict[str, dict] = {}  # this image's records so far, by arm
                for arm, cfg in arms.items():
                    base = {"net": net, "eps": str(eps), "eps_value": float(eps), "arm": arm,
                            "image": i, "label": int(labels[i]), "predicted": int(pred[i]),
                            "timeout": float(args.timeout), "options": opts}
                    old = done.get(key_of(base))
                    if old is not None:
                        here[arm] = old
                        continue
                    if pred[i] != labels[i]:
                        rec = {**base, "status": MISCLASSIFIED, "stage": "", "time_s": 0.0,
                               "domains": 0, "mnc_seconds": None, "mnc_rows": None,
                               "copied": False}
                    else:
                        src = next((a for a, r in here.items() if copyable(a, arm, r)), None) \
                            if args.skip_decided else None
                        if src is not None:
                            r = here[src]
                            rec = {**base, "status": r["status"], "stage": r["stage"],
                                   "time_s": r["time_s"], "domains": r["domains"],
                                   "mnc_seconds": None, "mnc_rows": None, "copied": True,
                                   "copied_from": src}
                        else:
                            spec = make_spec(x[i], int(labels[i]), eps)
                            try:
                                got = run_property(graph, spec, cfg, args.timeout, args.verbose)
                            except KeyboardInterrupt:
                                raise
                            except Exception as e:  # noqa: BLE001 - logged, the run goes on
                                if args.device != "cpu":
                                    raise Fail(f"verify_spec failed on {args.device} ({e}); "
                                               "run with --device cpu.") from None
                                traceback.print_exc()
                                got = {"status": "error", "stage": "", "time_s": 0.0,
                                       "domains": 0, "mnc_seconds": None, "mnc_rows": None,
                                       "error": f"{type(e).__name__}: {e}"}
                            rec = {**base, **got, "copied": False,
                                   "bab": to_mapping(cfg.bab)}
                    here[arm] = rec
                    done[key_of(rec)] = rec
                    if args.jsonl:
                        with args.jsonl.open("a") as f:
                            f.write(json.dumps(rec) + "\n")
                    say(rec)


# ------------------------------------------------------------------ the table


def _fmt(v, spec=".1f", none="-"):
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(records: list[dict], nets: list[str], eps_list: list[Fraction], arms: list[str],
          timeout: float, limit: int, skipped: dict[str, str]) -> None:
    print(f"\nMN-BaB Table 2 with verifriend: first {limit} CIFAR-10 test images, "
          f"{timeout:g} s per property (bounds, attack, alpha-CROWN, BaB), "
          f"{torch.get_num_threads()} CPU threads")
    print("verified %: proved properties over the images (misclassified ones count as not "
          "verified); mean s: over the correctly classified images, an undecided property at "
          "the full timeout (the paper's convention); ratio: median (mean) of babsr's "
          "subproblems / the arm's over images both proved in BaB; paper: eps 2/255, 600 s, "
          "one GPU.\n")
    for net in nets:
        for eps in eps_list:
            mine = [r for r in records if r["net"] == net and r["eps"] == str(eps)
                    and float(r["timeout"]) == timeout and r["image"] < limit]
            if not mine:
                continue
            by_arm = {a: {r["image"]: r for r in mine if r["arm"] == a} for a in arms}
            _one_table(net, eps, by_arm, arms, timeout, skipped)


def _one_table(net: str, eps: Fraction, by_arm: dict, arms: list[str], timeout: float,
               skipped: dict[str, str]) -> None:
    paper = PAPER.get(net, {}) if eps == Fraction(2, 255) else {}
    ref = by_arm.get("babsr", {})
    print(f"### {net}, eps {eps}\n")
    print("| arm | images | verified % | falsified | undecided | errors | mean s | "
          "ratio vs babsr (n) | arm only / babsr only | paper ver % / mean s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for arm in arms:
        rs = by_arm.get(arm, {})
        if not rs:
            why = skipped.get(arm, "no records")
            print(f"| {arm} | 0 | - | - | - | - | - | - | - | {_paper(paper, arm)} |  ({why})")
            continue
        n = len(rs)
        props = [r for r in rs.values() if r["status"] != MISCLASSIFIED]
        ver = sum(r["status"] == "unsat" for r in props)
        fal = sum(r["status"] == "sat" for r in props)
        err = sum(r["status"] == "error" for r in props)
        und = len(props) - ver - fal - err
        times = [timeout if r["status"] == "timeout" else float(r["time_s"]) for r in props]
        mean = sum(times) / len(times) if times else float("nan")
        ratio = cmp = "-"
        if arm != "babsr" and ref:
            common = sorted(set(rs) & set(ref))
            both = [i for i in common if _bab_proof(rs[i]) and _bab_proof(ref[i])]
            rat = [ref[i]["domains"] / rs[i]["domains"] for i in both]
            if rat:
                ratio = f"{statistics.median(rat):.2f} ({sum(rat) / len(rat):.2f}) ({len(rat)})"
            only = sum(rs[i]["status"] == "unsat" and ref[i]["status"] != "unsat" for i in common)
            lost = sum(rs[i]["status"] != "unsat" and ref[i]["status"] == "unsat" for i in common)
            cmp = f"{only} / {lost}"
        print(f"| {arm} | {n} | {100 * ver / n:.0f} | {fal} | {und} | {err} | {mean:.1f} | "
              f"{ratio} | {cmp} | {_paper(paper, arm)} |")
    print()
    for arm in arms:
        rs = [r for r in by_arm.get(arm, {}).values() if not r.get("copied")]
        hull = [r["mnc_seconds"] for r in rs if r.get("mnc_seconds") is not None]
        cut = sum(r["status"] == "timeout" and r["stage"] == "mnc" for r in rs)
        if cut:
            print(f"{arm}: {cut} properties timed out in the multi-neuron root (hull and its "
                  "optimization), before any branching")
        if hull:
            rows = [r["mnc_rows"] for r in rs if r.get("mnc_rows") is not None]
            total = sum(float(r["time_s"]) for r in rs if r.get("mnc_seconds") is not None)
            print(f"{arm}: hull construction {sum(hull) / len(hull):.2f} s a property "
                  f"(mean over {len(hull)} run here; {100 * sum(hull) / max(total, 1e-9):.0f} % "
                  f"of their time), {_fmt(sum(rows) / len(rows) if rows else None, '.0f')} "
                  "rows a property")
    for arm in arms:
        rs = by_arm.get(arm, {})
        last = {i: m for i, r in rs.items() if r["status"] in ("timeout", "unknown")
                and not r.get("copied") and (m := final_margin(r)) is not None}
        if not last:
            continue
        line = (f"{arm}: undecided properties' last margin (worst clause, < 0): median "
                f"{statistics.median(last.values()):.3g} over {len(last)}")
        if arm != "babsr" and ref:
            both = [i for i in last if i in ref and final_margin(ref[i]) is not None
                    and ref[i]["status"] in ("timeout", "unknown")]
            if both:
                better = sum(last[i] > final_margin(ref[i]) for i in both)
                line += f"; above babsr's on {better} of {len(both)}"
        print(line)
    ref_any = next((by_arm[a] for a in arms if by_arm.get(a)), {})
    if ref_any:
        props = [r for r in ref_any.values() if r["status"] != MISCLASSIFIED]
        n = len(ref_any)
        pre = sum(r["status"] == "unsat" and r["stage"] != "bab" for r in props)
        fal = {i for a in arms for i, r in by_arm.get(a, {}).items() if r["status"] == "sat"}
        pd = paper.get("deeppoly")
        up = paper.get("upper")
        print(f"correctly classified: {len(props)} of {n} (README: {ACCURACY.get(net, '?')} of "
              f"100); proved before BaB (bounds, alpha-CROWN): {pre} "
              f"({100 * pre / n:.0f} %{f'; paper DeepPoly only: {pd[0]} %' if pd else ''}); "
              f"not falsified by any arm: {len(props) - len(fal)} "
              f"({100 * (len(props) - len(fal)) / n:.0f} %{f'; paper upper bound {up} %' if up else ''})")
        copied = sum(r.get("copied", False) for a in arms for r in by_arm.get(a, {}).values())
        if copied:
            print(f"{copied} records copied from an earlier arm's verdict before BaB "
                  "(--skip-decided)")
    if paper:
        pr = PAPER_RATIO.get(net, {})
        print(f"paper subproblem reductions: multi-neuron constraints {pr.get('babsr+mnc')}x, "
              f"ACS over BaBSR {pr.get('acs')}x (means over properties)")
    print()


def final_margin(r: dict) -> float | None:
    """The last worst-clause margin a property's run reported (BaB, else the multi-neuron
    root, else alpha-CROWN); None when none was reported."""
    marks = r.get("marks") or {}
    for key in ("bab_margin", "mnc_margin", "alpha_margin"):
        if marks.get(key) is not None:
            return float(marks[key])
    return None


def _bab_proof(r: dict) -> bool:
    return r["status"] == "unsat" and r["stage"] == "bab" and r["domains"] > 0


def _paper(paper: dict, arm: str) -> str:
    p = paper.get(arm)
    return f"{p[0]} / {p[1]}" if p else "-"


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT, help="the MN-BaB data folder")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--eps", nargs="+", type=parse_eps, default=[Fraction(2, 255)],
                    help="radii in pixel space ([0, 1] scale), e.g. 2/255 1/255")
    ap.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per property")
    ap.add_argument("--limit", type=int, default=100, help="first N images")
    ap.add_argument("--jsonl", type=Path, default=None,
                    help="append one JSON line per property; skip properties already in it")
    ap.add_argument("--table-only", action="store_true",
                    help="print the table from --jsonl, compute nothing")
    ap.add_argument("--skip-decided", action="store_true",
                    help="copy a verdict decided before branch and bound to the later arms "
                         "of the same image instead of running them")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a VerifierConfig option for every arm (dotted, e.g. bab.batch=64); "
                         "part of the resume key")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--verbose", action="store_true", help="the verifier's progress lines")
    args = ap.parse_args(argv)
    if not args.timeout > 0 or args.limit < 1:
        ap.error("--timeout must be positive and --limit at least 1")
    if args.table_only and args.jsonl is None:
        ap.error("--table-only reads --jsonl")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _main(args)
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    from verifriend.errors import UserError

    if not args.table_only and not args.data.is_dir():
        raise Fail(f"the MN-BaB data folder {args.data} does not exist (pass --data).")
    extra = parse_options(args.option)
    check_options(extra)
    arms, skipped = {}, {}
    for arm in args.arms:
        cfg, why = arm_config(arm, extra)
        if cfg is None:
            skipped[arm] = why
            print(f"arm {arm} skipped: {why}.", file=sys.stderr)
        else:
            arms[arm] = cfg
    done = load_jsonl(args.jsonl)
    if not args.table_only:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise Fail("--device cuda was asked for, but PyTorch sees no CUDA GPU here.")
        x, labels = load_images(args.data)
        nets = {}
        for net in args.nets:
            try:
                graph, note = load_net(args.data / NETS[net])
            except UserError as e:
                raise Fail(f"{NETS[net]} cannot be imported: {e}") from None
            if note:
                print(note, file=sys.stderr)
            pred = predictions(graph, x)
            ok = int((pred == labels).sum())
            line = f"{net}: {ok}/{len(labels)} correct (README: {ACCURACY[net]}/100)"
            ort_pred = onnxruntime_predictions(args.data / NETS[net], x)
            if ort_pred is not None:
                line += f"; onnxruntime disagrees on {int((ort_pred != pred).sum())} images"
            print(line, file=sys.stderr)
            if len(labels) == 100 and ok != ACCURACY[net]:
                print(f"WARNING: {net}'s clean accuracy differs from the README's; check the "
                      "image order and normalization.", file=sys.stderr)
            nets[net] = (graph.to(device=args.device), pred)
        if args.jsonl:
            args.jsonl.parent.mkdir(parents=True, exist_ok=True)
        try:
            run(args, nets, x, labels, arms, extra, done)
        except KeyboardInterrupt:
            print("interrupted; the table shows what is done", file=sys.stderr)
    opts = options_key(extra)
    records = [r for r in done.values() if r.get("options", "") == opts]
    table(records, args.nets, args.eps, args.arms, float(args.timeout), args.limit, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
