"""The main job end to end at a tiny scale: files written, keys stable, numbers in range."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from verifriend.app.demo import DemoConfig, run_demo


def test_demo_writes_results_report_and_chart(tmp_path):
    cfg = DemoConfig(arch="fc_1x20", epochs=1, per_class=2, verify_timeout=2.0,
                     out=str(tmp_path))
    run_demo(cfg, Console(quiet=True))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == {"natural", "nbc"}
    for m in results["models"].values():
        for key in ("clean_acc", "pgd_acc", "stable_pct", "proved_pct"):
            assert 0.0 <= m[key] <= 100.0, (key, m[key])
        assert m["n_properties"] == 20
        assert m["pgd_acc"] <= m["clean_acc"]
        # the complete verifier's verdicts cover every property; a proof by CROWN is a
        # proof for it too, and an attack hit (SAT) is never proved
        shares = m["unsat_pct"] + m["sat_pct"] + m["timeout_pct"] + m["misclassified_pct"]
        assert abs(shares - 100.0) < 1e-6
        assert m["unsat_pct"] >= m["proved_pct"] - 1e-9
        lines = [json.loads(ln) for ln in Path(m["verify_log"]).read_text().splitlines()][1:]
        assert len(lines) == 20
        assert m["verify_time_s"] is not None and m["verify_time_s"] >= 0
    report = (tmp_path / "report.md").read_text()
    assert "| Stable % |" in report and "friendliness.png" in report
    assert "| UNSAT % |" in report and "| Time over UNSAT+timeout s |" in report
    assert (tmp_path / "friendliness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
