"""The deadline: every stage stops at it, a verdict after it is a timeout, and a
`verifriend vnncomp` process counts its own start-up.

No test here times the code: deadlines already past make every stage stop at its first
check, and a stage made slow on purpose shows that a late verdict is not counted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from verifriend.app.vnncomp import parse_result, run_instance
from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.beta_crown import beta_crown
from verifriend.bounds.crown import crown
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.graph import Graph
from verifriend.bounds.splits import Splits
from verifriend.deadline import Deadline, DeadlineExpired, process_elapsed
from verifriend.specs.spec import Spec
from verifriend.verify import verifier
from verifriend.verify.bab import relu_bab
from verifriend.verify.input_split import input_bab
from verifriend.verify.milp import encodable
from verifriend.verify.verifier import VerifierConfig, outward_box, verify_spec

SOUNDNESS_DATA = Path(__file__).parent / "data" / "soundness"


def small_graph(seed: int = 0, n_in: int = 4, act=nn.ReLU) -> Graph:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n_in, 12), act(), nn.Linear(12, 12), act(), nn.Linear(12, 3))
    return from_module(net.eval(), (n_in,))


def spec_of(graph: Graph, eps: float, seed: int = 0) -> Spec:
    x = torch.rand(graph.input_shape[0], generator=torch.Generator().manual_seed(seed))
    label = int(graph(x.unsqueeze(0)).argmax())
    return Spec.linf_robustness(x, label, eps, 3, lo=-10.0, hi=10.0)


PAST = Deadline(time.monotonic() - 1.0)


def test_deadline_basics():
    assert PAST.expired() and PAST.left() == 0.0
    with pytest.raises(DeadlineExpired):
        PAST.check()
    d = Deadline.after(100)
    assert not d.expired() and 99 < d.left() <= 100
    d.check()
    assert d.cap(5) == 5 and d.cap(None) <= 100 and d.cap(1e9) <= 100
    assert d.earlier(1).at < d.at and d.earlier(1e9).at == d.at
    assert Deadline.never().left() == float("inf")


def test_process_elapsed_counts_the_start_up():
    code = ("import time; time.sleep(0.5); from verifriend.deadline import process_elapsed; "
            "print(process_elapsed())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.5 <= float(out.stdout) < 60
    assert process_elapsed() > 0  # this process, too, has been running a while


def test_bound_stages_stop_at_a_past_deadline():
    g = small_graph()
    lo, hi = outward_box(spec_of(g, 0.5), (4,))
    for stage in (lambda: crown(g, lo, hi, deadline=PAST),
                  lambda: alpha_crown(g, lo, hi, iterations=5, deadline=PAST),
                  lambda: beta_crown(g, lo, hi, None, Splits.empty(g, 1), iterations=5,
                                     deadline=PAST)):
        with pytest.raises(DeadlineExpired):
            stage()
    # a deadline not reached changes nothing
    far = Deadline.after(1e6)
    assert torch.equal(crown(g, lo, hi, deadline=far).lower, crown(g, lo, hi).lower)
    a1, _ = alpha_crown(g, lo, hi, iterations=3, deadline=far)
    a2, _ = alpha_crown(g, lo, hi, iterations=3)
    assert torch.equal(a1.lower, a2.lower)


def test_branch_and_bound_stops_at_a_past_deadline():
    g = small_graph()
    spec = spec_of(g, 1.0)
    C, d, clause = spec.to_spec_matrix()
    gs = g.with_output_map(C.float(), d.float())
    lo, hi = outward_box(spec, (4,))
    a, state = alpha_crown(gs, lo, hi, None, iterations=0, intermediate=False)
    assert float(a.lower.max()) <= 0  # undecided at the root: there is work to do
    out = relu_bab(gs, lo, hi, clause, a.lower, a.intervals, state, deadline=PAST)
    assert out.status == "timeout"
    out = input_bab(gs, lo, hi, clause, deadline=PAST, check=lambda xs: None)
    assert out.status == "timeout"


def test_a_past_deadline_gives_a_timeout_verdict():
    g = small_graph()
    v = verify_spec(g, [spec_of(g, 1.0)], (4,), timeout=60, deadline=PAST)
    assert v.status == "timeout" and v.time_s < 60


def test_a_verdict_reached_after_the_deadline_is_a_timeout(monkeypatch):
    """A stage that overshoots (here: CROWN made to wait past the deadline) may still reach
    a proof; it is reported as a timeout, the late verdict kept in the details only."""
    g = small_graph()
    spec = spec_of(g, 1e-4)  # CROWN proves it at once
    assert verify_spec(g, [spec], (4,), timeout=60).status == "unsat"
    real = verifier.crown

    def slow_crown(*args, deadline=None, **kwargs):
        out = real(*args, **kwargs)
        time.sleep(max(0.0, deadline.at - time.monotonic()) + 0.01)  # past the deadline
        return out

    monkeypatch.setattr(verifier, "crown", slow_crown)
    v = verify_spec(g, [spec], (4,), timeout=0.2)
    assert v.status == "timeout" and v.details["late"] == "unsat"


def test_vnncomp_counts_its_start_up(tmp_path):
    """A timeout shorter than the interpreter's start-up: the process writes `timeout`
    at once instead of verifying."""
    data = SOUNDNESS_DATA / "seed0-index74"
    out = tmp_path / "result.txt"
    exe = Path(sys.executable).with_name("verifriend")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "verifriend.cli"]
    start = time.monotonic()
    r = subprocess.run([*cmd, "vnncomp", str(data / "net.onnx"), str(data / "spec.vnnlib"),
                        "--timeout", "0.01", "--out", str(out)],
                       check=False, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert parse_result(out.read_text())[0] == "timeout"
    status, seconds, _ = r.stdout.split()
    # the reported time covers the start-up (importing torch is most of the process's
    # life), not just the loading of the files
    assert status == "timeout" and float(seconds) >= 0.5 * wall, (seconds, wall)


@pytest.mark.parametrize("case", ["seed0-index3", "seed0-index74"])
def test_s_shaped_networks_have_no_milp_stage(case):
    """Regressions of the soundness campaign: sigmoid / tanh networks reached the MILP
    stage, which has no encoding for them, and the verifier raised instead of answering.
    The campaign's oracle (interval bisection) proved both properties."""
    data = SOUNDNESS_DATA / case
    v = run_instance(data / "net.onnx", data / "spec.vnnlib", 20)
    assert v.status in ("unsat", "timeout")


