"""Campaigns on Ray workers and in shards: the same verdicts as one process, every property
exactly once in the results file (a worker killed mid-property included), shards that add up
to the whole campaign, and one sentence for what cannot run."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest
from test_campaign import assert_user_error
from typer.testing import CliRunner

from verifriend.app.campaign import campaign, merge_results, read_results
from verifriend.app.campaign_ray import MAX_RETRIES, RAY_MISSING
from verifriend.app.settings import CampaignSettings
from verifriend.cli import app
from verifriend.data import load_dataset
from verifriend.errors import UserError
from verifriend.specs.spec import Spec
from verifriend.verify.verifier import verify_spec

runner = CliRunner()
EPS, TIMEOUT, INDICES = 0.02, 10.0, (0, 100)  # 100 properties, each decided in milliseconds


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with two worker slots for this module (the campaigns find it
    connected and use it)."""
    ray = pytest.importorskip("ray")  # part of the `test` extra: skipped only without it
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    # the workers cannot import this test module: its verify wrappers travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def settings(ckpt, out, **kw) -> CampaignSettings:
    return CampaignSettings(ckpt, EPS, TIMEOUT, out=out, indices=INDICES, **kw)


@pytest.fixture(scope="module")
def single(ckpt, tmp_path_factory):
    """The single-process run: (results file, {test index: status})."""
    out = tmp_path_factory.mktemp("single") / "single.jsonl"
    campaign(settings(ckpt, out), progress=False)
    return out, statuses(out)


def statuses(path) -> dict[int, str]:
    """{index: status} of a results file, checking that no index is in it twice."""
    header, lines, truncated = read_results(path)
    assert header is not None and not truncated
    indices = [ln["index"] for ln in lines]
    assert len(indices) == len(set(indices)), "a property is in the file twice"
    return {ln["index"]: ln["status"] for ln in lines}


class KillOnce:
    """``verify_spec``, except that the worker process deciding the property whose input box
    starts at ``lower`` dies (os._exit) in the middle of it: the first time only (``marker``
    is created then; the file system makes "first" hold across processes), or on every try
    with ``always``."""

    def __init__(self, lower, marker, always: bool = False):
        self.lower, self.marker, self.always = lower, str(marker), always

    def __call__(self, graph, specs, input_shape, **kw):
        import torch

        if torch.equal(specs[0].lower, self.lower):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                first = True
            except FileExistsError:
                first = False
            if first or self.always:
                os._exit(1)
        return verify_spec(graph, specs, input_shape, **kw)


def victim(ckpt, single_statuses) -> tuple[int, object]:
    """A correctly classified property in the middle of the campaign, and its input box's
    lower corner."""
    k = [i for i, s in single_statuses.items() if s != "misclassified"][40]
    data = load_dataset("mnist-embedded")
    return k, Spec.linf_robustness(data.x_test[k].flatten(), int(data.y_test[k]), EPS, 10).lower


