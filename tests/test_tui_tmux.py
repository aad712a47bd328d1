"""The real app in a real terminal (tmux): start it, press keys, read the screen.

Catches what Pilot cannot: terminal queries answered on stdin, start-up, the console script."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, seed_store, write_pcam

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, session: str, cwd, command: str, size=(130, 32)):
        self.session = session
        env = f"PYTHONPATH={ROOT} DDPM_TUI_CACHE={cwd}/cache"
        # a server of our own (-L), so other tmux sessions on the machine cannot resize the window
        self.tmux = ["tmux", "-L", session, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]),
                        f"cd {cwd} && {env} {command}"], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session], capture_output=True,
                              text=True).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.session, key], check=True)
            time.sleep(0.15)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def tmux_app(tmp_path):
    write_pcam(tmp_path / "pcam")
    seed_store(tmp_path)
    term = Tmux(f"ddpm-test-{os.getpid()}-{time.monotonic_ns()}", tmp_path, f"{sys.executable} -m ddpm_tui")
    yield term
    term.close()


def test_real_terminal_walk_through_every_view(tmux_app):
    screen = tmux_app.wait_for("seed-3")
    assert "seed-1" in screen and "finished" in screen and "q Quit ? Help" in screen, screen
    views = {"2": "launch a run", "3": "ablation", "5": "blind test", "1": "runs"}
    for key, title in views.items():
        tmux_app.keys(key)
        screen = tmux_app.wait_for(title)
        assert "Keys —" not in screen, f"a stray dialog opened on view {key}:\n{screen}"
    tmux_app.keys("6")  # the machine view exists on a CPU box too: CPU and RAM, and why there is no GPU
    screen = tmux_app.wait_for("No NVIDIA GPU found")
    assert "CPU" in screen and "RAM" in screen and "GiB of" in screen, screen
    tmux_app.keys("Escape")
    tmux_app.wait_for("ddpm-tui — runs")
    tmux_app.keys("Enter")
    tmux_app.wait_for("run 1 line 2")
    assert "train/loss" in tmux_app.wait_for("esc Back")
    tmux_app.keys("Escape", "?")
    tmux_app.wait_for("Keys —")
    tmux_app.keys("Escape", "q")
    deadline = time.time() + 10
    while time.time() < deadline and "ddpm-tui" in tmux_app.screen():
        time.sleep(0.1)
    assert "ddpm-tui — runs" not in tmux_app.screen()


def test_a_store_with_markup_and_escapes_in_names_opens_in_a_real_terminal(tmp_path):
    from core.store import Store, queries

    write_pcam(tmp_path / "pcam")
    url, _ = seed_store(tmp_path)
    store = Store(url)
    queries.update_run(store, 1, name="[/]")
    queries.update_run(store, 2, name="x\x1b]0;pwned\x07y\x1b[2J")
    store.close()
    term = Tmux(f"ddpm-test-{os.getpid()}-{time.monotonic_ns()}", tmp_path, f"{sys.executable} -m ddpm_tui")
    try:
        screen = term.wait_for("seed-3")
        assert "[/]" in screen and "x\\x1b]0;pwned\\x07y\\x1b[2J" in screen, screen
        title = subprocess.run([*term.tmux, "display-message", "-p", "-t", term.session, "#{pane_title}"],
                               capture_output=True, text=True).stdout
        assert "pwned" not in title, "an OSC sequence from a run name reached the terminal"
        term.keys("q")
    finally:
        term.close()


def test_at_80x24_footers_keep_their_last_key_and_f_keys_leave_a_text_field(tmp_path):
    write_pcam(tmp_path / "pcam")
    seed_store(tmp_path)
    term = Tmux(f"ddpm-test-{os.getpid()}-{time.monotonic_ns()}", tmp_path, f"{sys.executable} -m ddpm_tui",
                size=(80, 24))
    try:
        screen = term.wait_for("seed-3")
        assert screen.rstrip().splitlines()[-1].rstrip().endswith("x Delete"), screen  # the runs footer's last key
        term.keys("5")
        term.wait_for("ddpm-tui — blind test")
        term.keys("e", "BSpace", "BSpace", "4")  # the run id field has the keyboard: 4 is text there
        time.sleep(0.5)
        assert "ddpm-tui — blind test" in term.screen()
        term.keys("F1")
        term.wait_for("ddpm-tui — runs")
    finally:
        term.close()
