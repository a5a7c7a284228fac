"""The exact integer form of a trained `network.BNN`, its cardinality bounds, and BNN files.

Folding (per hidden neuron, eval-mode BatchNorm with parameters gamma, beta, mean, var, eps):
the neuron fires iff  gamma * (z - mean) / sqrt(var + eps) + beta >= 0,  where z is the
integer sum  sum_j w_j a_j  (a_j the integer levels q_j in the first layer, 0/1 after it).

- gamma > 0: iff z >= theta = mean - beta * sqrt(var + eps) / gamma, i.e. z >= ceil(theta);
- gamma < 0: iff z <= theta, i.e. (-w) . a >= -floor(theta): the row and threshold negate;
- gamma == 0: iff beta >= 0, a constant: row all zero, threshold 0 (always 1) or 1 (never).

Rounding: every float32 parameter is taken as the exact rational it stores and var + eps is
formed exactly (torch rounds it to float32 first); theta is irrational in general, so the
integer threshold is found from a float64 estimate and then checked exactly (squaring both
sides of the comparison in rational arithmetic). The integer form is therefore the exact
real-number semantics of the stored parameters. Torch's float32 BatchNorm can only differ
where its rounding moves y across 0, i.e. where theta lies within about 1e-6 (relative) of
an attainable integer sum; thresholds outside the attainable range of z are clamped to it
(same behaviour: constant neuron). The first layer reads integer levels q, so no division by
the quantization step enters the thresholds (the model's first layer is trained on q).

Output: logits = scale * (W a) + bias with scale = gamma / sqrt(var + eps) and
bias_c = beta_c - scale * mean (scalar statistics), in float64.

Convolutions are unrolled into CSR rows over the flattened C-order input; padding positions
simply have no entry (their input is level 0 / activation 0, matching torch's zero padding).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from verifriend.bnn.integer import IntBNN, IntLayer, IntOutput
from verifriend.bnn.layers import BinBlock, BinConv2d
from verifriend.bnn.network import BNN, BNNSpec
from verifriend.errors import UserError

FORMAT = "verifriend-bnn"
VERSION = 1


# --- exact thresholds ----------------------------------------------------------------------

def _cmp_sqrt(d: Fraction, c: Fraction, v: Fraction) -> int:
    """Sign of d - c * sqrt(v) (v > 0), exactly."""
    if c == 0:
        return (d > 0) - (d < 0)
    if d >= 0 and c < 0:
        return 1
    if d <= 0 and c > 0:
        return -1
    diff = d * d - c * c * v  # d and c share a sign here
    s = (diff > 0) - (diff < 0)
    return s if d > 0 else -s


def fold_threshold(gamma: float, beta: float, mean: float, var: float, eps: float,
                   lo: int, hi: int) -> tuple[int, int]:
    """(direction, t) with: the neuron fires iff direction * z >= t, for integers z in lo..hi.

    direction is 1 (gamma > 0), -1 (gamma < 0) or 0 (gamma == 0: then t is 0 if it always
    fires, 1 if never). For direction -1 the range of -z is -hi..-lo. t is clamped to the
    attainable range plus one (lo..hi+1 for direction 1).
    """
    g, b, mu = Fraction(gamma), Fraction(beta), Fraction(mean)
    v = Fraction(var) + Fraction(eps)
    if g == 0:
        return 0, (0 if b >= 0 else 1)
    if v <= 0:
        raise ValueError("BatchNorm variance + eps must be positive")
    c = -b / g  # theta = mu + c * sqrt(v)
    direction = 1 if g > 0 else -1

    def fires(z: int) -> bool:  # z is the (possibly negated) sum
        cmp = _cmp_sqrt(Fraction(direction * z) - mu, c, v)
        return cmp >= 0 if direction > 0 else cmp <= 0

    if direction < 0:
        lo, hi = -hi, -lo
    est = direction * (float(mu) + float(c) * math.sqrt(float(v)))
    t = lo if est < lo else hi + 1 if est > hi + 1 or not math.isfinite(est) else math.ceil(est)
    while t > lo and fires(t - 1):
        t -= 1
    while t <= hi and not fires(t):
        t += 1
    return direction, int(t)


def _bn_params(bn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def arr(t):
        return t.detach().cpu().to(torch.float32).numpy().astype(np.float64)
    return arr(bn.weight), arr(bn.bias), arr(bn.running_mean), arr(bn.running_var)


def _fold_block(block: BinBlock) -> IntLayer:
    w = block.layer.int_weight().cpu().numpy().astype(np.int64)
    gamma, beta, mean, var = _bn_params(block.bn)
    eps, top = float(block.bn.eps), block.top
    flat = w.reshape(w.shape[0], -1)
    pos = top * (flat > 0).sum(1)
    neg = top * (flat < 0).sum(1)
    direction = np.empty(w.shape[0], dtype=np.int64)
    thr = np.empty(w.shape[0], dtype=np.int64)
    for o in range(w.shape[0]):
        direction[o], thr[o] = fold_threshold(gamma[o], beta[o], mean[o], var[o], eps,
                                              -int(neg[o]), int(pos[o]))
    w = w * direction.reshape(-1, *([1] * (w.ndim - 1)))
    if isinstance(block.layer, BinConv2d):
        rows = _unroll_conv(w, block.in_shape, block.layer.stride, block.layer.padding)
        thr = np.repeat(thr, block.out_shape[1] * block.out_shape[2])
    else:
        rows = sparse.csr_array(w)
    return IntLayer(rows, thr)


def _unroll_conv(w: np.ndarray, in_shape: tuple[int, ...], stride: int,
                 padding: int) -> sparse.csr_array:
    """The convolution as a sparse matrix [Co*OH*OW, C*H*W] (C order on both sides)."""
    co_n, _, k, _ = w.shape
    c_n, h, wd = in_shape
    oh_n = (h + 2 * padding - k) // stride + 1
    ow_n = (wd + 2 * padding - k) // stride + 1
    co, ci, kh, kw = np.nonzero(w)
    vals = w[co, ci, kh, kw]
    oh, ow = np.meshgrid(np.arange(oh_n), np.arange(ow_n), indexing="ij")
    oh, ow = oh.reshape(-1, 1), ow.reshape(-1, 1)  # [positions, 1] against [1, nnz]
    ih = oh * stride - padding + kh
    iw = ow * stride - padding + kw
    ok = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < wd)
    rows = co * (oh_n * ow_n) + oh * ow_n + ow
    cols = ci * (h * wd) + ih * wd + iw
    data = np.broadcast_to(vals, ok.shape)
    m = sparse.coo_array((data[ok], (rows[ok], cols[ok])),
                         shape=(co_n * oh_n * ow_n, c_n * h * wd))
    return sparse.csr_array(m)


def export_integer(model: BNN) -> IntBNN:
    """The exact integer form (see the module docstring) of ``model`` in eval mode."""
    layers = [_fold_block(b) for b in model.blocks]
    out = model.output
    w = out.layer.int_weight().cpu().numpy()
    gamma, beta, mean, var = _bn_params(out.bn)
    scale = float(gamma[0]) / math.sqrt(float(var[0]) + float(out.bn.eps))
    bias = beta - scale * float(mean[0])
    spec = model.spec
    meta = {"arch": spec.arch, "sparsity": spec.sparsity, "spec": spec.to_dict()}
    return IntBNN(tuple(spec.input_shape), model.step, model.levels, layers,  # type: ignore
                  IntOutput(w, scale, bias), meta)


# --- cardinality bounds --------------------------------------------------------------------

def cardinality_bounds(net: IntBNN) -> list[np.ndarray]:
    """Per hidden layer, every neuron's cardinality bound exactly as the encoder forms it:
    threshold + top * #(weights -1), top = levels for the first layer and 1 after it."""
    out = []
    top = net.levels
    for layer in net.layers:
        neg = np.asarray((layer.weight < 0).sum(axis=1)).reshape(-1)
        out.append(layer.threshold + top * neg.astype(np.int64))
        top = 1
    return out