def test_ray_gives_the_single_process_verdicts(ray_cluster, ckpt, single, tmp_path):
    single_out, expected = single
    assert len(expected) == 100 and len(set(expected.values())) > 1
    out = tmp_path / "ray.jsonl"
    s = campaign(settings(ckpt, out, ray="local"), progress=False)
    assert statuses(out) == expected
    assert s.new == 100 and s.complete and s.summary["counts"] == \
        campaign(settings(ckpt, single_out), progress=False).summary["counts"]
    assert read_results(out)[0] == read_results(single_out)[0]  # the same header

    # through the command line, and resuming a file cut short in the middle of a line
    cut = tmp_path / "cut.jsonl"
    text = single_out.read_text()
    cut.write_text(text[: text.index("\n", len(text) // 2) + 40])
    kept = len(read_results(cut)[1])
    r = runner.invoke(app, ["verify", "--model", str(ckpt), "--eps", str(EPS), "--timeout",
                            str(TIMEOUT), "--indices", "0:100", "--out", str(cut), "--ray",
                            "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["resumed"] == kept and res["new"] == 100 - kept and res["complete"]
    assert statuses(cut) == expected


def test_a_worker_killed_mid_property_loses_and_duplicates_nothing(ray_cluster, ckpt, single,
                                                                   tmp_path):
    _, expected = single
    _, lower = victim(ckpt, expected)
    marker = tmp_path / "killed"
    out = tmp_path / "ray.jsonl"
    s = campaign(settings(ckpt, out, ray="local"), verify=KillOnce(lower, marker),
                 progress=False)
    assert marker.exists()  # a worker did die, in the middle of property k
    assert statuses(out) == expected  # k decided on the retry, every index once
    assert s.new == 100 and s.complete


def test_a_property_that_kills_every_worker_is_named_and_retried_later(ray_cluster, ckpt,
                                                                       single, tmp_path):
    _, expected = single
    k, lower = victim(ckpt, expected)
    out = tmp_path / "ray.jsonl"
    with pytest.raises(UserError, match=f"{MAX_RETRIES + 1} tries of test index {k};"):
        campaign(settings(ckpt, out, ray="local"),
                 verify=KillOnce(lower, tmp_path / "m", always=True), progress=False)
    got = statuses(out)
    assert set(got) == set(expected) - {k}  # the others are all in, once
    s = campaign(settings(ckpt, out, ray="local"), progress=False)  # a rerun resumes
    assert s.resumed == 99 and s.new == 1 and statuses(out) == expected


def verify_args(ckpt, *extra):
    return ["verify", "--model", str(ckpt), "--eps", str(EPS), "--timeout", str(TIMEOUT),
            "--indices", "0:100", *extra]


def test_shards_add_up_to_the_single_process_run(ray_cluster, ckpt, single):
    single_out, expected = single
    files = []
    for i, extra in ((0, []), (1, ["--ray"])):  # the second shard on Ray
        r = runner.invoke(app, verify_args(ckpt, "--shard", f"{i}/2", "--json", *extra))
        assert r.exit_code == 0, r.output
        res = json.loads(r.output)
        files.append(ckpt.with_name(f"{ckpt.stem}.verify.eps{EPS:g}.shard{i}of2.jsonl"))
        assert res["out_jsonl"] == str(files[-1]) and res["shard"] == [i, 2]
        assert res["total"] == 50 and res["complete"]
        assert set(statuses(files[-1])) == set(range(i, 100, 2))  # positions p % 2 == i
        assert read_results(files[-1])[0]["shard"] == [i, 2]
    merged = merge_results(files)
    assert {**statuses(files[0]), **statuses(files[1])} == expected
    assert merged["complete"] and merged["total"] == 100 and merged["shards"] == [[0, 2], [1, 2]]
    assert merged["counts"] == merge_results([single_out])["counts"]
    assert not merge_results(files[:1])["complete"]
    with pytest.raises(UserError, match="twice"):
        merge_results([files[0], files[0]])
    with pytest.raises(UserError, match="shard"):
        merge_results([files[0], single_out])
    # another shard's file is refused; a finished shard resumes to nothing
    assert_user_error(runner.invoke(app, verify_args(ckpt, "--shard", "1/2", "--out",
                                                     str(files[0]))), "other settings")
    r = runner.invoke(app, verify_args(ckpt, "--shard", "0/2", "--json"))
    assert r.exit_code == 0 and json.loads(r.output)["new"] == 0
    for f in files:
        f.unlink()


@pytest.mark.parametrize("bad", ["2/2", "1/0", "-1/2", "a/b", "3", "1/2/3"])
def test_an_invalid_shard_is_one_sentence(ckpt, bad):
    msg = assert_user_error(runner.invoke(app, verify_args(ckpt, "--shard", bad)), "--shard")
    assert "I/N" in msg
    assert_user_error(runner.invoke(app, ["evaluate", str(ckpt), "--shard", bad]), "--shard")


def test_evaluate_on_ray_in_shards(ray_cluster, ckpt, single, tmp_path):
    _, expected = single
    r = runner.invoke(app, ["evaluate", str(ckpt), "--eps", str(EPS), "--indices", "0:20",
                            "--timeout", str(TIMEOUT), "--pgd-steps", "2", "--test-limit", "50",
                            "--shard", "1/2", "--ray", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    log = tmp_path / f"{ckpt.stem}.eps{EPS:g}.t{TIMEOUT:g}.verify.shard1of2.jsonl"
    assert json.loads(r.output)["results"][0]["verify_log"] == str(log)
    assert statuses(log) == {i: expected[i] for i in range(1, 20, 2)}


def test_without_ray_the_flag_is_one_sentence(ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    out = tmp_path / "r.jsonl"
    msg = assert_user_error(runner.invoke(app, verify_args(ckpt, "--ray", "--out", str(out))))
    assert msg == f"error: {RAY_MISSING}"
    assert not out.exists()
    msg = assert_user_error(runner.invoke(app, verify_args(ckpt, "--ray-address", "auto")))
    assert msg == f"error: {RAY_MISSING}"
    msg = assert_user_error(runner.invoke(app, ["evaluate", str(ckpt), "--timeout", "1", "--ray",
                                                "--out", str(tmp_path / "ev")]))
    assert msg == f"error: {RAY_MISSING}"
