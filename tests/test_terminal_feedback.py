"""What a user sees in a real terminal: the commands run in tmux (a private server, 160x50)
and the visible text of the pane is checked: train's validation accuracy per epoch,
verify's running tally, evaluate's phase bars, `vnncomp --verbose`'s stage lines, and
Ctrl-C ending a command with one sentence and exit code 130.

With $VERIFRIEND_FEEDBACK_OUT set, the captured panes are also written to that file
(scripts/capture_feedback.sh writes docs/terminal_feedback.txt this way)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verifriend.cli import app

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
EXIT = re.compile(r"^\[exit (\d+)\]$", re.MULTILINE)
STAGE = re.compile(r"^ +\d+\.\d\d s  ", re.MULTILINE)


class Terminal:
    """A private tmux server; :meth:`run` types a command into a fresh 160x50 session and
    returns the pane's text (scrollback included) and the command's exit code."""

    def __init__(self, cwd: Path):
        self.socket = f"verifriend-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd
        self.panes: list[tuple[str, str]] = []

    def tmux(self, *args: str) -> str:
        # a new session's shell takes PATH from the tmux client's environment
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              text=True, capture_output=True, timeout=30, env=env).stdout

    def capture(self, name: str) -> str:
        lines = self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", name).rstrip().splitlines()
        return "\n".join(line.rstrip() for line in lines)

    def run(self, command: str, *, interrupt_when: str | None = None, after: float = 1.0,
            timeout: float = 180.0) -> tuple[str, int]:
        """Run ``command``; with ``interrupt_when``, press Ctrl-C ``after`` seconds after
        that text shows up in the pane."""
        name = f"t{len(self.panes)}"
        rc = self.cwd / ".bashrc"
        rc.write_text("PS1='$ '\nunset HISTFILE\n")
        self.tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "50", "-c", str(self.cwd),
                  f"bash --noprofile --rcfile {rc}")
        end = time.monotonic() + 30
        while not self.capture(name).startswith("$") and time.monotonic() < end:
            time.sleep(0.05)  # the prompt: keys typed earlier would be echoed before it
        self.tmux("send-keys", "-t", name, "-l", f'{command}; echo "[exit $?]"')
        self.tmux("send-keys", "-t", name, "Enter")
        end, pressed = time.monotonic() + timeout, interrupt_when is None
        while time.monotonic() < end:
            time.sleep(0.2)
            text = self.capture(name)
            if not pressed and interrupt_when in text.split("\n", 1)[-1]:
                time.sleep(after)
                self.tmux("send-keys", "-t", name, "C-c")
                pressed = True
            m = EXIT.search(text)
            if m:
                self.panes.append((command, text))
                return text, int(m.group(1))
        raise AssertionError(f"{command!r} did not finish in {timeout} s:\n{self.capture(name)}")

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", "kill-server"],
                       check=False, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    if TMUX is None:
        pytest.skip("tmux is not installed")
    t = Terminal(tmp_path_factory.mktemp("term"))
    yield t
    t.close()
    out = os.environ.get("VERIFRIEND_FEEDBACK_OUT")
    if out:
        text = "".join(f"==== {cmd}\n{pane}\n\n" for cmd, pane in t.panes)
        Path(out).write_text("Terminal panes (tmux, 160 columns) captured by "
                             "tests/test_terminal_feedback.py\n\n" + text)


@pytest.fixture(scope="module")
def trained(term):
    """`verifriend train` of a small fc net (1 x 20 ReLUs) on the embedded MNIST subset, as
    typed in the terminal; (its pane, the model's path)."""
    text, code = term.run("verifriend train --arch fc_1x20 --epochs 2 --lr 0.01 --limit 2000 "
                          "--out run")
    assert code == 0, text
    return text, term.cwd / "run" / "model.pt"


@needs_tmux
def test_train_shows_validation_accuracy_per_epoch(trained):
    text, _ = trained
    for epoch in (1, 2):
        line = next(ln for ln in text.splitlines() if f"natural epoch {epoch}/2" in ln)
        assert re.search(r"loss \d\.\d{4}  acc \d\.\d{3}  val acc \d\.\d{3}", line), line
    assert re.search(r"train acc [\d.]+%, validation acc [\d.]+%", text), text


@needs_tmux
def test_verify_bar_keeps_a_tally(term, trained):
    text, code = term.run("verifriend verify --model run/model.pt --eps 0.01 --timeout 5 "
                          "--per-class 2")
    assert code == 0, text
    bar = next(ln for ln in text.splitlines() if ln.startswith("verify eps=0.01"))
    assert "20/20" in bar and re.search(r"unsat \d+", bar), bar
    assert "Traceback" not in text


@needs_tmux
def test_evaluate_shows_a_bar_per_phase(term, trained):
    text, code = term.run("verifriend evaluate run/model.pt --eps 0.01 --per-class 2 "
                          "--pgd-steps 5 --test-limit 500 --alpha --timeout 2")
    assert code == 0, text
    lines = text.splitlines()

    def line(start: str) -> str:
        return next(ln for ln in lines if ln.startswith(start))

    assert re.search(r"1/1 .* \d+/500 correct", line("eps=0.01 clean accuracy"))
    assert re.search(r"2/2 .* \d+/500 robust", line("eps=0.01 PGD-5 accuracy"))
    assert re.search(r"IBP \d+  CROWN \d+ proved of 20", line("eps=0.01 IBP/CROWN bounds"))
    assert re.search(r"\d+ proved of 20", line("eps=0.01 alpha-CROWN bounds"))
    assert "20/20" in line("verify eps=0.01")
    assert "Clean acc %" in text  # and the table after the bars


def write_vnnlib(path: Path, x, label: int, eps: float, n_out: int = 10) -> None:
    """Linf robustness of image ``x`` (pixels in [0, 1]) as VNN-LIB."""
    flat = x.reshape(-1).tolist()
    rows = [f"(declare-const X_{i} Real)" for i in range(len(flat))]
    rows += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, v in enumerate(flat):
        rows += [f"(assert (<= X_{i} {min(v + eps, 1.0)!r}))",
                 f"(assert (>= X_{i} {max(v - eps, 0.0)!r}))"]
    rows.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))"
                                          for j in range(n_out) if j != label) + "))")
    path.write_text("\n".join(rows) + "\n")


