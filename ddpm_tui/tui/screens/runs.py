"""The runs table: every run, refreshed live, sortable, filterable, with actions on the selection."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Input, Static

from core.services.views import RunView
from ddpm_tui.keys import bindings
from ddpm_tui.tui.format import STATUS_STYLE, eta_seconds, eta_text, fmt_float, run_label
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.screens.dialogs import ConfirmDialog, TextPrompt
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.plain import ListTable, plain

COLUMNS = [("id", "id"), ("name", "name"), ("tags", "tags"), ("status", "status"), ("classes", "classes"), ("schedule", "schedule"),
           ("attention", "attn"), ("size", "size"), ("step", "step/total"), ("loss", "loss~"), ("img_per_s", "img/s"),
           ("eta", "ETA"), ("best", "best")]


def sort_value(r: RunView, column: str):
    """The value a column sorts by (numbers as numbers, missing values last)."""
    cfg = r.config
    value = {"id": r.id, "name": r.name, "tags": " ".join(r.tags), "status": r.status, "classes": cfg.get("classes"),
             "schedule": cfg.get("schedule"), "attention": cfg.get("attention"), "size": cfg.get("image_size"),
             "step": r.step, "loss": r.smooth_loss, "img_per_s": r.img_per_s, "eta": eta_seconds(r),
             "best": r.best}[column]
    return (value is None, value if value is not None else 0)


def row_cells(r: RunView, selected: bool) -> list:
    cfg = r.config
    return [
        Text(("● " if selected else "  ") + str(r.id), style="bold" if selected else ""),
        plain(r.name), plain(" ".join(r.tags), style="cyan"), Text(r.status, style=STATUS_STYLE.get(r.status, "")), cfg.get("classes", "-"),
        cfg.get("schedule", "-"), cfg.get("attention", "-"), str(cfg.get("image_size", "-")),
        f"{r.step}/{r.total_steps}", fmt_float(r.smooth_loss), fmt_float(r.img_per_s, 1),
        eta_text(r), fmt_float(r.best),
    ]


FIRST_PAINT_ROWS = 100  # more than a screen holds


def fit_columns(table: DataTable, rows: list[list]) -> None:
    """Widen each column to its widest cell now, not at the table's next idle: a rebuild just before
    a screen is drawn (a sort, the first paint) otherwise shows cells cut to the header's width."""
    for index, column in enumerate(table.ordered_columns):
        widest = max((cell.cell_len if isinstance(cell, Text) else cell_len(cell) for cell in (row[index] for row in rows)),
                     default=0)
        column.content_width = max(column.content_width, widest)


def matches(r: RunView, text: str) -> bool:
    """Every word of the filter must appear in the run's name, status, tags or `key=value` config."""
    haystack = " ".join([r.name, r.status, *r.tags, *(f"{k}={v}" for k, v in r.config.items())]).lower()
    return all(word in haystack for word in text.lower().split())


