"""Side by side: verifriend's IBP / CROWN / alpha-CROWN against auto_LiRPA's, same models, same boxes.

For each network the script bounds the robustness spec of B inputs with both tools and
prints one table row per (network, method): mean lower bound of each tool, the largest
difference of lower bounds relative to their scale, how many of our lower bounds are
looser than auto_LiRPA's, the median times and their ratio.

Every lower bound is also checked against an attack (random box corners, then signed
gradient steps per spec row): a bound above a value the network really reaches is unsound
and is counted in the 'unsound' column as ours/theirs.

auto_LiRPA (0.7.1, default ``conv_mode="patches"``) gets the same function with the leading
Normalize written as a 1x1 convolution (see :func:`lirpa_model`): on the model as built, its
patches mode gives wrong first-layer bounds (some above the true minimum, checked at a point
of the box) for a padded conv after a non-zero-mean Sub/Div, and crashes on 3 channels. The
small nets also get rows against auto_LiRPA on the model as built (``raw-patches``,
``raw-matrix``) to show that.

auto_LiRPA is imported only from the folder named by ``$AUTOLIRPA_PATH`` (see
benchmarks/README.md). Without it (unset, or the import fails) the script says why and
compares our CROWN and alpha-CROWN bounds on ``fc_2x100`` with the HiGHS LP over the
triangle relaxation built on the same CROWN intermediate bounds: CROWN must not exceed
it, and alpha-CROWN (final slopes only) approaches it, since optimal per-neuron slopes
reach the LP optimum.

Usage::

    AUTOLIRPA_PATH=/tmp/auto_LiRPA python benchmarks/bounds_vs_autolirpa.py --batch 8 --runs 3
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from verifriend.bounds import compute_bounds, robustness_spec
from verifriend.bounds.crown import crown_intervals, spec_crown
from verifriend.bounds.frontends.torch import from_module
from verifriend.data import load_dataset
from verifriend.errors import UserError
from verifriend.models import Normalize, build_model, load_model


@dataclass
class Case:
    """One benchmark network: a model, its inputs, their boxes and the spec."""

    name: str
    model: torch.nn.Module
    x_lower: torch.Tensor
    x_upper: torch.Tensor
    x: torch.Tensor
    C: torch.Tensor
    eps: float


# Random-init nets have almost every neuron unstable at the usual radii; these radii
# (pixel space) give a mix of stable and unstable neurons, closer to trained nets.
NETWORKS = (
    ("fc_2x100", "fc_2x100", "mnist", 0.02),
    ("cnn_4layer", "cnn_4layer", "mnist", 0.01),
    ("conv_big", "conv_big", "mnist", 0.005),
    ("conv_big_cifar", "conv_big", "cifar10", 2 / 255),
)
# where auto_LiRPA runs on the model with its Normalize layer as is: on 3 channels it
# crashes (0.7.1, patches mode), and its matrix mode runs out of memory on conv_big
RAW_NORMALIZE_OK = ("fc_2x100", "cnn_4layer")


def _images(dataset: str, batch: int, seed: int, data_dir: str | None):
    """B test images, the data set's mean/std and where they came from."""
    name = "mnist-embedded" if dataset == "mnist" else dataset
    try:
        ds = load_dataset(name, data_dir)
    except (UserError, OSError) as e:  # DataNotFoundError is a UserError
        if dataset != "cifar10":
            raise
        print(f"  {dataset}: not found ({e}); using random images in [0, 1]")
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, 3, 32, 32, generator=g),
                (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    return ds.x_test[:batch].clone(), ds.mean, ds.std


def _case(name, model, x, eps, device) -> Case:
    model = model.to(device).eval()
    x = x.to(device)
    with torch.no_grad():
        logits = model(x)
    # the spec is robustness of the model's own prediction, so it is meaningful for
    # untrained weights too
    C = robustness_spec(logits.argmax(1), logits.shape[1]).to(device)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    return Case(name, model, lo, hi, x, C, eps)


def build_cases(args) -> list[Case]:
    """The networks to run: the zoo list (random init, fixed seed) or one checkpoint."""
    if args.checkpoint:
        model, meta = load_model(args.checkpoint)
        ds = meta.get("dataset", "mnist-embedded")
        x, _, _ = _images("mnist" if "mnist" in ds else ds, args.batch, args.seed, args.data_dir)
        eps = args.eps if args.eps is not None else 0.02
        return [_case(f"{meta.get('arch', 'model')} (ckpt)", model, x, eps, args.device)]
    cases = []
    for name, arch, dataset, eps in NETWORKS:
        if args.nets and name not in args.nets:
            continue
        x, mean, std = _images(dataset, args.batch, args.seed, args.data_dir)
        torch.manual_seed(args.seed)
        model = build_model(arch, tuple(x.shape[1:]), 10, mean, std)
        cases.append(_case(name, model, x, args.eps if args.eps is not None else eps,
                           args.device))
    return cases


def timed(fn, runs: int, device: str, warmup: bool = True):
    """(result of the last call, median seconds) over ``runs`` calls after one warm-up."""
    def once():
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    if warmup:
        once()
    times = []
    for _ in range(runs):
        out, dt = once()
        times.append(dt)
    return out, statistics.median(times)


def timed_pair(fa, fb, runs: int, device: str):
    """Like :func:`timed` for two functions, alternating their runs so that load from
    elsewhere on the machine hits both alike: (out_a, median_a, out_b, median_b)."""
    fa(), fb()
    ta, tb, out_a, out_b = [], [], None, None
    for _ in range(runs):
        out_a, dt = timed(fa, 1, device, warmup=False)
        ta.append(dt)
        out_b, dt = timed(fb, 1, device, warmup=False)
        tb.append(dt)
    return out_a, statistics.median(ta), out_b, statistics.median(tb)


def compare(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, int, int]:
    """(max |diff| / max |theirs|, #entries where ours is looser, #where ours is tighter).

    Relative to the scale of the bounds rather than entrywise, because single lower
    bounds near zero make entrywise ratios meaningless.
    """
    ours, theirs = ours.double().cpu(), theirs.double().cpu()
    diff = ours - theirs
    tol = 1e-5 * (1 + theirs.abs())
    rel = float(diff.abs().max() / theirs.abs().max().clamp_min(1e-12))
    return rel, int((diff < -tol).sum()), int((diff > tol).sum())


def lirpa_model(case: Case) -> torch.nn.Sequential:
    """The same function for auto_LiRPA, with the leading Normalize as a 1x1 convolution.

    auto_LiRPA 0.7.1 (patches mode) mis-bounds a Sub/Div normalization followed by a padded
    conv and crashes on a per-channel one; it also mis-bounds grouped convs, so the 1x1 conv
    is a dense one with a diagonal weight. The outputs are checked to match.
    """
    model = case.model
    if not isinstance(model, torch.nn.Sequential) or not isinstance(model[0], Normalize):
        return model
    norm = model[0]
    c = case.x.shape[1]
    mean, std = norm.mean.expand(c), norm.std.expand(c)
    if case.x.dim() != 4:  # flat inputs: the Sub/Div form works there
        return model
    conv = torch.nn.Conv2d(c, c, 1).to(case.x.device)
    with torch.no_grad():
        conv.weight.copy_(torch.diag(1 / std).view(c, c, 1, 1))
        conv.bias.copy_(-mean / std)
        out = torch.nn.Sequential(conv, *list(model)[1:]).eval()
        if not torch.allclose(out(case.x), model(case.x), rtol=1e-4, atol=1e-4):
            raise RuntimeError("the 1x1-conv normalization does not reproduce the model")
    return out


def _alpha_crown_fn():
    """verifriend's alpha-CROWN entry point, or None while it does not exist."""
    try:
        return importlib.import_module("verifriend.bounds.alpha_crown").alpha_crown
    except (ImportError, AttributeError):
        return None


def _call_alpha(fn, graph, case, iterations: int, lr: float):
    # the signature is still settling; pass the budget under whichever names it takes
    names = inspect.signature(fn).parameters
    kw = {k: v for k, v in (("iterations", iterations), ("iteration", iterations),
                            ("steps", iterations), ("lr", lr), ("lr_alpha", lr)) if k in names}
    out = fn(graph, case.x_lower, case.x_upper, case.C, **kw)
    if isinstance(out, tuple):  # (Bounds, optimizer state)
        out = out[0]
    return out.lower if hasattr(out, "lower") else out


def _autolirpa():
    """(auto_LiRPA module from ``$AUTOLIRPA_PATH`` or None, why it is missing)."""
    path = os.environ.get("AUTOLIRPA_PATH")
    if not path:
        return None, "AUTOLIRPA_PATH is not set (see benchmarks/README.md)"
    sys.path.insert(0, path)
    try:  # imported late on purpose: guarded by the environment variable
        import auto_LiRPA
        import auto_LiRPA.perturbations
    except Exception as exc:  # noqa: BLE001 -- any failure of a foreign package: fall back
        return None, f"auto_LiRPA from {path} does not import ({type(exc).__name__}: {exc})"
    return auto_LiRPA, ""


def run_lp_reference(case: Case, args):
    """Yield rows comparing our CROWN / alpha-CROWN with the triangle-relaxation LP (HiGHS)."""
    from verifriend.bounds.alpha_crown import alpha_crown
    from verifriend.verify.milp import milp_bounds

    graph = from_module(case.model, tuple(case.x.shape[1:]))
    lo, hi, C = case.x_lower, case.x_upper, case.C
    reached = attack_minima(case)
    lp, t_lp = timed(lambda: milp_bounds(graph, lo, hi, C, relax=True).float(), 1, args.device)
    with torch.no_grad():
        ob, t_o = timed(lambda: spec_crown(graph, crown_intervals(graph, lo, hi), C)[0],
                        args.runs, args.device)
    yield {"net": case.name, "method": "crown vs LP", "ours": ob, "theirs": lp,
           "t_ours": t_o, "t_theirs": t_lp, "reached": reached}
    if args.skip_alpha:
        return
    oa, t_oa = timed(lambda: alpha_crown(graph, lo, hi, C, iterations=args.iterations,
                                         lr=args.lr_alpha, intermediate=False)[0].lower,
                     max(1, args.runs // 2), args.device, False)
    yield {"net": case.name, "method": "alpha (final) vs LP", "ours": oa.detach(),
           "theirs": lp, "t_ours": t_oa, "t_theirs": t_lp, "reached": reached}


def attack_minima(case: Case, steps: int = 20, corners: int = 16) -> torch.Tensor:
    """(B, m) values of each spec row that the network really reaches in the box (upper
    estimates of the true minima): the best of random corners and signed gradient descent."""
    lo, hi, C, model = case.x_lower, case.x_upper, case.C, case.model
    B, m = C.shape[:2]
    lo_r, hi_r = (t.repeat_interleave(m, 0) for t in (lo, hi))
    rows = C.reshape(B * m, -1)
    best = torch.full((B * m,), float("inf"), device=lo.device)
    with torch.no_grad():
        for _ in range(corners):
            x = torch.where(torch.rand_like(lo_r) < 0.5, lo_r, hi_r)
            best = torch.minimum(best, (model(x) * rows).sum(1))
    x = ((lo_r + hi_r) / 2).requires_grad_(True)
    step = (hi_r - lo_r) / 4
    for _ in range(steps):
        val = (model(x) * rows).sum(1)
        best = torch.minimum(best, val.detach())
        (g,) = torch.autograd.grad(val.sum(), x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x - step * g.sign(), lo_r), hi_r).requires_grad_(True)
    return best.view(B, m)


def run_case(case: Case, lirpa, args):
    """Yield the table rows of one network as they are measured."""
    graph = from_module(case.model, tuple(case.x.shape[1:]))
    lo, hi, C = case.x_lower, case.x_upper, case.C
    ptb = lirpa.perturbations.PerturbationLpNorm(x_L=lo, x_U=hi)
    bx = lirpa.BoundedTensor(case.x, ptb)
    reached = attack_minima(case)

    def module(mode, model=None):
        return lirpa.BoundedModule(
            model if model is not None else lirpa_model(case), torch.empty_like(case.x),
            device=args.device,
            bound_opts={"conv_mode": mode, "verbosity": 0,
                        "optimize_bound_args": {"iteration": args.iterations,
                                                "lr_alpha": args.lr_alpha}})

    def theirs(bm, method):
        upper = method != "alpha-CROWN"  # alpha optimizes one side; we compare lower bounds
        with torch.no_grad() if upper else torch.enable_grad():
            return bm.compute_bounds(x=(bx,), C=C, method=method, bound_upper=upper)[0].detach()

    def row(method, ours, t_ours, their, t_theirs):
        return {"net": case.name, "method": method, "ours": ours, "theirs": their,
                "t_ours": t_ours, "t_theirs": t_theirs, "reached": reached}

    bm = module("patches")
    for ours_m, their_m in (("ibp", "IBP"), ("crown", "CROWN")):
        with torch.no_grad():
            ob, t_o, tl, t_t = timed_pair(
                lambda m=ours_m: compute_bounds(graph, lo, hi, C, m),
                lambda m=their_m: theirs(bm, m), args.runs, args.device)
        yield row(ours_m, ob.lower, t_o, tl, t_t)
        if ours_m == "crown":
            stable = torch.cat([((a >= 0) | (b <= 0)).flatten(1) for a, b in ob.pre_relu], 1)
            print(f"  {case.name}: eps={case.eps:.5g}, stable ReLUs (our CROWN) "
                  f"{100 * stable.float().mean():.1f}%", flush=True)
            # pure CROWN, without our final intersection with IBP: apples to apples
            with torch.no_grad():
                raw = spec_crown(graph, crown_intervals(graph, lo, hi), C)[0]
            yield row("crown w/o IBP cap", raw, None, tl, None)
    if case.name in RAW_NORMALIZE_OK:
        # auto_LiRPA on the model as built, Normalize as Sub/Div: wrong intermediate bounds
        # in its patches mode (see the module docstring); matrix mode is right but slow
        for mode in ("patches", "matrix"):
            tm, t_m = timed(lambda md=mode: theirs(module(md, case.model), "CROWN"), args.runs,
                            args.device)
            yield row(f"crown vs raw-{mode}", ob.lower, t_o, tm, t_m)
    if args.skip_alpha:
        return

    # alpha-CROWN is slow on big nets; the module is warm from the CROWN runs above
    alpha_runs = max(1, args.runs // 2)
    tal, t_ta = timed(lambda: theirs(bm, "alpha-CROWN"), alpha_runs, args.device, False)
    alpha = _alpha_crown_fn()
    if alpha is None:
        print(f"  {case.name}: alpha-CROWN: not available in verifriend yet", flush=True)
        yield row("alpha-crown", None, None, tal, t_ta)
    else:
        oal, t_oa = timed(lambda: _call_alpha(alpha, graph, case, args.iterations,
                                              args.lr_alpha), alpha_runs, args.device, False)
        yield row("alpha-crown", oal.detach(), t_oa, tal, t_ta)


def _unsound(lower: torch.Tensor | None, reached: torch.Tensor) -> str:
    if lower is None:
        return "-"
    tol = 1e-4 * (1 + reached.abs())
    return str(int((lower.detach() > reached + tol).sum()))


HEAD = (f"{'network':<16}{'method':<21}{'mean lb ours':>13}{'mean lb theirs':>15}"
        f"{'max|d|/scale':>13}{'looser':>7}{'tighter':>8}{'unsound':>9}{'t ours':>9}"
        f"{'t theirs':>9}{'ratio':>7}")
LEGEND = ("looser/tighter: lower bounds of ours below/above auto_LiRPA's by > 1e-5 relative; "
          "unsound: ours/theirs lower bounds above a value the attack reached; "
          "ratio = t ours / t theirs (< 1: we are faster); times in seconds")


def format_row(r: dict) -> str:
    """One line of the side-by-side table."""
    ours, theirs, t_o, t_t = r["ours"], r["theirs"], r["t_ours"], r["t_theirs"]
    if ours is not None:
        rel, looser, tighter = compare(ours, theirs)
        mean_o, stats = f"{float(ours.mean()):13.4f}", f"{rel:13.2e}{looser:7d}{tighter:8d}"
    else:
        mean_o, stats = f"{'n/a':>13}", f"{'':28}"
    unsound = f"{_unsound(ours, r['reached'])}/{_unsound(theirs, r['reached'])}"
    times = (f"{t_o:9.3f}" if t_o is not None else f"{'':9}") + (
        f"{t_t:9.3f}" if t_t is not None else f"{'':9}")
    ratio = f"{t_o / t_t:7.2f}" if t_o is not None and t_t else f"{'':7}"
    return (f"{r['net']:<16}{r['method']:<21}{mean_o}{float(theirs.mean()):15.4f}{stats}"
            f"{unsound:>9}{times}{ratio}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8, help="inputs per network")
    p.add_argument("--runs", type=int, default=3, help="timed runs (median), after one warm-up")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--nets", nargs="*", help=f"subset of {[n[0] for n in NETWORKS]}")
    p.add_argument("--eps", type=float, help="override the per-network radius")
    p.add_argument("--checkpoint", help="a trained verifriend .pt instead of the zoo list")
    p.add_argument("--iterations", type=int, default=20, help="alpha-CROWN iterations")
    p.add_argument("--lr-alpha", type=float, default=0.1)
    p.add_argument("--skip-alpha", action="store_true", help="leave out alpha-CROWN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available; nothing to do")
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"batch {args.batch}, runs {args.runs}, alpha iterations {args.iterations}")
    lirpa, why = _autolirpa()
    if lirpa is None:
        print(f"{why}: comparing with the HiGHS LP of the triangle relaxation on fc_2x100 "
              "instead ('theirs' = LP; our CROWN must not be above it)")
        args.nets = ["fc_2x100"]
        runner, legend = run_lp_reference, LEGEND.replace("auto_LiRPA's", "the LP's")
    else:
        print(f"auto_LiRPA {getattr(lirpa, '__version__', '?')} from "
              f"{os.environ['AUTOLIRPA_PATH']}")
        runner, legend = (lambda case, a: run_case(case, lirpa, a)), LEGEND
    lines = []
    for case in build_cases(args):
        for r in runner(case, args):
            lines.append(format_row(r))
            print("  " + lines[-1], flush=True)
    print()
    print(HEAD)
    print("-" * len(HEAD))
    print("\n".join(lines))
    print(legend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
