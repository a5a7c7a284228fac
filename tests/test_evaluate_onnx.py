"""`verifriend evaluate` and `verifriend verify` on ONNX networks with an explicit range of
test images, and the verified-% table of several models (markdown, CSV, plot): the figures
agree with onnxruntime's accuracy and with each other (CROWN <= alpha-CROWN <= complete), and
user mistakes are one sentence with exit code 2, before any work."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from test_sparsify_cli import _net
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.sparsify.vnn_lp import forward

runner = CliRunner()


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(3)
    layers = _net(tmp_path / "a.onnx", rng)
    _net(tmp_path / "b.onnx", rng)
    x = rng.uniform(0, 1, (40, 1, 4, 4)).astype(np.float32)
    y = forward(layers, x.reshape(40, -1).astype(np.float64))[-1].argmax(1)
    y[::7] = (y[::7] + 1) % 3  # some images misclassified by a
    np.savez(tmp_path / "tiny.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    return tmp_path, x, y


def _accuracy(path, x, y) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pred = np.concatenate([sess.run(None, {"x": xi[None]})[0].argmax(1) for xi in x])
    return 100.0 * float((pred == y).mean())


def test_evaluate_two_onnx_models_writes_the_verified_table(setup):
    tmp, x, y = setup
    out = tmp / "table"
    r = runner.invoke(app, ["evaluate", str(tmp / "a.onnx"), str(tmp / "b.onnx"), "--dataset",
                            "tiny", "--data-dir", str(tmp), "--indices", "5:25", "--eps", "0.02",
                            "--eps", "0.1", "--alpha", "--timeout", "10", "--pgd-steps", "10",
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [m["indices"] for m in res["models"]] == [[5, 25], [5, 25]]
    for name, m in zip("ab", res["models"]):
        for e in m["results"]:
            assert e["n_properties"] == 20
            assert e["clean_acc"] == pytest.approx(_accuracy(tmp / f"{name}.onnx", x, y), abs=1e-9)
            # what CROWN proves alpha-CROWN proves, and the complete verifier proves both
            assert e["proved_crown_pct"] <= e["proved_alpha_pct"] <= e["unsat_pct"]
            assert e["unsat_pct"] + e["sat_pct"] + e["timeout_pct"] + e["misclassified_pct"] == \
                pytest.approx(100.0)
        logs = sorted(out.glob(f"{name}.eps*.t10.verify.jsonl"))
        assert len(logs) == 2
        lines = [json.loads(s) for s in logs[0].read_text().splitlines()[1:]]
        assert [ln["index"] for ln in lines] == list(range(5, 25))
        assert [ln["label"] for ln in lines] == y[5:25].tolist()
    rows = list(csv.DictReader(io.StringIO((out / "verified.csv").read_text())))
    assert [(row["verifier"], row["model"]) for row in rows] == [
        ("CROWN", "a"), ("CROWN", "b"), ("alpha-CROWN", "a"), ("alpha-CROWN", "b"),
        ("complete (10 s)", "a"), ("complete (10 s)", "b")]
    key = {"CROWN": "proved_crown_pct", "alpha-CROWN": "proved_alpha_pct",
           "complete (10 s)": "unsat_pct"}
    for row in rows:
        m = res["models"]["ab".index(row["model"])]
        for e in m["results"]:
            assert float(row[f"eps={e['eps']:g}"]) == pytest.approx(e[key[row["verifier"]]])
    md = (out / "verified.md").read_text()
    assert md.count("\n") == 2 + len(rows) and "| eps=0.02 | eps=0.1 |" in md
    assert (out / "verified.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "results.json").read_text())["verified_csv"] == \
        (out / "verified.csv").read_text()


def test_verify_an_onnx_model_on_an_index_range(setup):
    tmp, _, y = setup
    log = tmp / "v.jsonl"
    r = runner.invoke(app, ["verify", "--model", str(tmp / "a.onnx"), "--dataset", "tiny",
                            "--data-dir", str(tmp), "--indices", "0:8", "--eps", "0.05",
                            "--timeout", "10", "--out", str(log), "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert lines[0]["indices"] == [0, 8] and lines[0]["dataset"] == "tiny"
    assert [ln["index"] for ln in lines[1:]] == list(range(8))
    assert [ln["label"] for ln in lines[1:]] == y[:8].tolist()
    assert [ln["status"] == "misclassified" for ln in lines[1:]] == [i % 7 == 0 for i in range(8)]
    # the same log with another range is refused, not mixed
    r = runner.invoke(app, ["verify", "--model", str(tmp / "a.onnx"), "--dataset", "tiny",
                            "--data-dir", str(tmp), "--indices", "0:9", "--eps", "0.05",
                            "--timeout", "10", "--out", str(log)])
    assert r.exit_code == 2 and "other settings" in r.output, r.output


@pytest.mark.parametrize(("args", "words"), [
    (["--indices", "5"], "--indices"),
    (["--indices", "9:3"], "--indices"),
    (["--indices", "0:999"], "runs past"),
    (["--dataset", "other"], "shape"),
    (["MODEL.txt"], "neither"),
    (["MODEL"], "twice"),
    (["--out", "FILE"], "is a file"),
])
def test_bad_evaluate_inputs_are_one_sentence(setup, args, words):
    tmp, x, _ = setup
    np.savez(tmp / "other.npz", x_train=x[:, :, :3, :3], y_train=np.zeros(40, int),
             x_test=x[:, :, :3, :3], y_test=np.zeros(40, int))
    (tmp / "file").write_text("not a folder")
    (tmp / "m.txt").write_text("not a model")
    subst = {"MODEL.txt": str(tmp / "m.txt"), "MODEL": str(tmp / "a.onnx"),
             "FILE": str(tmp / "file")}
    args = [subst.get(a, a) for a in args]
    before = sorted(p.name for p in tmp.iterdir())
    r = runner.invoke(app, ["evaluate", str(tmp / "a.onnx"), "--data-dir", str(tmp),
                            "--dataset", "tiny", "--timeout", "5", *args])
    assert r.exit_code == 2 and "Traceback" not in r.output and words in r.output, r.output
    assert sorted(p.name for p in tmp.iterdir()) == before  # no log, no folder left behind


VNNLP = Path(__file__).resolve().parents[2] / "shared" / "vnnlp" / "mnist_relu_2_50.onnx"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not VNNLP.is_file() or not (DATASETS / "mnist").is_dir(),
                    reason="../shared/vnnlp or ../shared/datasets/mnist absent")
def test_verify_the_vnn_papers_onnx_network_on_mnist(tmp_path):
    """A user's ONNX model (flat 784 input, pixels in [0, 1]) on the MNIST test images: the
    campaign's predictions are onnxruntime's, misclassified exactly where it misclassifies,
    and the easy radius is mostly proved; a data set of another shape is one sentence, and
    no log is written."""
    from verifriend.data import load_dataset

    log = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["verify", "--model", str(VNNLP), "--dataset", "mnist",
                            "--data-dir", str(DATASETS), "--indices", "0:12", "--eps", "0.02",
                            "--timeout", "10", "--out", str(log), "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert lines[0]["dataset"] == "mnist" and [ln["index"] for ln in lines[1:]] == list(range(12))
    data = load_dataset("mnist", str(DATASETS))
    x = data.x_test[:12].numpy().reshape(12, 784).astype(np.float32)
    sess = ort.InferenceSession(str(VNNLP), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: xi[None]})[0].argmax()) for xi in x]
    assert [ln["predicted"] for ln in lines[1:]] == pred
    for ln, p, label in zip(lines[1:], pred, data.y_test[:12].tolist()):
        assert ln["label"] == label
        assert (ln["status"] == "misclassified") == (p != label)
        assert ln["status"] in ("unsat", "sat", "timeout", "unknown", "misclassified")
    assert sum(ln["status"] == "unsat" for ln in lines[1:]) >= 8  # eps 0.02 is easy here
    bad = runner.invoke(app, ["verify", "--model", str(VNNLP), "--dataset", "cifar10",
                              "--data-dir", str(DATASETS), "--indices", "0:4", "--eps", "0.02",
                              "--timeout", "5", "--out", str(tmp_path / "c.jsonl")])
    assert bad.exit_code == 2 and "takes inputs of shape (784,)" in bad.output, bad.output
    assert not (tmp_path / "c.jsonl").exists()