class RunsScreen(AppScreen):
    BINDINGS = bindings("runs")

    def __init__(self):
        super().__init__()
        self.records: dict[int, RunView] = {}
        self.selected: set[int] = set()
        self.filter_text = ""
        self.sort_column, self.sort_reverse = "id", False
        self.shown_order: list[int] = []
        self.shown_cells: dict[int, tuple] = {}  # run id -> (signature of its values, cells)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-status")
        table = ListTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Input(placeholder="filter: words in name, tags, status or key=value", id="runs-filter", classes="hidden")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = "ddpm-tui — runs"
        self.app.runs_signal.subscribe(self, self.apply)
        if self.app.run_records is not None:
            self.apply(self.app.run_records)

    # ---- data ----------------------------------------------------------------------------------
    def apply(self, records: list[RunView]) -> None:
        self.records = {r.id: r for r in records}
        self.selected &= set(self.records)
        self.render_table()

    def visible(self) -> list[dict]:
        rows = [r for r in self.records.values() if not self.filter_text or matches(r, self.filter_text)]
        return sorted(rows, key=lambda r: sort_value(r, self.sort_column), reverse=self.sort_reverse)

    def render_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        rows = self.visible()
        order = [r.id for r in rows]
        current = self.current_id()
        # Only rows whose values changed are rebuilt: with 1,000 runs a tick must cost next to nothing.
        changed, cells = [], {}
        for r in rows:
            signature = (r.status, r.step, r.total_steps, r.name, tuple(r.tags), r.smooth_loss,
                         r.img_per_s, r.best, r.id in self.selected, eta_seconds(r) is None)
            cached = self.shown_cells.get(r.id)
            if cached is None or cached[0] != signature or signature[-1] is False:
                cached = (signature, row_cells(r, r.id in self.selected))
                changed.append(r.id)
            cells[r.id] = cached
        if order == self.shown_order:
            for run_id in changed:
                for (key, _), cell in zip(COLUMNS, cells[run_id][1]):
                    table.update_cell(str(run_id), key, cell, update_width=True)  # "ETA 0:01:05" must not be cut
        else:
            # The first fill adds a screenful, which is drawn at once, and the other rows right after
            # that frame: a table measures and lays out every row it holds before it draws any.
            first = order if self.shown_order else order[:FIRST_PAINT_ROWS]
            table.clear()
            for run_id in first:
                table.add_row(*cells[run_id][1], key=str(run_id))
            fit_columns(table, [cells[run_id][1] for run_id in order])
            self.shown_order = first
            if len(first) < len(order):
                self.set_timer(0.1, lambda: self.add_rest(order, cells))
            if current in order:
                table.move_cursor(row=order.index(current))
        self.shown_cells = cells
        counts = {}
        for r in self.records.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = "  ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no runs yet — press 2 to launch one"
        sort = f"sort {self.sort_column} {'↓' if self.sort_reverse else '↑'}"
        flt = f"  filter '{self.filter_text}'" if self.filter_text else ""
        sel = f"  {len(self.selected)} selected" if self.selected else ""
        self.query_one("#runs-status", Static).update(plain(f"{summary}   [{sort}{flt}{sel}]"))

    def add_rest(self, order: list[int], cells: dict) -> None:
        """The rows after the first screenful, unless the table was rebuilt in between."""
        if order[:len(self.shown_order)] != self.shown_order or len(self.shown_order) == len(order):
            return
        table = self.query_one("#runs-table", DataTable)
        for run_id in order[len(self.shown_order):]:
            table.add_row(*cells[run_id][1], key=str(run_id))
        self.shown_order = order

    def name_of(self, run_id: int) -> str:
        return self.records[run_id].name if run_id in self.records else ""

    def current_id(self) -> int | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key is not None and key.value is not None else None

    def targets(self) -> list[int]:
        if self.selected:
            return sorted(self.selected)
        current = self.current_id()
        return [current] if current is not None else []

    # ---- navigation, selection, sort, filter -----------------------------------------------------
    def action_open(self) -> None:
        run_id = self.current_id()
        if run_id is not None:
            self.app.open_run(run_id)

    @on(DataTable.RowSelected, "#runs-table")
    def row_chosen(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))

    @on(DataTable.HeaderSelected, "#runs-table")
    def header_chosen(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self.render_table()

    def action_toggle_select(self) -> None:
        run_id = self.current_id()
        if run_id is None:
            return
        self.selected ^= {run_id}
        self.render_table()
        table = self.query_one("#runs-table", DataTable)
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))

    def action_cycle_sort(self) -> None:
        keys = [k for k, _ in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.render_table()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.render_table()

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_table()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if self.filter_text or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.filter_text = ""
            self.query_one("#runs-table", DataTable).focus()
            self.render_table()
        elif self.selected:
            self.selected.clear()
            self.render_table()

    # ---- actions --------------------------------------------------------------------------------
    def confirm_then(self, question: str, action: str, **kwargs) -> None:
        ids = self.targets()
        if not ids:
            self.notify("no run under the cursor", severity="warning")
            return
        label = ", ".join(run_label(i, self.name_of(i)) for i in ids)

        def done(ok: bool | None) -> None:
            if ok:
                self.app.act_on_runs(action, ids, **kwargs)

        self.app.push_screen(ConfirmDialog(question.format(runs=label)), done)

    def action_stop(self) -> None:
        self.confirm_then("Stop run(s) {runs}? They checkpoint and can be resumed.", "stop")

    def action_kill(self) -> None:
        self.confirm_then("Kill run(s) {runs}? SIGTERM, then SIGKILL after 10 s.", "kill")

    def action_delete(self) -> None:
        self.confirm_then("Delete run(s) {runs} and their directories? This cannot be undone.", "delete")

    def action_resume(self) -> None:
        ids = self.targets()
        if ids:
            self.app.act_on_runs("resume", ids)

    def _prompt(self, title: str, action: str) -> None:
        ids = self.targets()
        if not ids:
            return
        title = title.format(runs=", ".join(run_label(i, self.name_of(i)) for i in ids))

        def done(text: str | None) -> None:
            if text:
                self.app.act_on_runs(action, ids, text=text)

        self.app.push_screen(TextPrompt(title), done)

    def action_tag(self) -> None:
        self._prompt("Tags to add to run(s) {runs} (space separated)", "tag")

    def action_note(self) -> None:
        self._prompt("Note on run(s) {runs}", "note")

    def action_sample(self) -> None:
        ids = self.targets()
        if ids:
            self.app.act_on_runs("sample", ids)

    def action_duplicate(self) -> None:
        run_id = self.current_id()
        if run_id is not None:
            self.app.open_launch(dict(self.records[run_id].config))

    def action_compare(self) -> None:
        ids = self.targets()
        if len(ids) < 2:
            self.notify("select two or more runs with space, then press c", severity="warning")
            return
        self.app.open_compare(ids)

    def action_worker(self) -> None:
        self.app.act_on_runs("worker", [])

    def evaluation_targets(self) -> list[int]:
        return self.targets()

    def action_evaluate(self) -> None:
        ids = self.targets()
        if not ids:
            self.notify("no run under the cursor", severity="warning")
            return
        self.app.evaluate_runs(ids)
