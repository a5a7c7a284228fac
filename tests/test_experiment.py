"""Experiment recipes end to end, and the paper-layout table and radar scores."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from verifriend.app.experiment import parse_experiment
from verifriend.cli import app
from verifriend.errors import UserError
from verifriend.metrics.paper import paper_markdown, paper_rows, radar_scores


def _res(clean, rows):
    return {"results": [{"eps": e, "clean_acc": clean, **r} for e, r in rows]}


def test_radar_scores_best_is_100_and_times_are_inverted():
    results = {
        "a": _res(90.0, [(0.1, {"unsat_pct": 80.0, "stable_pct": 50.0, "verify_time_s": 2.0,
                               "verify_time_unsat_timeout_s": 4.0, "pgd_acc": 70.0})]),
        "b": _res(99.0, [(0.1, {"unsat_pct": 40.0, "stable_pct": 100.0, "verify_time_s": 1.0,
                               "verify_time_unsat_timeout_s": 8.0, "pgd_acc": 35.0})]),
    }
    labels, s = radar_scores(results, 0.1)
    assert labels[0] == "Test acc" and len(labels) == 6
    for i in range(len(labels)):
        assert max(s["a"][i], s["b"][i]) == pytest.approx(100.0)
    t = labels.index("Time")
    assert s["b"][t] == pytest.approx(100.0) and s["a"][t] == pytest.approx(50.0)
    assert s["a"][labels.index("UNSAT")] == pytest.approx(100.0)
    assert s["b"][labels.index("UNSAT")] == pytest.approx(50.0)
    rows = dict(paper_rows(results))
    assert rows["Test acc %"] == [90.0, 99.0] and rows["UNSAT % (eps=0.1)"] == [80.0, 40.0]
    assert paper_markdown(results).startswith("| metric | a | b |")


def test_recipe_errors_are_user_errors():
    for bad in ([], {"methods": {}}, {"methods": {"x": {"method": "magic"}}},
                {"methods": {"x": {"from": "y"}, "y": {}}},
                {"methods": {"x": {"stop_acc_band": [0.5, 0.9]}}},
                {"methods": {"x": {}}, "evaluate": {"radius": 1}},
                {"methods": {"x": {}}, "colour": 1}, {"methods": {"x": {}}, "evaluate": {"eps": []}}):
        with pytest.raises(UserError):
            parse_experiment(bad)


def test_experiment_end_to_end_and_resumed(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("""
description: tiny
dataset: mnist-embedded
arch: fc_1x20
train: {epochs: 1, eps: 0.05, lr: 0.003, limit: 256, batch_size: 64, pgd_steps: 2, nbc_k: 2}
methods:
  natural: {method: natural}
  nbc: {method: nbc}
  rs-then-nbc: {phases: [{method: rs, epochs: 1}, {method: rs+nbc, epochs: 1}]}
  tuned: {from: natural, method: madry, epochs: 3, val_split: 0.25, stop_acc_band: [0.0, 1.0]}
evaluate: {eps: [0.01, 0.03], per_class: 1, timeout: 2, pgd_steps: 5}
""")
    out = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["natural", "nbc", "rs-then-nbc", "tuned"]
    # fine-tuning from natural stopped after the first epoch inside the band [0, 1]
    tuned = json.loads((out / "tuned" / "model.train.json").read_text())
    assert [h.get("stopped") for h in tuned["history"]] == [True]
    assert tuned["config"]["init"].endswith("natural/model.pt")
    for m in res["methods"].values():
        assert [x["eps"] for x in m["results"]] == [0.01, 0.03]
        for x in m["results"]:
            assert abs(x["unsat_pct"] + x["sat_pct"] + x["timeout_pct"]
                       + x["misclassified_pct"] - 100) < 1e-6
    table = (out / "table.md").read_text()
    assert "UNSAT % (eps=0.01)" in table and "Time over UNSAT+timeout s (eps=0.03)" in table
    for f in ("results.csv", "radar_eps0.01.png", "radar_eps0.03.png", "unsat_vs_eps.png"):
        assert (out / f).stat().st_size > 0
    hist = json.loads((out / "rs-then-nbc" / "model.train.json").read_text())["history"]
    assert [h["phase"] for h in hist] == [1, 2]

    # again: everything resumes (no epoch retrained, no property re-verified), same table
    before = (out / "natural" / "model.pt").stat().st_mtime_ns
    logs = {p: p.read_text() for p in out.glob("*/*.verify.jsonl")}
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert {p: p.read_text() for p in out.glob("*/*.verify.jsonl")} == logs
    assert (out / "natural" / "model.pt").stat().st_mtime_ns == before  # not retrained
    assert json.loads((out / "results.json").read_text())["methods"]["nbc"]["results"][0][
        "unsat_pct"] == res["methods"]["nbc"]["results"][0]["unsat_pct"]


def test_only_runs_some_methods_and_the_tables_gather_every_evaluated_one(tmp_path):
    """--only (one process per core on the same --out): each call trains and evaluates its
    methods; the tables then cover every method evaluated there, in the recipe's order; a
    finished method's metrics are read back, not recomputed."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("""
