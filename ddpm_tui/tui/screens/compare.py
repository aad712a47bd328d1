"""Compare runs: their loss curves overlaid in one chart and the config keys on which they differ.

The runs come from `app.compare_ids`, set by the runs screen (select with space, then press c)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Header, Static

from core.services.views import RunView
from core.errors import NotFound
from core.text import printable
from ddpm_tui.keys import bindings
from ddpm_tui.tui.failures import reported
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.screens.chart_controls import ChartControls
from ddpm_tui.tui.format import STATUS_STYLE, fmt_float
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.loss_chart import LossChart
from ddpm_tui.tui.widgets.sample_view import SampleView

MAX_SAMPLE_VIEWS = 4
from ddpm_tui.tui.widgets.plain import PlainTable

HOW_TO = "Nothing to compare yet: in the runs view (1) select two or more runs with space, then press c."
MISSING = object()  # a config key a run does not have


def config_diff(configs: list[dict]) -> list[tuple[str, list]]:
    """(key, [value per config]) for the keys whose values are not all equal, in first-seen key
    order; a key missing from a config counts as a difference (its value shows as MISSING)."""
    keys = list(dict.fromkeys(k for cfg in configs for k in cfg))
    rows = []
    for key in keys:
        values = [cfg.get(key, MISSING) for cfg in configs]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def fmt_value(value) -> str:
    if value is MISSING:
        return "—"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return str(value)


def series_label(record: RunView) -> str:
    return printable(f"{record.id} {record.name}")


class CompareScreen(ChartControls, AppScreen):
    BINDINGS = bindings("compare") + bindings("chart")

    def __init__(self):
        super().__init__()
        self.run_ids: list[int] = []
        self.records: list[RunView] = []
        self.keys: list[str] = []
        self.series: dict[str, tuple[list, list]] = {}
        self.diff: list[tuple[str, list]] = []
        self.missing: list[int] = []
        self.loaded = False
        self._shown_table = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-status")
        yield Static(HOW_TO, id="compare-empty", classes="hidden")
        yield LossChart(id="compare-chart")
        yield Horizontal(id="compare-samples")
        yield PlainTable(id="compare-diff", cursor_type="column", zebra_stripes=True)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = "ddpm-tui — compare runs"
        self.set_interval(2.0, self.tick)

    def tick(self) -> None:
        if self.is_current:  # no reads while another view is on screen
            self.refresh_compare()

    def on_screen_resume(self) -> None:
        ids = list(dict.fromkeys(getattr(self.app, "compare_ids", []) or []))
        if ids != self.run_ids:
            self.run_ids, self.loaded = ids, False
            self.records, self.series, self.diff, self._shown_table = [], {}, [], None
        self.show_state()
        self.refresh_compare()

    def enough(self) -> bool:
        return len(self.run_ids) >= 2

    def show_state(self) -> None:
        enough = self.enough()
        self.query_one("#compare-empty", Static).set_class(enough, "hidden")
        self.query_one("#compare-chart", LossChart).set_class(not enough, "hidden")
        self.query_one("#compare-samples", Horizontal).set_class(not enough, "hidden")
        self.query_one("#compare-diff", DataTable).set_class(not enough, "hidden")
        if not enough:
            self.query_one("#compare-status", Static).update("compare: fewer than two runs chosen")
        elif not self.loaded:
            self.query_one("#compare-status", Static).update(
                f"compare runs {', '.join(map(str, self.run_ids))}: loading…")

    # ---- data (worker thread) ------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="compare-refresh")
    @reported("reading runs to compare")
    def refresh_compare(self) -> None:
        run_ids, metric, wall_x = list(self.run_ids), self.metric, self.wall_x
        if len(run_ids) < 2:
            return
        lab = self.app.lab
        records, series, keys, missing, samples = [], {}, [], [], {}
        for run_id in run_ids:
            try:
                record = lab.run(run_id)
            except NotFound:  # deleted since it was chosen
                missing.append(run_id)
                continue
            records.append(record)
            samples[run_id] = lab.latest_samples(run_id)
            steps, values, walls = lab.series(run_id, metric)
            if wall_x and walls:
                xs = [(w - walls[0]) / 60 for w in walls]
            else:
                xs = steps
            series[series_label(record)] = (xs, values)
            keys.extend(k for k in lab.metric_keys(run_id) if k not in keys)
        self.app.call_from_thread(self.apply, run_ids, metric, wall_x, records, series, sorted(keys), missing, samples)

    def apply(self, run_ids, metric, wall_x, records, series, keys, missing, samples=None) -> None:
        if run_ids != self.run_ids or metric != self.metric or wall_x != self.wall_x:
            return  # the choice changed while reading; the next refresh draws it
        self.records, self.series, self.keys, self.missing, self.loaded = records, series, keys, missing, True
        self.draw_chart()
        self.draw_samples(samples or {})
        self.draw_diff()
        self.draw_status()

    def draw_samples(self, samples: dict) -> None:
        """The newest sample grid of the first MAX_SAMPLE_VIEWS runs, side by side."""
        strip = self.query_one("#compare-samples", Horizontal)
        wanted = [r.id for r in self.records][:MAX_SAMPLE_VIEWS]
        views = list(strip.query(SampleView))
        if [v.run_id for v in views] != wanted:
            strip.remove_children()
            views = [SampleView(classes="compare-sample") for _ in wanted]
            for view, run_id in zip(views, wanted):
                view.run_id = run_id
            strip.mount_all(views)
            self.call_after_refresh(self.draw_samples, samples)
            return
        labels = {r.id: series_label(r) for r in self.records}
        for view in views:
            path = samples.get(view.run_id)
            view.show(path, f"{labels[view.run_id]}: {path.name}" if path else None)  # which run's grid it is

    def draw_status(self) -> None:
        names = "  ".join(printable(f"{r.id} {r.name}") for r in self.records)
        gone = f"  (gone: {', '.join(map(str, self.missing))})" if self.missing else ""
        flags = "".join([", log-y" if self.log_y else "", ", smoothed" if self.smooth else "",
                         ", x: minutes" if self.wall_x else ""])
        self.query_one("#compare-status", Static).update(
            Text.assemble(("compare ", "bold"), names, gone, f"   [{self.metric}{flags}]"))

    def draw_chart(self) -> None:
        self.query_one(LossChart).show(self.series, title=self.metric,
                                       xlabel="minutes" if self.wall_x else "step",
                                       smooth=self.smooth, log_y=self.log_y)

    def draw_diff(self) -> None:
        """The table: a few live facts per run, then only the config keys that differ."""
        self.diff = config_diff([r.config for r in self.records])
        header = [f"{r.id} {r.name}" for r in self.records]
        facts = [("status", [r.status for r in self.records]),
                 ("step", [f"{r.step}/{r.total_steps}" for r in self.records]),
                 ("loss~", [fmt_float(r.smooth_loss) for r in self.records]),
                 ("best", [fmt_float(r.best) for r in self.records])]
        rows = [(key, [fmt_value(v) for v in values]) for key, values in self.diff]
        shown = (header, facts, rows)
        if shown == self._shown_table:
            return  # unchanged: keep the cursor and scroll where they are
        self._shown_table = shown
        table = self.query_one("#compare-diff", DataTable)
        table.clear(columns=True)
        table.add_column("", key="key")
        for r, label in zip(self.records, header):
            table.add_column(label, key=str(r.id))
        for key, cells in facts:
            if key == "status":
                cells = [Text(c, style=STATUS_STYLE.get(c, "")) for c in cells]
            table.add_row(Text(key, style="dim italic"), *cells)
        if not rows:
            table.add_row(Text("(same config)", style="dim"), *["" for _ in self.records])
        for key, cells in rows:
            table.add_row(Text(key, style="bold"), *cells, key=f"cfg:{key}")

    # ---- keys -------------------------------------------------------------------------------------
    def redraw(self) -> None:
        if self.loaded:
            self.draw_chart()
            self.draw_status()

    def action_back(self) -> None:
        """Back to the view the compare was opened from (the runs table or the sweep)."""
        self.app.switch_mode(self.app.compare_origin)

    def reload(self) -> None:
        self.refresh_compare()

    @on(DataTable.ColumnSelected, "#compare-diff")
    def column_chosen(self, event: DataTable.ColumnSelected) -> None:
        """Enter on a run's column opens that run."""
        column = event.cursor_column - 1
        if 0 <= column < len(self.records):
            self.app.open_run(self.records[column].id)

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("toggle_smooth", "toggle_log", "toggle_x", "next_metric"):
            return True if self.enough() else None
        return True