def bound_stats(net: IntBNN) -> dict:
    """Mean and max cardinality bound per layer and over the layers after the first, and the
    number of literals per neuron (top * nonzero weights)."""
    bounds = cardinality_bounds(net)
    per = []
    top = net.levels
    for layer, b in zip(net.layers, bounds, strict=True):
        lits = top * np.diff(layer.weight.indptr)
        per.append({"neurons": len(b), "mean": float(b.mean()), "max": b.max().item(),
                    "mean_literals": float(lits.mean()),
                    "constant": int(((b <= 0) | (b > lits)).sum())})
        top = 1
    rest = np.concatenate(bounds[1:]) if len(bounds) > 1 else np.zeros(0, dtype=np.int64)
    return {"layers": per,
            "mean_after_first": float(rest.mean()) if rest.size else 0.0,
            "max_after_first": int(rest.max()) if rest.size else 0}


# --- files ---------------------------------------------------------------------------------

def bnn_checkpoint(model: BNN, meta: dict | None = None) -> dict:
    """What a BNN file holds (``torch.save`` of this dict): the state, the spec, alpha and
    ``meta`` (training config, figures). :func:`verifriend.app.artifacts.save_bnn` writes it."""
    return {"format": FORMAT, "version": VERSION, "spec": model.spec.to_dict(),
            "state": model.state_dict(), "alpha": model.alpha, "meta": meta or {}}


def load_bnn(path: str | Path) -> BNN:
    """A `BNN` saved as a :func:`bnn_checkpoint`, in eval mode, with its saved meta as ``model.meta``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"BNN file {path} does not exist.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's
        raise UserError(f"{path} is not a BNN file saved by verifriend ({e.__class__.__name__})."
                        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not a BNN file saved by verifriend (no '{FORMAT}' marker).")
    if blob.get("version") != VERSION:
        raise UserError(f"{path} is a BNN file of version {blob.get('version')}; this verifriend "
                        f"reads version {VERSION}.")
    try:
        model = BNN(BNNSpec.from_dict(blob["spec"]))
        model.load_state_dict(blob["state"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{path} holds a damaged BNN: {e}") from None
    model.set_alpha(float(blob.get("alpha", 1.0)))
    model.meta = dict(blob.get("meta") or {})  # type: ignore[assignment]
    model.eval()
    return model
