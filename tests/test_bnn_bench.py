"""The solver benchmark: agreement with brute force, fresh-vs-reused native, skips, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from verifriend.app.artifacts import save_bnn
from verifriend.app.bnn_bench import (
    BENCH_NETS,
    BenchNet,
    Suite,
    format_summary,
    prepare_net,
    prepare_nets,
    run_bench,
    run_suite,
    slim,
    summarize,
)
from verifriend.bnn.integer import random_int_bnn
from verifriend.bnn.network import BNN, BNNSpec
from verifriend.cli import app
from verifriend.errors import UserError


def small_suite(seed: int, images: int = 20, eps: float = 0.34) -> Suite:
    """A random 6-10-8-3 BNN; labels are its own predictions, so every image is a query."""
    rng = np.random.default_rng(seed)
    net = random_int_bnn(rng, [6, 10, 8, 3], levels=3)
    x = rng.random((images, 6))
    return Suite(f"random-{seed}", net, x, net.predict(net.quantize(x)), eps)


def enumerated_verdicts(suite: Suite) -> list[str]:
    """The oracle: every level vector of each correctly classified image's box."""
    from verifriend.bnn.encode import encode

    enc, net, out = encode(suite.net), suite.net, []
    for x, y in zip(suite.images, suite.labels, strict=True):
        if net.misclassified(net.quantize(x), int(y)):
            continue  # not a query
        lo, hi = enc.level_box(x, suite.eps)
        boxes = itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi, strict=True)))
        out.append("sat" if any(net.misclassified(np.array(q), int(y)) for q in boxes)
                   else "unsat")
    return out


@pytest.mark.parametrize("seed", [1, 5])
def test_suite_backends_agree_with_enumeration(seed):
    suite = small_suite(seed)
    r = run_suite(suite, ["native", "pysat-gluecard4"], 10.0)
    expected = enumerated_verdicts(suite)
    assert r["agree"] and r["queries"] == len(expected) > 0
    assert "sat" in expected  # seeds 1 and 5 have attackable images (9 and 2 of 20)
    for name in ("native", "native-fresh", "pysat-gluecard4"):
        assert r["backends"][name]["verdicts"] == expected
        assert r["backends"][name]["bad_models"] == 0


def test_disagreement_and_bad_models_are_flagged():
    from verifriend.app.bnn_bench import _agree

    r = run_suite(small_suite(1), ["native", "pysat-gluecard4"], 10.0)
    verdicts = r["backends"]["native"]["verdicts"]
    assert {"sat", "unsat"} <= set(verdicts)  # the suite has both answers
    flipped = json.loads(json.dumps(r["backends"]))
    flipped["pysat-gluecard4"]["verdicts"] = ["unsat" if v == "sat" else "sat" for v in verdicts]
    assert not _agree(flipped)
    bad = json.loads(json.dumps(r["backends"]))
    bad["native"]["bad_models"] = 1
    assert not _agree(bad)
    unknown = json.loads(json.dumps(r["backends"]))  # unknown agrees with anything
    unknown["pysat-gluecard4"]["verdicts"] = ["unknown"] * len(verdicts)
    assert _agree(unknown)


def test_summary_ratios_and_cnf_cap():
    suites = [run_suite(small_suite(s), ["native", "pysat-seqcounter-minisat22"], 10.0,
                        max_clauses=10 if s == 5 else None) for s in (1, 5)]
    assert "pysat-seqcounter-minisat22" in suites[1]["skipped"]
    assert "pysat-seqcounter-minisat22" not in suites[1]["backends"]
    out = summarize(suites)
    cnf = out["backends"]["pysat-seqcounter-minisat22"]
    assert cnf["suites"] == [suites[0]["name"]]
    # the ratio compares with native on the suites the CNF backend ran on, not on all
    native0 = suites[0]["backends"]["native"]["total_s"]
    assert cnf["ratio_to_native"] == pytest.approx(cnf["total_s"] / native0)
    nat = out["backends"]["native"]
    assert nat["queries"] == suites[0]["queries"] + suites[1]["queries"]
    assert nat["ratio_to_native"] == pytest.approx(1.0)
    text = format_summary(out)
    assert "skipped on random-5: pysat-seqcounter-minisat22" in text
    js = slim(out)
    assert "verdicts" not in json.dumps(js) and js["agree"] is True


def tiny_model(tmp_path, dataset="digits"):
    model = BNN(BNNSpec([12, 10], input_shape=(1, 8, 8), step=1 / 16), seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make it a classifier of something: any fixed weights do
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g))
    model.eval()
    return save_bnn(model, tmp_path / "tiny.pt", meta={"dataset": dataset})


