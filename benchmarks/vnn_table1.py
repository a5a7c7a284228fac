"""The VNN paper's Table I with CROWN in place of DeepPoly: sparsify each network of
``../shared/vnnlp`` (eps 0, validation = MNIST test images 1..200), prune the magnitude
baseline to the same number of non-zeros, and print the share of test images 201..400 that
CROWN proves at each delta, beside the paper's DeepPoly figures. Also times the rewrite
(LP seconds per layer) on the cores given by ``--workers``.

    python benchmarks/vnn_table1.py [--nets mnist_relu_2_50 ...] [--eps 0] [--workers 2]
    python benchmarks/vnn_table1.py --models runs/nbc/model.pt other.onnx   # any FC networks
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from verifriend.bounds import compute_bounds
from verifriend.bounds.frontends.onnx import load_onnx
from verifriend.data.datasets import load_dataset
from verifriend.sparsify.network import network_of
from verifriend.sparsify.vnn_lp import forward, magnitude_prune, sparsify

VNNLP = Path(__file__).resolve().parents[2] / "shared" / "vnnlp"
DELTAS = (0.01, 0.02, 0.03, 0.05, 0.07)
PAPER = {  # Table I, DeepPoly, original -> VNN (eps = 0)
    "mnist_relu_2_50": ((90.5, 92.5), (68.5, 85.5), (22.5, 75.5), (1, 32), (0.5, 9.5)),
    "mnist_relu_2_100": ((85, 92.5), (33.5, 85), (3.5, 70), (0, 16.5), (0, 2)),
    "mnist_relu_5_100": ((75.5, 92), (13.5, 74.5), (0.5, 38), (0, 2), (0, 0)),
}


def crown_proved(layers, x: torch.Tensor, y: torch.Tensor, delta: float) -> float:
    """% of (x, y) correctly classified and proved robust at ``delta`` by CROWN."""
    from torch import nn

    mods: list[nn.Module] = []
    for k, (W, b) in enumerate(layers):
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
        lin.weight.data, lin.bias.data = torch.from_numpy(W), torch.from_numpy(b)
        mods += [lin] + ([nn.ReLU()] if k < len(layers) - 1 else [])
    net = nn.Sequential(*mods)
    with torch.no_grad():
        ok = net(x).argmax(1) == y
    eye = torch.eye(10, dtype=torch.float64)
    C = torch.stack([(eye[c] - eye)[torch.arange(10) != c] for c in y.tolist()])
    b = compute_bounds(net, (x - delta).clamp(0, 1), (x + delta).clamp(0, 1), C, method="crown")
    return 100.0 * float(((b.lower > 0).all(1) & ok).double().mean())


def _graph(net: str):
    """The graph of a shared vnnlp network's name, an ONNX file or a verifriend .pt."""
    if net.endswith(".pt"):
        from verifriend.bounds.frontends.torch import from_module
        from verifriend.models.io import load_model

        model, meta = load_model(net)
        return from_module(model.double(), meta["input_shape"])
    return load_onnx(net if net.endswith(".onnx") else VNNLP / f"{net}.onnx",
                     dtype=torch.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=sorted(p.stem for p in VNNLP.glob("*.onnx")))
    ap.add_argument("--eps", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=[],
                    help="fully connected .onnx or verifriend .pt files instead of --nets")
    args = ap.parse_args()
    ds = load_dataset("mnist")
    x = ds.x_test.reshape(len(ds.x_test), -1).double()
    y = ds.y_test
    for net in args.models or args.nets:
        _, layers = network_of(_graph(net), net)
        start = time.perf_counter()
        new, reps = sparsify(layers, x[1:201].numpy(), eps=args.eps, workers=args.workers)
        total = time.perf_counter() - start
        mag = magnitude_prune(layers, [r.nonzeros_after for r in reps])
        acc = [100 * float((forward(L, x.numpy())[-1].argmax(1) == y.numpy()).mean())
               for L in (layers, new, mag)]
        print(f"\n## {net}, eps {args.eps}: rewrite {total:.1f} s on {args.workers} workers "
              f"(LP s per layer: {', '.join(f'{r.seconds:.1f}' for r in reps)}); non-zeros "
              f"{sum(r.nonzeros_before for r in reps)} -> {sum(r.nonzeros_after for r in reps)}; "
              f"test accuracy original {acc[0]:.2f} %, VNN {acc[1]:.2f} %, magnitude {acc[2]:.2f} %")
        print("| delta | CROWN original | CROWN VNN | CROWN magnitude | paper DeepPoly orig -> VNN |")
        print("|---|---|---|---|---|")
        xs, ys = x[201:401], y[201:401]
        for i, d in enumerate(DELTAS):
            got = [crown_proved(L, xs, ys, d) for L in (layers, new, mag)]
            paper = PAPER.get(net)
            ref = f"{paper[i][0]} -> {paper[i][1]}" if paper else "-"
            print(f"| {d} | {got[0]:.1f} | {got[1]:.1f} | {got[2]:.1f} | {ref} |", flush=True)


if __name__ == "__main__":
    main()
