"""One run: live loss chart, latest samples, log tail, config, status history."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import (
    DataTable,
    Header,
    Log,
    Static,
    TabbedContent,
    TabPane,
)

from core.evaluate.metrics import report_order, short_label
from core.run_dir import RunDir
from core.services.views import Evaluation, RunView
from core.text import printable
from ddpm_tui.keys import bindings
from ddpm_tui.tui.failures import reported
from ddpm_tui.tui.format import STATUS_STYLE, eta_text, fmt_float, run_label
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.screens.chart_controls import ChartControls
from ddpm_tui.tui.screens.dialogs import ConfirmDialog, TextPrompt
from ddpm_tui.tui.series import SeriesFollower
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.loss_chart import LossChart
from ddpm_tui.tui.widgets.plain import PlainTable, plain
from ddpm_tui.tui.widgets.sample_view import SampleView, ZoomedGrid

LOG_TAIL_BYTES = 64_000
CLUSTER_LOG_SECONDS = 10.0


def read_new_log(path: Path, offset: int) -> tuple[str, int]:
    """Text appended to `path` since `offset` (the last LOG_TAIL_BYTES on first read or after a
    truncation); returns (text, new offset). A missing file gives ''."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0
    if size < offset:
        offset = 0
    start = max(offset, size - LOG_TAIL_BYTES) if offset == 0 else offset
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    return data.decode("utf-8", "replace"), size


def evaluation_panel(evaluations: list[Evaluation]) -> Text:
    """The newest evaluation of each metric, one line each: value and 95% CI (3 significant digits;
    * marks an estimated bound), under a header with the n, split and checkpoint step of the newest."""
    ordered = sorted(evaluations, key=lambda e: report_order(e.metric))
    newest = max(evaluations, key=lambda e: e.created_at)
    text = Text(f"evaluation n={newest.n} {newest.split} @{newest.checkpoint_step}", style="bold")
    for e in ordered:
        ci = f" [{e.ci_low:.3g},{e.ci_high:.3g}]" if e.ci_low is not None else ""
        mark = "*" if e.details.get("estimate") else ""
        text.append(f"\n{short_label(e.metric):<8} {e.value:.3g}{mark}{ci}")
        if (e.n, e.split, e.checkpoint_step) != (newest.n, newest.split, newest.checkpoint_step):
            text.append(f" n={e.n} {e.split} @{e.checkpoint_step}", style="dim")
    return text


def placement(record) -> str:
    """Where a run that is not one local process trains, and its global batch."""
    if record.executor == "local":
        return ""
    where = f"{record.executor} {printable(record.external_id)}" if record.external_id else record.executor
    return f"  [{where}, global batch {record.global_batch}]"


