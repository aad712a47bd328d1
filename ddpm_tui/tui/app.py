"""The ddpm-tui Textual application: modes (digits) for the top-level views, runs open as screens."""

from __future__ import annotations

import importlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.signal import Signal

from core.services.lab import Lab
from core.services.views import RunView
from core.errors import NeedsRestart
from core.text import printable
from ddpm_tui.keys import SCOPES, TuiSettings, bindings
from ddpm_tui.tui.failures import reported
from ddpm_tui.tui.run_actions import RUN_ACTIONS, Given
from ddpm_tui.tui.screens.help import HelpScreen, describe_bindings
from ddpm_tui.tui.format import run_label
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


ENDED = {"finished": "information", "stopped": "warning", "killed": "warning", "failed": "error",
         "crashed": "error"}
POLL_SECONDS = 1.0
REPEAT_SECONDS = 10.0


def run_endings(before: dict[int, RunView], after: list[RunView]) -> list[tuple[str, str]]:
    """(message, severity) for each run that was queued or running in `before` and has ended in
    `after`."""
    endings = []
    for r in after:
        old = before.get(r.id)
        if old and old.status in ("queued", "running", "lost") and r.status in ENDED:
            name = f" '{r.name}'" if r.name else ""
            reason = f": {r.exit_reason}" if r.exit_reason else ""
            endings.append((f"run {r.id}{name} {r.status}{reason}", ENDED[r.status]))
    return endings


class DdpmApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "ddpm-tui"
    MODES = {"runs": RunsScreen, "launch": lazy_screen("launch", "LaunchScreen"),
             "ablation": lazy_screen("ablation", "AblationScreen"), "compare": lazy_screen("compare", "CompareScreen"),
             "blind": lazy_screen("blind", "BlindTestScreen"), "gpus": lazy_screen("gpus", "GpuScreen")}
    DEFAULT_MODE = "runs"
    BINDINGS = bindings("app")

    def __init__(self, lab: Lab, open_run_id: int | None = None, settings: TuiSettings | None = None,
                 first_read: Future | None = None):
        super().__init__()
        self.lab = lab
        self.first_read = first_read  # lab.runs(), started before the app took the terminal
        self.settings = settings or TuiSettings()
        self.open_run_id = open_run_id
        # The one reader of the run list: every screen that shows runs subscribes to it.
        self.runs_signal: Signal[list[dict]] = Signal(self, "runs")
        self.run_records: list[RunView] | None = None
        self.last_read_error: str | None = None
        self.store_down_since: float | None = None  # when reading the runs began to fail
        self.evaluation_jobs: list = []  # started here, announced when they end
        self.last_error: tuple[str, float] = ("", 0.0)
        self.launch_prefill: dict | None = None
        self.compare_ids: list[int] = []
        self.compare_origin = "runs"  # the view that opened the compare, where Esc returns

    def on_mount(self) -> None:
        self.pin_console_size()
        self.set_keymap(self.settings.keys)
        self.poll_runs()
        if self.open_run_id is not None:
            self.open_run(self.open_run_id)

    def on_resize(self) -> None:
        self.pin_console_size()

    def pin_console_size(self) -> None:
        """Give the measuring console the screen's size: unpinned, it asks the terminal for its size
        at every measurement, and a table measures each new cell (a third of the first paint of a
        1,000-run table)."""
        self.console.size = (self.size.width, self.size.height)

    # ---- the run list, read by one poller ------------------------------------------------------------
    @work(thread=True, exclusive=True, group="runs-poll")
    def poll_runs(self) -> None:
        """Read the runs, hand them to the screens, and only then schedule the next read: a slow
        store delays the refresh instead of piling reads up."""
        try:
            first_read, self.first_read = self.first_read, None
            records = first_read.result() if first_read else self.lab.runs()
            ended = [job for job in list(self.evaluation_jobs) if job.exit_code() is not None]
            outcomes = [self.lab.evaluation_outcome(job) for job in ended]
        except Exception as exc:  # a locked, busy or broken store must not take the app down
            self.call_from_thread(self.read_failed, exc)
        else:
            for job in ended:
                self.evaluation_jobs.remove(job)
            self.call_from_thread(self.runs_read, records, outcomes)
        finally:
            self.call_from_thread(self.set_timer, POLL_SECONDS, self.poll_runs)

    def runs_read(self, records: list[RunView], evaluations: list[tuple[str, bool]] = ()) -> None:
        endings = run_endings({r.id: r for r in self.run_records}, records) if self.run_records is not None else []
        endings += [(message, "information" if ok else "error") for message, ok in evaluations]
        for message, severity in endings:
            self.notify(message, severity=severity, timeout=8)
            if self.settings.bell:
                self.bell()
        if self.store_down_since is not None:
            self.store_down_since = None
            self.sub_title = ""
            self.set_class(False, "-store-down")
            self.notify("the store answers again: the numbers are live", timeout=6)
        self.run_records, self.last_read_error = records, None
        self.runs_signal.publish(records)

    def read_failed(self, exc: BaseException) -> None:
        """Say once that the store cannot be read, not every second while it stays so, and keep a
        banner in every view's header until it answers again: the numbers shown are old."""
        message = _short(exc)
        if message != self.last_read_error:
            self.report_error("reading runs", exc)
        self.last_read_error = message
        if self.store_down_since is None:
            self.store_down_since = time.time()
        since = time.strftime("%H:%M:%S", time.localtime(self.store_down_since))
        self.sub_title = printable(self.lab.without_secrets(
            f"STORE UNREACHABLE since {since}: numbers are as read then ({message})"))
        self.set_class(True, "-store-down")

    # ---- navigation ------------------------------------------------------------------------------
    def open_run(self, run_id: int) -> None:
        from ddpm_tui.tui.screens.detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id))

    def open_launch(self, config: dict | None = None) -> None:
        self.launch_prefill = config
        self.switch_mode("launch")

    def open_compare(self, run_ids: list[int]) -> None:
        self.compare_ids = list(run_ids)
        self.compare_origin = self.current_mode if self.current_mode != "compare" else self.compare_origin
        self.switch_mode("compare")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(describe_bindings(self.active_bindings), f"Keys — {self.screen.title or 'ddpm-tui'}"))

    def shown_key(self, binding) -> str:
        """The key a binding is on now: the user's remap, else its own."""
        return self.settings.keys.get(binding.id) or binding.key_display or binding.key

    def screen_commands(self, screen):
        """(name, help, callback) of every view, and of every keyed action of `screen`, for the palette."""
        for b in bindings("app"):
            if b.action.startswith("switch_mode"):
                yield b.description, f"key {self.shown_key(b)}", lambda action=b.action: self.run_action(action)
        seen = set()
        for b in (b for bs in screen._bindings.key_to_bindings.values() for b in bs):
            scope = (b.id or "").split(".")[0]
            if scope in SCOPES and b.id not in seen:
                seen.add(b.id)
                yield b.description, f"{SCOPES[scope]}: key {self.shown_key(b)}", \
                    lambda action=b.action: self.run_action(action, screen)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification carries data (run names, paths, error texts): plain text unless a
        caller builds markup on purpose, with control characters made visible."""
        super().notify(printable(message, keep_newlines=True), title=title, severity=severity, timeout=timeout,
                       markup=markup)

    def report_error(self, what: str, exc: BaseException) -> None:
        """Where every failure of the TUI's work ends (see ddpm_tui.tui.failures): one error toast,
        the same one at most once every REPEAT_SECONDS, so a store that stays locked does not
        flood the screen."""
        message, now = self.lab.without_secrets(f"{what}: {_short(exc)}"), time.monotonic()
        if message == self.last_error[0] and now - self.last_error[1] < REPEAT_SECONDS:
            return
        self.last_error = (message, now)
        self.notify(message, severity="error", timeout=6)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for name, help_text, callback in self.screen_commands(screen):
            yield SystemCommand(name, help_text, callback)

    @work(thread=True, group="evaluate")
    @reported(lambda self, run_ids, checkpoint=None: f"evaluate {', '.join(map(str, run_ids))}")
    def evaluate_runs(self, run_ids: list[int], checkpoint: int | None = None) -> None:
        """Check and start a detached evaluation of the runs; the results land on their pages."""
        job = self.lab.start_evaluation(run_ids, checkpoint=checkpoint)
        self.watch_evaluation(job)
        self.call_from_thread(self.notify, f"evaluating run(s) {', '.join(map(str, run_ids))} in the background "
                              f"(pid {job.pid}); a toast says when it ends, results appear on each run's page")

    def watch_evaluation(self, job) -> None:
        """Announce `job`'s end (core.services.evaluation.EvaluationJob) from the run poller."""
        self.evaluation_jobs.append(job)

    # ---- actions on runs (I/O in a worker) ---------------------------------------------------------------
    @work(thread=True, group="actions")
    def act_on_runs(self, action: str, run_ids: list[int], text: str | None = None,
                    checkpoint: int | None = None) -> None:
        chosen, given = RUN_ACTIONS[action], Given(text, checkpoint)
        for run_id in run_ids or [None]:
            if chosen.working:  # it takes seconds to minutes: say at once that it is under way
                self.call_from_thread(self.notify, f"run {run_id}: {chosen.working}", timeout=4)
            try:
                message = chosen.perform(self.lab, run_id, given)
            except NeedsRestart as exc:
                self.call_from_thread(self.confirm_restart, exc.run_id)
                continue
            except Exception as exc:  # every failure becomes a notification, never a crash
                self.call_from_thread(self.report_error, f"{action} {run_id or ''}".strip(), exc)
                continue
            self.call_from_thread(self.notify, message)

    def confirm_restart(self, run_id: int) -> None:
        """Resuming a run that trained but kept no checkpoint starts it over: only on a yes."""
        from ddpm_tui.tui.screens.dialogs import ConfirmDialog

        name = next((r.name for r in self.run_records or [] if r.id == run_id), "")
        self.push_screen(ConfirmDialog(f"Run {run_label(run_id, name)} has no checkpoint to continue from. Restart it from step 0?"),
                         lambda ok: ok and self.act_on_runs("restart", [run_id]))


def prepare_app(db_url: str, runs_dir: Path, open_run_id: int | None = None,
                settings: TuiSettings | None = None) -> DdpmApp:
    """The app, with the first read of its runs already under way (the app paints them on arrival)."""
    lab = Lab(db_url, Path(runs_dir))
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="first-read")
    first_read = reader.submit(lab.runs)
    reader.shutdown(wait=False)
    return DdpmApp(lab, open_run_id, settings, first_read=first_read)