def test_encodable():
    assert encodable(small_graph())
    assert not encodable(small_graph(act=nn.Sigmoid))
    assert not encodable(small_graph(act=nn.Tanh))


def test_sigmoid_network_is_decided_by_input_splitting():
    g = small_graph(act=nn.Sigmoid, n_in=2)
    spec = spec_of(g, 0.05)
    v = verify_spec(g, [spec], (2,), timeout=60,
                    config=VerifierConfig(input_split_dims=0))  # no ReLU: inputs are split
    assert v.status in ("unsat", "sat")


class _Switch:
    """A deadline that passes when the test says so."""

    def __init__(self):
        self.passed = False

    def check(self, need: float = 0.0) -> None:
        if self.passed:
            raise DeadlineExpired


def test_the_optimizer_backward_pass_stops_at_the_deadline():
    """alpha-CROWN's backward pass through the intermediate rows (the longest step on a loaded
    machine) checks the deadline between layers: a deadline passing after the forward pass
    stops the backward pass."""
    from verifriend.bounds import optimizer as optimize
    from verifriend.bounds.intermediate import plan_rows

    g = small_graph()
    lo, hi = outward_box(spec_of(g, 1.0), (4,))
    switch = _Switch()
    p = optimize.prepare_problem(g, lo, hi, None, None, False, 10**8)
    p.inner_rows = plan_rows(g, p.intervals)
    assert p.inner_rows  # there are unstable intermediate neurons with their own alphas
    p.deadline = switch
    alphas, betas, inner, _ = optimize._initial_state(g, p, None, False)
    for d in (alphas, *inner.values()):
        for a in d.values():
            a.requires_grad_(True)
    loss = -optimize.problem_lower(g, p, alphas, betas, inner).sum()
    switch.passed = True
    with pytest.raises(DeadlineExpired):
        loss.backward()
