"""The ddpm-tui Textual application: modes (digits) for the top-level views, runs open as screens."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding

from core.text import printable
from ddpm_tui.tui.backend import Backend
from ddpm_tui.tui.nvml import gpus_available
from ddpm_tui.tui.screens.help import HelpScreen, describe_bindings
from ddpm_tui.tui.screens.runs import RunsScreen


def lazy_screen(module: str, name: str):
    """A mode factory that imports its screen on first use: the runs table paints first, and
    numpy, PIL and plotext load only when a view needs them."""
    def make():
        return getattr(importlib.import_module(f"ddpm_tui.tui.screens.{module}"), name)()
    return make


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()
    return text[0] if text else exc.__class__.__name__


class DdpmApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "ddpm-tui"
    MODES = {"runs": RunsScreen, "launch": lazy_screen("launch", "LaunchScreen"),
             "ablation": lazy_screen("ablation", "AblationScreen"), "compare": lazy_screen("compare", "CompareScreen"),
             "blind": lazy_screen("blind", "BlindTestScreen"), "gpus": lazy_screen("gpus", "GpuScreen")}
    DEFAULT_MODE = "runs"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("1", "switch_mode('runs')", "Runs", show=False),
        Binding("2", "switch_mode('launch')", "Launch", show=False),
        Binding("3", "switch_mode('ablation')", "Ablation", show=False),
        Binding("4", "switch_mode('compare')", "Compare", show=False),
        Binding("5", "switch_mode('blind')", "Blind test", show=False),
        Binding("6", "switch_mode('gpus')", "GPUs", show=False),
    ]

    def __init__(self, backend: Backend, open_run_id: int | None = None):
        super().__init__()
        self.backend = backend
        self.open_run_id = open_run_id
        self.launch_prefill: dict | None = None
        self.compare_ids: list[int] = []
        self.has_gpus = gpus_available()

    def on_mount(self) -> None:
        if self.open_run_id is not None:
            self.open_run(self.open_run_id)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The GPU view exists only where NVML sees a GPU."""
        if action == "switch_mode" and parameters == ("gpus",):
            return self.has_gpus
        return True

    # ---- navigation ------------------------------------------------------------------------------
    def open_run(self, run_id: int) -> None:
        from ddpm_tui.tui.screens.detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id))

    def open_launch(self, config: dict | None = None) -> None:
        self.launch_prefill = config
        self.switch_mode("launch")

    def open_compare(self, run_ids: list[int]) -> None:
        self.compare_ids = list(run_ids)
        self.switch_mode("compare")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(describe_bindings(self.active_bindings), f"Keys — {self.screen.title or 'ddpm-tui'}"))

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification carries data (run names, paths, error texts): plain text unless a
        caller builds markup on purpose, with control characters made visible."""
        super().notify(printable(message, keep_newlines=True), title=title, severity=severity, timeout=timeout,
                       markup=markup)

    def report_error(self, what: str, exc: BaseException) -> None:
        self.notify(f"{what}: {_short(exc)}", severity="error", timeout=6)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        if hasattr(screen, "evaluation_targets"):
            yield SystemCommand("Evaluate runs", "NLL, SSIM (and KID/FID/class with a classifier) of the selected "
                                "runs, in the background", screen.action_evaluate)

    @work(thread=True, group="evaluate")
    def evaluate_runs(self, run_ids: list[int]) -> None:
        """Check and start a detached evaluation of the runs; the results land on their pages."""
        try:
            pid = self.backend.start_evaluation(run_ids)
        except Exception as exc:
            self.call_from_thread(self.report_error, f"evaluate {', '.join(map(str, run_ids))}", exc)
            return
        self.call_from_thread(self.notify, f"evaluating run(s) {', '.join(map(str, run_ids))} in the background "
                                           f"(pid {pid}); results appear on each run's page")

    # ---- actions on runs (I/O in a worker) ---------------------------------------------------------------
    @work(thread=True, group="actions")
    def act_on_runs(self, action: str, run_ids: list[int], text: str | None = None) -> None:
        b = self.backend
        for run_id in run_ids or [None]:
            try:
                message = self._do(b, action, run_id, text)
            except Exception as exc:  # every failure becomes a notification, never a crash
                self.call_from_thread(self.report_error, f"{action} {run_id or ''}".strip(), exc)
                continue
            self.call_from_thread(self.notify, message)

    def _do(self, b: Backend, action: str, run_id: int | None, text: str | None) -> str:
        if action == "stop":
            return b.stop(run_id).message
        if action == "kill":
            return b.kill(run_id).message
        if action == "resume":
            return f"run {run_id}: {b.resume(run_id).status}"
        if action == "requeue":
            return f"run {run_id}: {b.resume(run_id, queue=True).status} (a worker picks it up)"
        if action == "delete":
            b.delete(run_id)
            return f"run {run_id} deleted"
        if action == "tag":
            b.tag(run_id, text.split())
            return f"run {run_id}: tagged {text}"
        if action == "note":
            b.note(run_id, text)
            return f"run {run_id}: note added"
        if action == "sample":
            out = Path(b.run(run_id)["run_dir"]) / "samples" / f"tui-{time.strftime('%Y%m%d-%H%M%S')}.png"
            b.sample(run_id, out)
            return f"run {run_id}: samples written to {out}"
        if action == "worker":
            return f"worker started (pid {b.start_worker()}); it exits when the queue is empty"
        raise ValueError(f"unknown action {action}")


def run_app(db_url: str, runs_dir: Path, open_run_id: int | None = None) -> None:
    DdpmApp(Backend(db_url, Path(runs_dir)), open_run_id).run()