dataset: mnist-embedded
arch: fc_1x20
train: {epochs: 1, eps: 0.05, lr: 0.003, limit: 256, batch_size: 64, pgd_steps: 2, nbc_k: 2}
methods:
  natural: {method: natural}
  nbc: {method: nbc, nbc_step: gradient}
  tuned: {from: natural, method: madry}
evaluate: {eps: [0.01], per_class: 1, timeout: 1, pgd_steps: 3}
""")
    out, runner = tmp_path / "run", CliRunner()
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out), "--only", "tuned"])
    assert r.exit_code == 2 and "--only natural" in r.output and not out.exists()
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out), "--only", "magic"])
    assert r.exit_code == 2 and "not a method of the recipe" in r.output
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out), "--only", "nbc"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "not evaluated" in said and "natural, tuned;" in said
    assert list(json.loads((out / "results.json").read_text())["methods"]) == ["nbc"]
    assert "| metric | nbc |" in (out / "table.md").read_text()
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out), "--only", "natural",
                            "--only", "tuned"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["natural", "nbc", "tuned"]
    saved = {p: p.stat().st_mtime_ns for p in out.glob("*/evaluation.json")}
    assert len(saved) == 3
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out)])
    assert r.exit_code == 0 and "evaluating" not in r.output, r.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/evaluation.json")} == saved
    assert json.loads((out / "results.json").read_text())["methods"] == res["methods"]
    # another plan (a new radius) evaluates again
    recipe.write_text(recipe.read_text().replace("eps: [0.01]", "eps: [0.01, 0.02]"))
    r = runner.invoke(app, ["experiment", str(recipe), "--out", str(out), "--only", "nbc"])
    assert r.exit_code == 0 and "nbc: evaluating" in r.output, r.output
    assert list(json.loads((out / "results.json").read_text())["methods"]) == ["nbc"]


def test_shipped_recipes_parse():
    from pathlib import Path

    from verifriend.app.experiment import load_experiment

    recipes = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        exp = load_experiment(path)
        assert exp.methods and exp.evaluate["eps"]


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_a_recipe_runs_on_other_data_sets_unchanged(tmp_path, dataset):
    """The same recipe file, pointed at another data set from ../shared/datasets (or
    $VERIFRIEND_DATA) with --dataset: cnn_4layer is built for its shape, nothing else moves."""
    from verifriend.data import load_dataset

    try:
        load_dataset(dataset)
    except UserError:
        pytest.skip(f"{dataset} is not in ../shared/datasets or $VERIFRIEND_DATA here")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("""
dataset: mnist
arch: cnn_4layer
train: {epochs: 1, eps: 0.01, lr: 0.001, limit: 256, batch_size: 64, nbc_k: 2, pgd_steps: 2}
methods: {natural: {method: natural}, nbc: {method: nbc}}
evaluate: {eps: [0.002], per_class: 1, timeout: 2, pgd_steps: 5, test_limit: 200}
""")
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["experiment", str(recipe), "--out", str(out),
                                 "--dataset", dataset])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"]["dataset"] == load_dataset(dataset).display_name
    for m in res["methods"].values():
        assert m["results"][0]["n_properties"] == 10
