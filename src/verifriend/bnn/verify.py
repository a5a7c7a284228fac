"""Exact robustness verification of BNNs over a data set: one encoding, one query per image.

Every `sat` is decoded into a real input image inside the eps-ball and replayed through the
network in exact integer arithmetic; a model that does not replay is reported, never trusted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from verifriend.bnn.encode import EncodedBNN, counterexample, encode
from verifriend.bnn.integer import IntBNN
from verifriend.bnn.solvers.base import Backend


@dataclass
class ImageVerdict:
    index: int
    label: int
    verdict: str  # "robust" | "attack" | "misclassified" | "unknown" | "replay-failed"
    solve_s: float
    stats: dict = field(default_factory=dict)
    adversarial: np.ndarray | None = field(default=None, repr=False)  # "attack": the input


@dataclass
class VerifySummary:
    backend: str
    eps: float
    images: int
    build_s: float
    load_s: float
    verdicts: list[ImageVerdict]

    def count(self, verdict: str) -> int:
        return sum(v.verdict == verdict for v in self.verdicts)

    @property
    def verifiable_accuracy(self) -> float:
        return self.count("robust") / max(self.images, 1)

    @property
    def solve_times(self) -> np.ndarray:
        return np.array([v.solve_s for v in self.verdicts if v.verdict != "misclassified"])

    def as_dict(self) -> dict:
        t = self.solve_times
        return {
            "backend": self.backend,
            "eps": self.eps,
            "images": self.images,
            "robust": self.count("robust"),
            "attack": self.count("attack"),
            "misclassified": self.count("misclassified"),
            "unknown": self.count("unknown"),
            "replay_failed": self.count("replay-failed"),
            "verifiable_accuracy": self.verifiable_accuracy,
            "build_s": self.build_s,
            "load_s": self.load_s,
            "solve_mean_s": float(t.mean()) if len(t) else 0.0,
            "solve_median_s": float(np.median(t)) if len(t) else 0.0,
            "solve_max_s": float(t.max()) if len(t) else 0.0,
            "total_per_image_s": (self.build_s + self.load_s + float(t.sum())) / max(self.images, 1),
            "verdicts": [{k: x for k, x in asdict(v).items() if k != "adversarial"}
                         for v in self.verdicts],
        }


def replays(enc: EncodedBNN, model: list[int], x: np.ndarray, label: int, eps: float) -> bool:
    """True when the model decodes to a real input in the ball that the network(s) get wrong
    (for an ensemble: every member ranks the same wrong class first)."""
    q = enc.decode(model)
    x_adv = counterexample(enc, q, x, eps)
    x = np.asarray(x, dtype=np.float64).reshape(enc.nets[0].input_shape)
    if np.abs(x_adv - x).max() > eps + 1e-12 or x_adv.min() < 0 or x_adv.max() > 1:
        return False
    net = enc.nets[0]
    if not np.array_equal(net.quantize(x_adv), q):
        return False
    if len(enc.nets) == 1:
        return net.misclassified(q, label)
    for c in range(net.num_classes):
        if c != label and all(_ranks_first(m, q, c) for m in enc.nets):
            return True
    return False


def _ranks_first(net: IntBNN, q: np.ndarray, c: int) -> bool:
    s = net.output.scores(net.hidden(q))
    for u in range(net.num_classes):
        if u == c:
            continue
        sign, m = net.output.beats(c, u)
        if not ((sign > 0) if m is None else sign * int(s[c] - s[u]) >= m):
            return False
    return True


def verify_dataset(
    nets: IntBNN | list[IntBNN],
    backend: Backend,
    images: np.ndarray,
    labels: np.ndarray,
    eps: float,
    *,
    time_limit: float | None = None,
    encoded: EncodedBNN | None = None,
    progress: Callable[[int, ImageVerdict], None] | None = None,
) -> VerifySummary:
    """Verify every image (values in [0, 1]) at L-inf radius eps with one loaded encoding."""
    enc = encoded if encoded is not None else encode(nets)
    t0 = time.perf_counter()
    backend.load(enc.formula)
    load_s = time.perf_counter() - t0
    out: list[ImageVerdict] = []
    for i, (x, y) in enumerate(zip(images, labels, strict=True)):
        y = int(y)
        q = enc.nets[0].quantize(x)
        # a single network that errs on the clean image needs no query; an ensemble's clean
        # answer may be a reject, which its query handles
        if len(enc.nets) == 1 and enc.nets[0].misclassified(q, y):
            v = ImageVerdict(i, y, "misclassified", 0.0)
        else:
            lo, hi = enc.level_box(x, eps)
            r = backend.solve(enc.assumptions(lo, hi, y), time_limit)
            adversarial = None
            if r.status == "unsat":
                verdict = "robust"
            elif r.status == "sat":
                ok = r.model is not None and replays(enc, r.model, x, y, eps)
                verdict = "attack" if ok else "replay-failed"
                if ok:
                    adversarial = counterexample(enc, enc.decode(r.model), x, eps)
            else:
                verdict = "unknown"
            v = ImageVerdict(i, y, verdict, r.time_s, r.stats, adversarial)
        out.append(v)
        if progress is not None:
            progress(i, v)
    return VerifySummary(getattr(backend, "name", "?"), eps, len(out), enc.build_s, load_s, out)



def find_attacks(
    net: IntBNN,
    images: np.ndarray,
    labels: np.ndarray,
    eps: float,
    *,
    backend: Backend | None = None,
    time_limit: float | None = 0.05,
) -> dict[int, np.ndarray]:
    """Adversarial examples made by the verifier: image index -> an input in the eps-ball that
    `net` misclassifies (each one replayed), for the correctly classified images whose query
    comes back `sat` within `time_limit`. Default backend: the native solver."""
    from verifriend.bnn.solvers import make_backend

    backend = backend if backend is not None else make_backend("native")
    summary = verify_dataset(net, backend, images, labels, eps, time_limit=time_limit)
    backend.close()
    return {v.index: v.adversarial for v in summary.verdicts if v.adversarial is not None}
