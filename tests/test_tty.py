"""The main commands in a real terminal (a pseudo-terminal), as a person types them.

The other CLI tests pipe their output, so they never see what only happens on a TTY: the progress
bar of `train` once crashed on every terminal while every piped test passed."""

import json
import re

import pytest

from conftest import TINY, run_on_pty, write_pcam
from core.store import Store, queries


@pytest.fixture
def tty_dir(tmp_path):
    write_pcam(tmp_path / "pcam")
    return tmp_path


def assert_clean(code: int, screen: str, what: str) -> None:
    assert code == 0 and "Traceback" not in screen, f"{what} (exit {code}):\n{screen[-3000:]}"


@pytest.mark.slow
def test_train_sample_list_show_on_a_terminal(tty_dir):
    code, screen = run_on_pty(["train", "--data", "pcam", *TINY, "--max-steps", "12", "--ckpt-every", "6",
                               "--name", "tty-run"], tty_dir)
    assert_clean(code, screen, "train")
    assert "12/12" in screen and "run 1 finished at step 12/12" in screen
    assert "\x1b[" in screen, "on a terminal the progress bar is drawn (with colour)"
    run = queries.get_run(Store(f"sqlite:///{tty_dir / 'runs.db'}"), 1)
    assert run.status == "finished" and run.step == 12

    code, screen = run_on_pty(["train", "--data", "pcam", *TINY, "--max-steps", "20", "--ckpt-every", "10",
                               "--nproc", "2", "--name", "tty-ddp"], tty_dir)
    assert_clean(code, screen, "train --nproc 2")
    assert "run 2: 2 processes x batch 8 = global batch 16" in screen and "run 2 finished at step 20/20" in screen
    # a message clears the bar's line and is printed above the redrawn bar, never glued to its end
    assert "\x1b[2Krun 2: 2 processes" in screen and not re.search(r"-:--\x1b\[0mrun 2", screen)
    assert "20/20" in screen and "\x1b[" in screen

    code, screen = run_on_pty(["sample", "1", "--n", "4", "--steps", "3", "--out", "grid.png"], tty_dir)
    assert_clean(code, screen, "sample")
    assert (tty_dir / "grid.png").stat().st_size > 0 and "ddim: 3 of 50 steps" in screen
    assert "sampling" in screen and "3/3" in screen, "sampling shows its progress (steps x batches) on a terminal"

    for args in (["runs", "list"], ["runs", "show", "1"], ["data", "check", "pcam"], ["export"]):
        code, screen = run_on_pty(args, tty_dir)
        assert_clean(code, screen, " ".join(args))
        assert "tty-run" in screen or "pcam layout" in screen


def test_demo_without_the_ui_on_a_terminal(tty_dir):
    code, screen = run_on_pty(["demo", "--no-tui", "--steps", "4"], tty_dir, timeout=180)
    assert_clean(code, screen, "demo --no-tui")
    assert "run 1 finished" in screen and (tty_dir / "runs" / "1" / "samples" / "reverse-step-00000004.gif").exists()


def test_launch_stop_and_resume_on_a_terminal(tty_dir):
    code, screen = run_on_pty(["launch", "--data", "pcam", *TINY, "--max-steps", "100000"], tty_dir)
    assert_clean(code, screen, "launch")
    code, screen = run_on_pty(["runs", "stop", "1", "--wait", "60"], tty_dir)
    assert_clean(code, screen, "runs stop")
    code, screen = run_on_pty(["runs", "list", "--json"], tty_dir)
    assert_clean(code, screen, "runs list --json")
    assert json.loads(screen)[0]["status"] == "stopped"


def test_a_failing_train_on_a_terminal_is_one_line_and_stores_nothing(tty_dir):
    code, screen = run_on_pty(["train", "--data", "pcam", *TINY, "--lr", "inf"], tty_dir)
    assert code == 2 and "Traceback" not in screen
    assert [line for line in screen.splitlines() if line.strip()] == ["error: --lr: must be a finite number, got inf"]
    assert not (tty_dir / "runs.db").exists()
