"""Ablation sweeps: build a grid (schedule x attention x any option x seeds) and queue it as runs of
one sweep; watch a sweep's runs grouped by configuration."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import (
    Button,
    DataTable,
    Header,
    Input,
    Label,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from core.services.views import RunView
from core.errors import BadInput
from core.evaluate.metrics import short_label
from core.runner.sweeps import (check_seeds, expand_grid, grid_axes, group_runs, parse_option_list, split_values,
                                sweep_axes, sweep_progress)
from core.text import printable
from ddpm_tui.keys import bindings
from ddpm_tui.tui.failures import reported
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.screens.dialogs import ConfirmDialog
from ddpm_tui.tui.screens.launch import PRESETS
from ddpm_tui.tui.format import fmt_duration
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.plain import ListTable, plain

COUNT_COLUMNS = [("runs", "runs"), ("finished", "done"), ("running", "run"), ("queued", "queued"),
                 ("other", "fail/stop"), ("progress", "progress"), ("loss", "loss~ n.c.")]
MAX_RUNS = 1000  # more than this at once from a form is almost surely a typo


def grid_values(preset: dict[str, Any], data: str, schedules: str, attention: str,
                other: str) -> tuple[dict[str, str], list[str]]:
    """The raw values expand_grid takes (the preset as fixed values, the rest as comma lists), and
    the swept options (those with more than one value)."""
    raw = {k: (";".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
           for k, v in preset.items() if k not in ("name", "tag")}
    if data.strip():
        raw["data"] = data.strip()
    for name, text in (("schedule", schedules), ("attention", attention)):
        if text.strip():
            raw[name] = text.strip()
    extra = parse_option_list(other)
    for name, text in (("schedule", schedules), ("attention", attention), ("data", data)):
        if name in extra and text.strip():
            raise BadInput(f"other options: {name} has its own field above")
    raw.update(extra)
    return raw, grid_axes(raw)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metric_cell(stats) -> Text:
    if stats is None:
        return Text("-")
    i = stats.interval
    return Text(f"{i.value:.4g} [{i.low:.3g},{i.high:.3g}]{' =' if stats.tied else ''}",
                style="bold" if stats.tied else "")


def row_cells(row: dict, axes: list[str], metrics: list[str] = (), ranking=None) -> list:
    stats = {m: {c.config: c for c in ranking.rankings[m].configs} for m in metrics} if ranking else {}
    return [*(str(row["values"][a]) for a in axes), str(row["runs"]),
            Text(str(row["finished"]), style="blue" if row["finished"] else ""),
            Text(str(row["running"]), style="bold green" if row["running"] else ""),
            Text(str(row["queued"]), style="yellow" if row["queued"] else ""),
            Text(str(row["other"]), style="bold red" if row["other"] else ""),
            "-" if row["progress"] is None else f"{100 * row['progress']:.0f}%",
            _fmt(row["loss"]), *(metric_cell(stats[m].get(row["key"])) for m in metrics)]


def sort_rows(rows: list[dict], key: str, reverse: bool, ranking) -> list[dict]:
    """Rows by a metric's configuration mean (in its own direction; `reverse` flips it) or by the
    smoothed training loss; configurations without a value last."""
    if key == "loss":
        value = {id(r): r["loss"] for r in rows}
        direction = 1
    else:
        means = {c.config: c.interval.value for c in ranking.rankings[key].configs}
        value = {id(r): means.get(r["key"]) for r in rows}
        direction = 1 if ranking.rankings[key].direction == "lower" else -1
    present = sorted((r for r in rows if value[id(r)] is not None), key=lambda r: direction * value[id(r)],
                     reverse=reverse)
    return present + [r for r in rows if value[id(r)] is None]


class AblationScreen(AppScreen):
    BINDINGS = bindings("ablation")

    def __init__(self):
        super().__init__()
        self.sweeps: list[dict] = []
        self.records: list[RunView] = []
        self.shown_columns: list[str] | None = None
        self.shown_sweeps: list[tuple] = []
        self.busy = False
        self.pending_sweep: int | None = None
        self.ranking = None  # core.rank.sweep.SweepRanking of the selected sweep, once it has evaluations
        self.sort_key: str | None = None  # None: the ranking's own key
        self.sort_reverse = False
        self.shown_rows: list[dict] = []
        self.eval_jobs: dict[str, int] = {}  # the selected sweep's evaluation jobs per status

    # ---- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="abl-tabs", initial="tab-grid"):
            with TabPane("Build grid", id="tab-grid"):
                with VerticalScroll(id="abl-grid", can_focus=False):
                    yield self._row("schedules", Input("linear,cosine", id="abl-schedule", compact=True,
                                                       tooltip="comma list of noise schedules"))
                    yield self._row("attention", Input("none,full", id="abl-attention", compact=True,
                                                       tooltip="comma list of none, linear, full"))
                    yield self._row("seeds", Input("3", id="abl-seeds", compact=True, type="integer",
                                                   tooltip="runs per configuration (seeds 0..N-1)"))
                    yield self._row("base preset", Select([(p, p) for p in PRESETS], prompt="defaults",
                                                          id="abl-preset", compact=True))
                    yield self._row("data", Input("demo", id="abl-data", compact=True,
                                                  tooltip="dataset directory, or demo"))
                    yield self._row("other options", Input(
                        "", id="abl-other", compact=True, placeholder="lr=1e-4,2e-4; image_size=32",
                        tooltip="any training option as a comma list; ';' separates options"))
                    yield Static("any training option as key=a,b,c; ';' between options; "
                                 "for dim_mults / attn_resolutions separate values with '|' "
                                 "(dim_mults=1,2,4 | 1,2,4,8)", classes="abl-hint")
                    yield self._row("sweep name", Input("", id="abl-name", compact=True, placeholder="sweep"))
                    yield Static("", id="abl-preview")
                    with Horizontal(id="abl-buttons"):
                        yield Button("Queue grid ^L", id="abl-queue", variant="success", compact=True)
                        yield Button("Start worker ^T", id="abl-worker", compact=True)
            with TabPane("Sweeps", id="tab-sweeps"):
                with Horizontal(id="sweep-bar"):
                    yield Select([], prompt="sweep…", id="sweep-select", compact=True)
                yield Static("", id="sweep-summary")
                yield ListTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield KeysFooter()

    @staticmethod
    def _row(label: str, widget) -> Horizontal:
        if isinstance(widget, Input):
            widget.add_class("abl-input")
        return Horizontal(Label(label, classes="abl-label"), widget, classes="abl-row")

    def on_mount(self) -> None:
        self.title = "ddpm-tui — ablation"
        self.update_preview()
        self.refresh_sweeps()
        self.set_interval(2.0, self.refresh_sweeps)

    def on_screen_resume(self) -> None:
        self.refresh_sweeps()

    # ---- the grid -----------------------------------------------------------------------------
    def grid(self) -> tuple[dict[str, str], list[str], int, str]:
        """(raw values, swept options, seeds, sweep name) from the form; raises BadInput."""
        preset_select = self.query_one("#abl-preset", Select)
        preset = {} if preset_select.is_blank() else PRESETS[preset_select.value]
        raw, axes = grid_values(preset, self.query_one("#abl-data", Input).value,
                                self.query_one("#abl-schedule", Input).value,
                                self.query_one("#abl-attention", Input).value,
                                self.query_one("#abl-other", Input).value)
        seeds = check_seeds(self.query_one("#abl-seeds", Input).value)
        return raw, axes, seeds, self.query_one("#abl-name", Input).value.strip()

    @on(Input.Changed, ".abl-input")
    @on(Select.Changed, "#abl-preset")
    def update_preview(self) -> None:
        preview = self.query_one("#abl-preview", Static)
        try:
            raw, axes, seeds, name, configs = self.checked_grid()
        except BadInput as exc:
            preview.update(plain(str(exc), style="bold red"))
            return
        sizes = " x ".join(f"{len(split_values(a, raw[a]))} {a}" for a in axes) or "1 configuration"
        preview.update(f"{sizes} = {len(configs)} configuration(s) x {seeds} seed(s) = "
                       f"[b]{len(configs) * seeds} runs[/b] on {escape(configs[0].data)}")

    def checked_grid(self):
        """grid() plus one validated config per configuration (pure: touches no file); raises BadInput."""
        raw, axes, seeds, name = self.grid()
        configs = expand_grid(raw, 1, None, name)
        if len(configs) * seeds > MAX_RUNS:
            raise BadInput(f"{len(configs)} configurations x {seeds} seeds = {len(configs) * seeds} runs: "
                           f"more than {MAX_RUNS} at once")
        return raw, axes, seeds, name, configs

    def action_queue(self) -> None:
        if self.busy:
            self.notify("already queueing…", severity="warning")
            return
        try:
            raw, axes, seeds, name, _ = self.checked_grid()
        except BadInput as exc:
            self.update_preview()
            self.notify(str(exc), severity="error")
            return
        self.busy = True
        self.query_one("#abl-preview", Static).update("queueing…")
        self.queue_grid(raw, axes, seeds, name)

    @on(Button.Pressed, "#abl-queue")
    def queue_pressed(self) -> None:
        self.action_queue()

    @work(thread=True, exclusive=True, group="ablation-queue")
    def queue_grid(self, raw: dict[str, str], axes: list[str], seeds: int, name: str) -> None:
        """What `ddpm-tui ablate` does: expand, check the data, create the sweep, queue the runs."""
        try:
            sweep, runs, axes = self.app.lab.queue_sweep(raw, seeds, name)
        except Exception as exc:  # bad data, locked store...: a notification, never a crash
            self.app.call_from_thread(self.queue_failed, exc)
            return
        self.app.call_from_thread(self.queued, sweep.id, len(runs), axes)

    def queued(self, sweep_id: int, n_runs: int, axes: list[str]) -> None:
        self.busy = False
        self.update_preview()
        self.notify(f"sweep {sweep_id}: {n_runs} runs queued over {', '.join(axes) or 'seeds'}")
        self.pending_sweep = sweep_id
        self.query_one("#abl-tabs", TabbedContent).active = "tab-sweeps"
        self.refresh_sweeps()

        def done(ok: bool | None) -> None:
            if ok:
                self.app.act_on_runs("worker", [])

        self.app.push_screen(ConfirmDialog(f"Sweep {sweep_id}: {n_runs} runs queued. Start a worker now?"), done)

    def queue_failed(self, exc: BaseException) -> None:
        self.busy = False
        self.update_preview()
        self.app.report_error("queue sweep", exc)

    def action_worker(self) -> None:
        self.app.act_on_runs("worker", [])

    @on(Button.Pressed, "#abl-worker")
    def worker_pressed(self) -> None:
        self.action_worker()

    def action_toggle_tab(self) -> None:
        tabs = self.query_one("#abl-tabs", TabbedContent)
        tabs.active = "tab-sweeps" if tabs.active == "tab-grid" else "tab-grid"

    # ---- the sweep view -----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sweeps-refresh")
    @reported("reading sweeps")
    def refresh_sweeps(self) -> None:
        if not self.is_current and self.sweeps:
            return  # another mode is showing: no need to read the store
        chosen = self.selected_sweep()
        sweeps = self.app.lab.sweeps()
        records = [r for r in self.app.lab.runs() if r.sweep_id is not None]
        wanted = self.pending_sweep or (chosen.id if chosen else (sweeps[-1].id if sweeps else None))
        ranking = self.app.lab.sweep_ranking(wanted) if wanted is not None else None
        jobs = self.app.lab.sweep_eval_jobs(wanted) if wanted is not None else {}
        self.app.call_from_thread(self.apply, sweeps, records, ranking, jobs)

    def apply(self, sweeps: list[dict], records: list[RunView], ranking=None, jobs: dict | None = None) -> None:
        self.sweeps, self.records, self.ranking, self.eval_jobs = sweeps, records, ranking, jobs or {}
        counts: dict[int, int] = {}
        for r in records:
            counts[r.sweep_id] = counts.get(r.sweep_id, 0) + 1
        options = [(plain(f"sweep {s.id}: {s.name or 'sweep'} ({counts.get(s.id, 0)} runs)"), s.id)
                   for s in reversed(sweeps)]
        select = self.query_one("#sweep-select", Select)
        if options != self.shown_sweeps:
            current = None if select.is_blank() else select.value
            select.set_options(options)
            self.shown_sweeps = options
            ids = [value for _, value in options]
            wanted = self.pending_sweep if self.pending_sweep in ids else current if current in ids else None
            if wanted is None and ids:
                wanted = ids[0]  # the newest sweep
            if wanted is not None:
                select.value = wanted
            self.pending_sweep = None
        elif self.pending_sweep is not None and self.pending_sweep in [v for _, v in options]:
            select.value = self.pending_sweep
            self.pending_sweep = None
        self.render_sweep()

    @on(Select.Changed, "#sweep-select")
    def sweep_chosen(self) -> None:
        sweep = self.selected_sweep()
        if self.ranking is not None and (sweep is None or self.ranking.sweep_id != sweep.id):
            self.ranking = None
            self.refresh_sweeps()
        self.render_sweep()

    def selected_sweep(self) -> dict | None:
        select = self.query_one("#sweep-select", Select)
        if select.is_blank():
            return None
        return next((s for s in self.sweeps if s.id == select.value), None)

    def sort_choices(self) -> list[str]:
        return [*(self.ranking.rankings if self.ranking else []), "loss"]

    def current_sort(self) -> str | None:
        choices = self.sort_choices()
        if self.sort_key in choices:
            return self.sort_key
        return self.ranking.metric if self.ranking else None

    def render_sweep(self) -> None:
        table = self.query_one("#sweep-table", DataTable)
        summary = self.query_one("#sweep-summary", Static)
        sweep = self.selected_sweep()
        if sweep is None:
            table.clear(columns=True)
            self.shown_columns = None
            summary.update("no sweep yet: build a grid (^G) and queue it (^L)")
            return
        records = [r for r in self.records if r.sweep_id == sweep.id]
        axes = sweep_axes(sweep.spec, records)
        ranking = self.ranking if self.ranking is not None and self.ranking.sweep_id == sweep.id else None
        metrics = list(ranking.rankings) if ranking else []
        sort = self.current_sort() if ranking else None
        columns = [*axes, *(k for k, _ in COUNT_COLUMNS), *metrics, sort, self.sort_reverse]
        if columns != self.shown_columns:
            table.clear(columns=True)
            for a in axes:
                table.add_column(a, key=a)
            for key, label in COUNT_COLUMNS:
                table.add_column(label + (" ↕" if key == sort else ""), key=key)
            for m in metrics:
                arrow = (" ↓" if self.sort_reverse else " ↑") if m == sort else ""
                table.add_column(f"{short_label(m)} [95% CI]{arrow}", key=m)  # "=" marks a tie with the best
            self.shown_columns = columns
        rows = group_runs(records, axes)
        if sort:
            rows = sort_rows(rows, sort, self.sort_reverse, ranking)
        self.shown_rows = rows
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row_cells(row, axes, metrics, ranking), key=repr(row["key"]))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        summary.update(self.summary_text(sweep, records, axes, rows, ranking, sort))

    def summary_text(self, sweep, records, axes, rows, ranking, sort) -> Text:
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        status_text = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "no runs"
        done, eta = sweep_progress(records)
        text = Text.assemble((f"sweep {sweep.id} ", "bold"), printable(sweep.name or ""),
                             f" over {', '.join(axes) or 'seeds only'}: {len(rows)} configuration(s), "
                             f"{len(records)} runs ({status_text})")
        if done is not None:
            text.append(f", {100 * done:.0f}% of steps done" + (f", ETA {fmt_duration(eta)}" if eta else ""))
        if self.eval_jobs:
            text.append("; evaluations " + ", ".join(f"{n} {s}" for s, n in sorted(self.eval_jobs.items())))
            if self.eval_jobs.get("failed"):
                text.append(" (E retries the missing ones)", style="bold red")
        if ranking is None:
            text.append("\nno evaluations yet: E evaluates the finished runs (or queue sweeps with --eval-on-finish)",
                        style="dim")
        elif sort == "loss":
            text.append("\nsorted by the smoothed training loss: NOT comparable across noise schedules; o: next key",
                        style="bold yellow")
        else:
            r = ranking.rankings[sort]
            order = ("worst first" if self.sort_reverse else "best first")
            text.append(f"\nsorted by {sort} ({r.direction} is better, {order}; o/O: key/order); "
                        f"= tied with the best: not significantly worse than any other (Welch t-tests over all "
                        f"pairs, Holm-corrected; 1 seed: not compared)", style="dim")
            if r.mixed:
                text.append(f"\n{sort} was evaluated with mixed settings: {r.settings}", style="bold red")
        return text

    # ---- sweep keys ------------------------------------------------------------------------------
    def action_cycle_sort(self) -> None:
        choices = self.sort_choices()
        current = self.current_sort()
        self.sort_key = choices[(choices.index(current) + 1) % len(choices)] if current in choices else choices[0]
        self.render_sweep()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.render_sweep()

    @on(DataTable.RowSelected, "#sweep-table")
    def configuration_chosen(self, event: DataTable.RowSelected) -> None:
        """Enter on a configuration opens its runs side by side (loss curves, config, samples)."""
        row = next((r for r in self.shown_rows if repr(r["key"]) == event.row_key.value), None)
        if row is None:
            return
        if len(row["run_ids"]) >= 2:
            self.app.open_compare(row["run_ids"])
        else:
            self.app.open_run(row["run_ids"][0])

    def sweep_run_ids(self, *statuses: str) -> list[int]:
        sweep = self.selected_sweep()
        if sweep is None:
            return []
        return [r.id for r in self.records if r.sweep_id == sweep.id and (not statuses or r.status in statuses)]

    def action_evaluate_missing(self) -> None:
        sweep = self.selected_sweep()
        if sweep is not None:
            self.evaluate_missing(sweep.id)

    @work(thread=True, group="sweep-actions")
    @reported(lambda self, sweep_id: f"evaluate sweep {sweep_id}")
    def evaluate_missing(self, sweep_id: int) -> None:
        ids, job = self.app.lab.evaluate_sweep_missing(sweep_id)
        if job is not None:
            self.app.watch_evaluation(job)
        message = (f"sweep {sweep_id}: evaluating runs {', '.join(map(str, ids))} in the background (pid {job.pid})"
                   if ids else f"sweep {sweep_id}: every finished run is evaluated")
        self.app.call_from_thread(self.notify, message)

    def action_stop_sweep(self) -> None:
        ids = self.sweep_run_ids("running")
        if not ids:
            self.notify("no running run in this sweep", severity="warning")
            return
        self.app.push_screen(ConfirmDialog(f"Stop the sweep's {len(ids)} running run(s)? They checkpoint and can be "
                                           "resumed."), lambda ok: ok and self.app.act_on_runs("stop", ids))

    def action_requeue_failed(self) -> None:
        ids = self.sweep_run_ids("failed", "crashed", "killed", "stopped")
        if not ids:
            self.notify("no failed, crashed, killed or stopped run in this sweep", severity="warning")
            return
        self.app.act_on_runs("requeue", ids)
