"""experiments/beside_paper.py and settings_table.py: the NBC paper's numbers file is
well-formed, and our results land in the right cells beside them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_numbers_have_one_value_per_method_everywhere():
    paper = json.loads((EXPERIMENTS / "nbc_paper_numbers.json").read_text())
    metrics = set(_load("beside_paper").METRICS)
    for key, t in paper.items():
        if key.startswith("_"):
            continue
        n = len(t["methods"])
        assert len(t["Test acc %"]) == n, key
        radii = [r for r in t if r not in ("methods", "Test acc %")]
        assert len(radii) >= 3, key
        for r in radii:
            assert set(t[r]) == metrics, (key, r)
            assert all(len(v) == n for v in t[r].values()), (key, r)
    # spot checks against the paper's Table 1 (M1, eps 0.3) and Table 5 (C1, 8/255)
    assert paper["mnist-M1"]["0.3"]["UNSAT %"] == [29.4, 35.5, 7.0, 60.1]
    assert paper["cifar10-C1"]["8/255"]["Stable %"] == [10.1, 5.8, 10.8, 57.7]


def _run(tmp_path: Path, values: dict[str, tuple[float, float]]) -> Path:
    """A results.json with, per method, (UNSAT %, Stable %) at eps 0.1, 0.2, 0.3."""
    methods = {}
    for name, (unsat, stable) in values.items():
        methods[name] = {"train_time_s": 10.0, "results": [
            {"eps": e, "clean_acc": 90.0, "unsat_pct": unsat, "stable_pct": stable,
             "verify_time_s": 1.0, "verify_time_unsat_timeout_s": 2.0, "pgd_acc": 80.0,
             "sat_pct": 0.0, "timeout_pct": 100 - unsat} for e in (0.1, 0.2, 0.3)]}
    (tmp_path / "results.json").write_text(json.dumps({"methods": methods}))
    return tmp_path


def test_beside_puts_ours_then_the_papers_and_orders_methods(tmp_path):
    run = _run(tmp_path, {"trades": (40.0, 30.0), "madry": (50.0, 30.0), "rs": (10.0, 5.0),
                          "nbc": (70.0, 60.0), "trades+nbc": (45.0, 50.0)})
    bp = _load("beside_paper")
    text = bp.beside(run, "mnist-M1", ["trades", "madry", "rs", "nbc"])
    assert "| UNSAT % (eps=0.3) | 40.0 / 29.4 | 50.0 / 35.5 | 10.0 / 7.0 | 70.0 / 60.1 |" in text
    assert ("Stable % at eps 0.3: ours nbc 60.0 > trades 30.0 = madry 30.0 > rs 5.0; "
            "paper nbc 47.8 > madry 40.7 > trades 6.2 > rs 2.4") in text
    deltas = bp.beside(run, "mnist-M1-delta", [], [("trades+nbc", "trades"),
                                                   ("trades+nbc", "madry"), ("nbc", "rs")])
    assert "| Stable % (eps=0.3) | +20.0 / +41.6 | +20.0 / +46.2 | +55.0 / +69.1 |" in deltas
    assert bp.main([str(tmp_path / "nowhere"), "--paper", "mnist-M1"]) == 2


def test_settings_table_one_row_per_method(tmp_path):
    run = _run(tmp_path, {"nbc": (70.0, 60.0), "nbc-beta3": (75.0, 65.0)})
    text = _load("settings_table").table([run], [0.3])
    assert "| nbc-beta3 | 90.0 | 10 | 75 | 65.0 | 0 / 25 | 80.0 |" in text
