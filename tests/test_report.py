"""`verifriend report`: one self-contained HTML page of a run folder (evaluate, demo-shaped,
logs only), its sections, its one-sentence errors, and what a headless browser shows of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from test_sparsify_cli import _net
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.metrics.report import bar_chart
from verifriend.metrics.report_html import SECTIONS
from verifriend.sparsify.vnn_lp import forward

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """`verifriend evaluate --out` of two tiny ONNX networks at two radii, with the complete
    verifier (so there are logs): a few seconds."""
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    layers = _net(tmp / "a.onnx", rng)
    _net(tmp / "b.onnx", rng)
    x = rng.uniform(0, 1, (30, 1, 4, 4)).astype(np.float32)
    y = forward(layers, x.reshape(30, -1).astype(np.float64))[-1].argmax(1)
    y[::7] = (y[::7] + 1) % 3
    np.savez(tmp / "tiny.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    out = tmp / "run"
    r = runner.invoke(app, ["evaluate", str(tmp / "a.onnx"), str(tmp / "b.onnx"), "--dataset",
                            "tiny", "--data-dir", str(tmp), "--indices", "5:17", "--eps", "0.02",
                            "--eps", "0.1", "--timeout", "5", "--pgd-steps", "5", "--out",
                            str(out)])
    assert r.exit_code == 0, r.output
    assert "report.html" in r.output  # evaluate --out writes the report at its end
    return out


def _self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text.lower() and "@import" not in text and "<script" not in text


def test_report_of_an_evaluate_run(run_dir, tmp_path):
    assert (run_dir / "report.html").is_file()
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert str(out) in r.output.replace("\n", "")
    text = out.read_text()
    _self_contained(text)
    for sid, heading in SECTIONS:
        assert f'<section id="{sid}">' in text and heading in text
    for words in ("higher is better", "lower is better", "Subproblems", "complete (5 s)", "a.eps0.02.t5.verify.jsonl",
                  "UNSAT %", "Time over UNSAT+timeout s"):
        assert words in text, words
    # friendliness per radius (2), verified plot, radar per radius (2), UNSAT curve, cactus,
    # per-layer bars
    assert text.count('src="data:image/png;base64,') == 8
    assert "not recorded" not in text


def test_old_runs_say_per_layer_figures_are_not_recorded(run_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    res = json.loads((old / "results.json").read_text())
    for m in res["models"]:
        for r in m["results"]:
            del r["stable_pct_per_layer"]
    (old / "results.json").write_text(json.dumps(res))
    assert runner.invoke(app, ["report", str(old)]).exit_code == 0
    text = (old / "report.html").read_text()
    assert "Per-layer stable ReLUs not recorded for: a, b." in text


def test_a_folder_of_verifier_logs_only(run_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for p in run_dir.glob("a.*.jsonl"):
        shutil.copy(p, logs / p.name)
    (logs / "notes.jsonl").write_text('{"something": "else"}\n')
    r = runner.invoke(app, ["report", str(logs)])
    assert r.exit_code == 0, r.output
    text = (logs / "report.html").read_text()
    _self_contained(text)
    assert "Left out notes.jsonl" in text
    assert "a.eps0.1.t5.verify.jsonl" in text and "verifier logs" in text
    # one log file alone works too, its report beside it
    one = min(logs.glob("a.*.verify.jsonl"))
    assert runner.invoke(app, ["report", str(one)]).exit_code == 0
    assert one.with_name(one.stem + ".report.html").is_file()


def test_a_demo_shaped_run_and_the_two_panel_chart(tmp_path):
    m = {"eps": 0.05, "n_properties": 20, "clean_acc": 95.0, "pgd_acc": 60.0, "stable_pct": 80.0,
         "proved_ibp_pct": 5.0, "proved_crown_pct": 30.0, "proved_pct": 30.0,
         "stable_pct_per_layer": [70.0, 90.0], "unsat_pct": 60.0, "sat_pct": 30.0,
         "timeout_pct": 10.0, "misclassified_pct": 0.0, "verify_time_s": 0.4,
         "verify_time_unsat_timeout_s": 0.9, "train_time_s": 12.0}
    demo = {"demo": {"dataset": "MNIST", "arch": "fc", "eval_eps": 0.05, "verify_timeout": 5.0},
            "models": {"natural": m, "nbc": {**m, "unsat_pct": 80.0, "timeout_pct": 0.0}}}
    (tmp_path / "results.json").write_text(json.dumps(demo))
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0
    text = (tmp_path / "report.html").read_text()
    assert "verifriend demo" in text and "No verifier logs" in text
    png = bar_chart(demo["models"])
    assert png[:4] == b"\x89PNG"
    assert bar_chart({"x": {"clean_acc": 90.0}})[:4] == b"\x89PNG"  # one panel only
    with pytest.raises(ValueError):
        bar_chart({"x": {"sat_pct": 3.0}})


@pytest.mark.parametrize("setup, words", [
    ("missing", "does not exist"), ("empty", "nothing a report can show"),
    ("file", "neither a run folder nor a verifier log"), ("bad-json", "cannot be read as JSON")])
def test_report_errors_are_one_sentence(tmp_path, setup, words):
    target = tmp_path / "run"
    if setup == "empty":
        target.mkdir()
    elif setup == "file":
        target.write_text("x")
    elif setup == "bad-json":
        target.mkdir()
        (target / "results.json").write_text("{")
    r = runner.invoke(app, ["report", str(target)])
    assert r.exit_code == 2
    assert words in r.output and "Traceback" not in r.output
    assert not (target / "report.html").exists() if target.is_dir() else True


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no chromium/chromium-browser/google-chrome on PATH")
def test_a_headless_browser_renders_the_report(run_dir, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,2400",
                    (run_dir / "report.html").resolve().as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # tables, charts, header: not blank