def test_cli_bench_on_a_model_file(tmp_path):
    path = tiny_model(tmp_path)
    res = CliRunner().invoke(app, ["bnn", "bench", str(path), "--eps", "0.05", "--images", "15",
                                   "--backends", "native,pysat-gluecard4", "--json",
                                   "--out", str(tmp_path / "all.json")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["agree"] is True
    assert set(out["backends"]) == {"native", "native-fresh", "pysat-gluecard4"}
    for b in out["backends"].values():
        assert {"median_s", "mean_s", "max_s", "total_s"} <= set(b)
    full = json.loads((tmp_path / "all.json").read_text())
    assert len(full["suites"][0]["backends"]["native"]["times"]) == out["backends"]["native"]["queries"]


def test_cli_bench_errors_are_user_errors(tmp_path):
    path = tiny_model(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["bnn", "bench", str(path), "--backends", "nonesuch"])
    assert res.exit_code != 0 and "unknown solver backend" in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    res = runner.invoke(app, ["bnn", "bench", "--nets", "nonesuch"])
    assert res.exit_code != 0 and "Unknown bench network" in res.output
    with pytest.raises(UserError, match="Unknown bench network"):
        run_bench(nets=["nonesuch"], backends=["native"])
    for args, words in ((["--timeout", "-1"], "--timeout must be > 0"),
                        (["--timeout", "0"], "--timeout must be > 0"),
                        (["--eps", "-0.1"], "--eps must be >= 0"),
                        (["--max-clauses", "0"], "--max-clauses must be at least 1")):
        res = runner.invoke(app, ["bnn", "bench", str(path), "--backends", "native", *args])
        assert res.exit_code == 2 and words in res.output, (args, res.output)


def test_prepare_net_loads_a_matching_recipe_and_retrains_another(tmp_path, monkeypatch):
    calls = []

    def fake_train(arch, dataset, cfg, out, *, step=None, data_dir=None, meta=None, **_):
        calls.append((arch, cfg.epochs, step))
        model = BNN(BNNSpec([12, 10], input_shape=(1, 8, 8), step=1 / 16), seed=0)
        save_bnn(model, out, meta={"dataset": dataset, **(meta or {})})
        return {"test_acc": 0.5, "train_s": 0.0}

    monkeypatch.setattr("verifriend.app.bnn_train.train_and_save", fake_train)
    net = BENCH_NETS["digits"]
    path = prepare_net(net, tmp_path, log=lambda s: None)
    assert path.exists() and len(calls) == 1
    prepare_net(net, tmp_path, log=lambda s: None)  # same recipe: loaded, not trained
    assert len(calls) == 1
    from dataclasses import replace

    prepare_net(replace(net, epochs=net.epochs + 1), tmp_path, log=lambda s: None)
    assert len(calls) == 2
    prepare_net(replace(net, step=0.5), tmp_path, log=lambda s: None)  # another quantization
    assert len(calls) == 3 and calls[-1][2] == 0.5
    assert "step" not in net.recipe()  # None: left out, so models saved before it still load


def test_unknown_queries_count_at_the_time_limit():
    def backend(times, verdicts):
        return {"times": times, "verdicts": verdicts, "unknown": verdicts.count("unknown"),
                "load_s": 0.0}

    suite = {"name": "s", "time_limit_s": 1.0, "agree": True, "backends": {
        "native": backend([0.1, 0.3], ["unsat", "sat"]),
        "slow": backend([7.5, 0.2], ["unknown", "sat"]),  # overshot its limit
    }}
    out = summarize([suite])
    assert out["backends"]["slow"]["total_s"] == pytest.approx(1.2)
    assert out["backends"]["slow"]["ratio_to_native"] == pytest.approx(1.2 / 0.4)
    assert out["backends"]["slow"]["max_s"] == pytest.approx(1.0)


def test_reuse_benchmark_script(tmp_path, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bnn_reuse.py"
    spec = importlib.util.spec_from_file_location("bnn_reuse", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tiny_model(tmp_path)
    assert mod.main([str(path), "--eps", "0.05", "--images", "150", "--orders", "2",
                     "--variants", "default;keep_base_max=50;reset_between=7"]) == 0
    out = capsys.readouterr().out
    table = out.splitlines()[-4:]
    assert [line.split()[0] for line in table] == ["fresh", "reuse", "reuse", "reuse"]
    assert table[0].split()[-2] == "1.00"  # time ratio of fresh to itself
    assert "keep_base_max=50" in table[2]
    assert out.count("order 1:") == 4
    assert mod.main([str(tmp_path / "missing.pt"), "--eps", "0.05"]) == 2
    assert mod.main([str(path), "--eps", "0.05", "--variants", "default;no_such_option=1"]) == 2
    assert "unknown option no_such_option" in capsys.readouterr().err


def test_prepare_nets_trains_in_worker_processes_with_epoch_lines(tmp_path, monkeypatch):
    from verifriend.app import bnn_bench as bench

    tiny = {n: BenchNet(n, "digits", "digits", (0.05,), 0.05, 2, 1e-4, 1e-4, limit=150)
            for n in ("tiny-a", "tiny-b")}
    monkeypatch.setattr(bench, "BENCH_NETS", tiny)
    lines: list[str] = []
    out = prepare_nets(list(tiny), tmp_path, workers=2, log=lines.append)
    assert [n for n, _ in out] == ["tiny-a", "tiny-b"] and all(p.exists() for _, p in out)
    for n in tiny:  # the workers' per-epoch lines reach the caller's log
        epochs = [line.split(",")[0] for line in lines if line.startswith(f"{n}: epoch")]
        assert epochs == [f"{n}: epoch 1/2", f"{n}: epoch 2/2"], lines
        assert any(line.startswith(f"{n}: test accuracy") for line in lines), lines
    lines.clear()
    prepare_nets(list(tiny), tmp_path, workers=2, log=lines.append)  # cached now
    assert sorted(lines) == [f"tiny-a: using {tmp_path / 'tiny-a.pt'}",
                             f"tiny-b: using {tmp_path / 'tiny-b.pt'}"]