class RunDetailScreen(ChartControls, AppScreen):
    BINDINGS = bindings("run") + bindings("chart")

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.log_offset = 0
        self.cluster_log_at = float("-inf")
        self.record: RunView | None = None
        self.follower = None  # the chart's series, read incrementally (ddpm_tui.tui.series.SeriesFollower)
        self.log_query, self.log_match = "", -1
        self.grids: list = []  # (step, path) of every saved sample grid
        self.checkpoints: list = []  # (step, bytes, saved at)
        self.chosen_step: int | None = None  # the checkpoint p and e use; None: the newest
        self.shown_choice: int | None = None
        self.grid_index: int | None = None  # None: follow the newest
        self.keys: list[str] = []
        self.shown_events = -1
        self.config_shown = False
        self.log_placeholder = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-status")
        with Horizontal(id="detail-top"):
            yield LossChart(id="detail-chart")
            with Vertical(id="detail-side"):
                yield SampleView(id="detail-samples")
                yield Static("no evaluation yet (e evaluates)", id="detail-eval")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Log", id="tab-log"):
                yield Log(id="detail-log", max_lines=2000)
            with TabPane("Checkpoints", id="tab-checkpoints"):
                yield PlainTable(id="detail-checkpoints", cursor_type="row")
            with TabPane("Notes", id="tab-notes"):
                yield Static("no notes yet (n on the runs table adds one)", id="detail-notes")
            with TabPane("Config", id="tab-config"):
                yield Static("", id="detail-config")
            with TabPane("History", id="tab-history"):
                yield PlainTable(id="detail-history", cursor_type="row")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = f"run {self.run_id}"
        self.query_one("#detail-history", DataTable).add_columns("when", "status", "reason")
        self.query_one("#detail-checkpoints", DataTable).add_columns("step", "size", "saved at", "use")
        self.refresh_detail()
        self.set_interval(1.0, self.refresh_detail)

    @work(thread=True, exclusive=True, group="detail-refresh")
    @reported(lambda self: f"reading run {self.run_id}")
    def refresh_detail(self) -> None:
        lab = self.app.lab
        record = lab.run(self.run_id)
        keys = lab.metric_keys(self.run_id)
        follower = self.follower
        if follower is None or follower.key != self.metric:
            follower = self.follower = SeriesFollower(lab.series, self.run_id, self.metric)
        steps, values, walls = follower.update(record.step)
        events = lab.events(self.run_id)
        samples = lab.sample_grids(self.run_id)
        evaluations = lab.evaluations(self.run_id)
        notes = lab.notes(self.run_id)
        checkpoints = lab.checkpoints(self.run_id)
        log_path = RunDir(record.run_dir).train_log
        text, self.log_offset = read_new_log(log_path, self.log_offset)
        cluster_log = None
        if (not log_path.exists() and record.on_cluster
                and time.monotonic() - self.cluster_log_at > CLUSTER_LOG_SECONDS):
            self.cluster_log_at = time.monotonic()  # the cluster is asked every few seconds, not every tick
            cluster_log = lab.cluster_log(self.run_id)
        self.app.call_from_thread(self.apply, record, keys, (steps, values, walls), events, samples, text,
                                  log_path.exists() or not record.run_dir, evaluations, notes, checkpoints,
                                  cluster_log)

    def apply(self, record, keys, series, events, samples, log_text, log_present, evaluations=(), notes=(),
              checkpoints=(), cluster_log=None) -> None:
        self.record, self.keys = record, keys
        status = Text.assemble(
            (f"{printable(record.name)}  ", "bold"), (record.status, STATUS_STYLE.get(record.status, "")),
            f"  step {record.step}/{record.total_steps}  loss {fmt_float(record.loss)}"
            f"  img/s {fmt_float(record.img_per_s, 1)}  "
            + ("writing samples" if record.writing_samples else f"ETA {eta_text(record)}"),
            f"  — {printable(record.exit_reason)}" if record.exit_reason and record.status != "running" else "",
            placement(record),
            (f"  tags: {printable(' '.join(record.tags))}", "cyan") if record.tags else "",
        )
        if notes:
            self.query_one("#detail-notes", Static).update(plain("\n".join(
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(at))}  {text}" for at, text in notes),
                keep_newlines=True))
        self.query_one("#detail-status", Static).update(status)
        steps, values, walls = series
        if self.wall_x and walls:
            xs, xlabel = [(w - walls[0]) / 60 for w in walls], "minutes"
        else:
            xs, xlabel = steps, "step"
        self.query_one(LossChart).show({self.metric: (xs, values)}, title=self.metric, xlabel=xlabel,
                                        smooth=self.smooth, log_y=self.log_y)
        self.grids = samples
        self.show_grid()
        if evaluations:
            self.query_one("#detail-eval", Static).update(evaluation_panel(evaluations))
        log = self.query_one("#detail-log", Log)
        if log_text:
            if self.log_placeholder:
                log.clear()
                self.log_placeholder = False
            log.write(printable(log_text, keep_newlines=True))
        elif cluster_log:
            log.clear()
            log.write(printable(cluster_log, keep_newlines=True))
            self.log_placeholder = False
        elif not log_present and not log.line_count:
            log.write_line(printable(f"(no log yet at {record.run_dir}/train.log)"))
            self.log_placeholder = True
        if not self.config_shown:
            self.query_one("#detail-config", Static).update(
                plain("\n".join(f"{k:>18} = {v}" for k, v in record.config.items()), keep_newlines=True))
            self.config_shown = True
        self.show_checkpoints(list(checkpoints))
        if len(events) != self.shown_events:
            table = self.query_one("#detail-history", DataTable)
            table.clear()
            for e in events:
                table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)), e.status, e.reason or "")
            self.shown_events = len(events)

    def redraw(self) -> None:
        self.refresh_detail()

    def reload(self) -> None:
        self.refresh_detail()

    # ---- checkpoints: pick the one to sample or evaluate; extend a finished run ------------------------
    def show_checkpoints(self, checkpoints: list) -> None:
        if checkpoints == self.checkpoints and self.shown_choice == self.chosen_step:
            return
        self.checkpoints, self.shown_choice = checkpoints, self.chosen_step
        if self.chosen_step not in [c[0] for c in checkpoints]:
            self.chosen_step = None  # pruned: back to the newest
        table = self.query_one("#detail-checkpoints", DataTable)
        table.clear()
        newest = checkpoints[-1][0] if checkpoints else None
        for step, size, saved in checkpoints:
            chosen = step == self.chosen_step or (self.chosen_step is None and step == newest)
            table.add_row(str(step), f"{size / 2**20:.1f} MiB", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved)),
                          "● p/e use this" if chosen else "", key=str(step))

    @on(DataTable.RowSelected, "#detail-checkpoints")
    def checkpoint_chosen(self, event: DataTable.RowSelected) -> None:
        step = int(event.row_key.value)
        self.chosen_step = None if self.checkpoints and step == self.checkpoints[-1][0] else step
        self.show_checkpoints(self.checkpoints)
        self.notify(f"run {self.run_id}: p and e now use the checkpoint of step {step}")

    def action_extend(self) -> None:
        def extend(text: str | None) -> None:
            if text is None:
                return
            try:
                steps = int(text)
            except ValueError:
                self.notify(f"more steps: expected a whole number, got {text!r}", severity="error")
                return
            self.app.act_on_runs("extend", [self.run_id], text=str(steps))

        self.app.push_screen(TextPrompt(f"Train run {self.label()} for how many more steps?", "e.g. 5000"), extend)

    def action_synth(self) -> None:
        def synth(text: str | None) -> None:
            if text is None:
                return
            if not text.strip().isdigit() or int(text) < 1:
                self.notify(f"synthetic set: expected a positive whole number of patches, got {text!r}",
                            severity="error")
                return
            self.app.act_on_runs("synth", [self.run_id], text=str(int(text)), checkpoint=self.chosen_step)

        self.app.push_screen(TextPrompt(f"Make a synthetic set of run {self.label()}: how many labelled patches?",
                                        "e.g. 1000"), synth)

    # ---- the sample browser ----------------------------------------------------------------------------
    def current_grid(self) -> tuple[int, tuple] | None:
        if not self.grids:
            return None
        index = len(self.grids) - 1 if self.grid_index is None else min(self.grid_index, len(self.grids) - 1)
        return index, self.grids[index]

    def grid_title(self) -> str:
        index, (step, path) = self.current_grid()
        newest = " (newest)" if index == len(self.grids) - 1 else ""
        return f"samples: step {step if step is not None else '?'}{newest}, {index + 1} of {len(self.grids)}"

    def show_grid(self) -> None:
        current = self.current_grid()
        view = self.query_one(SampleView)
        if current is None:
            view.show(None)
        else:
            view.show(current[1][1], f"{self.grid_title()}  [ ] browse, z zoom")

    def action_older_grid(self) -> None:
        current = self.current_grid()
        if current:
            self.grid_index = max(0, current[0] - 1)
            self.show_grid()

    def action_newer_grid(self) -> None:
        current = self.current_grid()
        if current:
            self.grid_index = None if current[0] + 1 >= len(self.grids) - 1 else current[0] + 1
            self.show_grid()

    def action_zoom(self) -> None:
        current = self.current_grid()
        if current is None:
            self.notify("no sample grid yet", severity="warning")
            return
        self.app.push_screen(ZoomedGrid(current[1][1], f"run {self.label()}: {self.grid_title()}  (Esc closes)"))

    # ---- the tabs: log, checkpoints, notes, config, history ---------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        """Bring a tab forward and give the keyboard to its table or log, so `enter` and the arrows act
        on what is shown (a checkpoint to pick, history to scroll)."""
        self.query_one("#detail-tabs", TabbedContent).active = tab
        for widget in self.query_one(f"#{tab}", TabPane).query("DataTable, Log"):
            widget.focus()

    # ---- the log tail: search and follow ------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        log = self.query_one("#detail-log", Log)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("log: following new lines" if log.auto_scroll else "log: paused here (f follows again)", timeout=3)

    def action_search_log(self) -> None:
        def search(text: str | None) -> None:
            if text:
                self.log_query = text
                self.show_match(0)

        self.app.push_screen(TextPrompt(f"Search the log of run {self.label()}", "text to find"), search)

    def action_next_match(self) -> None:
        if self.log_query:
            self.show_match(self.log_match + 1)

    def show_match(self, start: int) -> None:
        """Scroll the log to the first line at or after line `start` holding the query (case blind),
        wrapping around; following stops so the match stays in view."""
        log = self.query_one("#detail-log", Log)
        query = self.log_query.lower()
        hits = [i for i, line in enumerate(log.lines) if query in line.lower()]
        if not hits:
            self.notify(f"log: no line holds {self.log_query!r}", severity="warning", timeout=4)
            return
        self.log_match = next((i for i in hits if i >= start), hits[0])
        log.auto_scroll = False
        log.scroll_to(y=max(0, self.log_match - log.size.height // 2), animate=False)
        self.notify(f"log: {self.log_query!r} on line {self.log_match + 1} "
                    f"({hits.index(self.log_match) + 1} of {len(hits)}; n: next, f: follow)", timeout=4)

    def label(self) -> str:
        return run_label(self.run_id, self.record.name if self.record else "")

    def action_stop(self) -> None:
        self.app.push_screen(ConfirmDialog(f"Stop run {self.label()}? It checkpoints and can be resumed."),
                             lambda ok: ok and self.app.act_on_runs("stop", [self.run_id]))

    def action_kill(self) -> None:
        self.app.push_screen(ConfirmDialog(f"Kill run {self.label()}? SIGTERM, then SIGKILL after 10 s."),
                             lambda ok: ok and self.app.act_on_runs("kill", [self.run_id]))

    def action_resume(self) -> None:
        self.app.act_on_runs("resume", [self.run_id])

    def action_sample(self) -> None:
        self.app.act_on_runs("sample", [self.run_id], checkpoint=self.chosen_step)

    def action_play_reverse(self) -> None:
        view = self.query_one(SampleView)
        if view.playing:
            view.stop()
            return
        self.load_reverse_gif()

    @work(thread=True, group="detail-gif")
    def load_reverse_gif(self) -> None:
        gif = self.app.lab.latest_samples(self.run_id, "gif")
        if gif is None:
            self.app.call_from_thread(self.notify, "no reverse-process GIF yet: a run writes one at its last step, "
                                                   "`ddpm-tui sample --gif` makes one", severity="warning")
            return
        self.app.call_from_thread(self.query_one(SampleView).play, gif)

    def evaluation_targets(self) -> list[int]:
        return [self.run_id]

    def action_evaluate(self) -> None:
        self.app.evaluate_runs([self.run_id], checkpoint=self.chosen_step)

    def action_duplicate(self) -> None:
        if self.record:
            self.app.open_launch(dict(self.record.config))