@needs_tmux
def test_vnncomp_verbose_prints_the_stages(term, trained):
    from verifriend.app.artifacts import export_checkpoint
    from verifriend.app.settings import ExportSettings
    from verifriend.data import load_dataset

    _, model = trained
    export_checkpoint(ExportSettings(model, term.cwd / "run" / "model.onnx"))
    data = load_dataset("mnist-embedded")
    # (an instance that IBP and CROWN leave open: attack, alpha-CROWN, MILP or BaB follow)
    write_vnnlib(term.cwd / "prop.vnnlib", data.x_test[0], int(data.y_test[0]), 0.06)
    text, code = term.run("verifriend vnncomp run/model.onnx prop.vnnlib --timeout 30 "
                          "--out result.txt --verbose")
    assert code == 0, text
    stages = [ln for ln in text.splitlines() if STAGE.match(ln)]
    assert "loaded:" in stages[0] and "verdict" in stages[-1], text
    times = [float(ln.split()[0]) for ln in stages]
    assert times == sorted(times) and times[0] > 0
    assert any(re.search(r"IBP margin \S+, best bound \S+", ln) for ln in stages), text
    status = (term.cwd / "result.txt").read_text().splitlines()[0]
    assert f"verdict {status} " in stages[-1]
    # stdout's line, as without --verbose
    assert re.search(rf"^{status}  [\d.]+ s$", text, re.MULTILINE)


@needs_tmux
def test_ctrl_c_says_how_to_resume_and_exits_130(term, trained):
    text, code = term.run("verifriend verify --model run/model.pt --eps 0.03 --timeout 30 "
                          "--per-class 50 --out long.jsonl", interrupt_when="verify eps=0.03")
    assert code == 130, text
    assert "interrupted; run the same command again to resume" in text
    assert "Traceback" not in text and "Aborted" not in text
    assert (term.cwd / "long.jsonl").exists()  # what was decided is kept for the resume


# ---- the same guard, in-process: which commands say they resume


runner = CliRunner()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_a_resumable_command(monkeypatch, tmp_path):
    import verifriend.app.train

    monkeypatch.setattr(verifriend.app.train, "run_train", _interrupt)
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "o")])
    assert r.exit_code == 130
    assert r.output.strip() == "interrupted; run the same command again to resume"


def test_ctrl_c_in_a_command_that_does_not_resume(monkeypatch, tmp_path):
    import verifriend.app.artifacts

    monkeypatch.setattr(verifriend.app.artifacts, "export_checkpoint", _interrupt)
    r = runner.invoke(app, ["export", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")])
    assert r.exit_code == 130
    assert r.output.strip() == "interrupted"
