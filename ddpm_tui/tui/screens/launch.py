"""Launch a run: a form generated from TrainConfig, presets, live validation, launch now or queue."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Header, Input, Label, Select, Static, Switch

from core.config import DEMO_PRESET, FIELD_TYPES, TrainConfig, flag, parse_value
from core.errors import BadConfig, BadInput
from ddpm_tui.keys import bindings
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.widgets.keys_footer import KeysFooter

FIELDS = dataclasses.fields(TrainConfig)
DEFAULTS: dict[str, Any] = TrainConfig().to_dict()

# Named starting points; a preset is applied over the defaults (the data path is kept unless the
# preset names one).
PRESETS: dict[str, dict[str, Any]] = {
    "original: 32 px, cosine, no attention": dict(
        image_size=32, preprocess="center-crop", schedule="cosine", timesteps=1000, attention="none",
        classes="cancerous", conditional=False, name="original"),
    "96 px conditional": dict(
        image_size=96, classes="both", conditional=True, cond_drop=0.1, schedule="cosine", attention="full",
        attn_resolutions="auto", dim=64, dim_mults="1,2,4,8", batch_size=32, max_steps=50000,
        precision="bf16", name="cond-96"),
    "demo (CPU, about a minute)": dict(DEMO_PRESET),
}

def to_text(name: str, value: Any) -> str:
    """A config value as the text an Input shows."""
    if isinstance(value, bool):
        return on_off(value)
    if name == "tag":
        return ", ".join(map(str, value or []))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def on_off(value: bool) -> str:
    return "on" if value else "off"


def check_values(values: dict[str, Any], problems: dict[str, str]) -> TrainConfig | None:
    """Validate a full set of values; every bad field's message goes into `problems` (fields that
    did not even parse are already there). Returns the config when there is no problem at all."""
    try:
        cfg = TrainConfig(**values).validate()
    except BadConfig as exc:
        for name, message in exc.problems.items():
            problems.setdefault(name, message)
        return None
    return None if problems else cfg


class LaunchScreen(AppScreen):
    """Every training option of TrainConfig as a form field, with its help and default."""

    BINDINGS = bindings("launch")

    def __init__(self):
        super().__init__()
        self.problems: dict[str, str] = {}
        self.config: TrainConfig | None = None
        self.busy = False
        self.shown_errors: dict[str | None, str] = {}  # what the error lines (None: status line) show

    # ---- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="launch-bar"):
            yield Select([(label, label) for label in PRESETS], prompt="preset…", id="launch-preset", compact=True)
            yield Button("Launch now ^L", id="launch-now", variant="primary", compact=True)
            yield Button("Queue ^N", id="launch-queue", variant="success", compact=True)
            yield Button("Defaults ^R", id="launch-reset", compact=True)
        yield Static("", id="launch-status")
        with VerticalScroll(id="launch-form", can_focus=False):
            for f in FIELDS:
                yield self._field_row(f)
        yield KeysFooter()

    def _field_row(self, f: dataclasses.Field) -> Vertical:
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        default = DEFAULTS[f.name]
        if choices:
            control = Select([(str(c), c) for c in choices], value=default, allow_blank=False, compact=True,
                             id=f"opt-{f.name}")
        elif FIELD_TYPES[f.name] is bool:
            control = Switch(value=default, id=f"opt-{f.name}")
        else:
            shown = to_text(f.name, default)
            control = Input(value=shown, placeholder=shown or f.name, compact=True, id=f"opt-{f.name}")
        control.tooltip = help_text
        control.add_class("opt-control")
        shown_control = control
        if isinstance(control, Switch):  # a switch's state in words too (colour alone is easy to miss)
            shown_control = Horizontal(control, Static(on_off(default), id=f"state-{f.name}", classes="opt-state"),
                                       classes="opt-switch-box")
        row = Horizontal(Label(f"--{flag(f.name)}", classes="opt-label"), shown_control,
                         Static(f"{escape(help_text)} [dim](default: {escape(to_text(f.name, default)) or '—'})[/dim]",
                                classes="opt-help", markup=True),
                         classes="opt-row")
        error = Static("", id=f"err-{f.name}", classes="opt-error hidden", markup=False)
        return Vertical(row, error, id=f"field-{f.name}", classes="opt-field")

    def on_mount(self) -> None:
        self.title = "ddpm-tui — launch a run"
        self.apply_prefill()
        self.revalidate()

    def on_screen_resume(self) -> None:
        self.apply_prefill()

    # ---- form <-> values ----------------------------------------------------------------------
    def control(self, name: str):
        return self.query_one(f"#opt-{name}")

    def read_form(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(typed values, unparseable fields -> message) from the widgets."""
        values, problems = {}, {}
        for f in FIELDS:
            widget = self.control(f.name)
            if isinstance(widget, Select):
                values[f.name] = DEFAULTS[f.name] if widget.is_blank() else widget.value
            elif isinstance(widget, Switch):
                values[f.name] = bool(widget.value)
            else:
                if not widget.value.strip() and FIELD_TYPES[f.name] in (int, float):
                    values[f.name] = DEFAULTS[f.name]  # empty shows the default as placeholder: means it
                    continue
                try:
                    values[f.name] = parse_value(f.name, widget.value)
                except BadInput as exc:
                    values[f.name] = DEFAULTS[f.name]
                    problems[f.name] = str(exc)
        return values, problems

    def fill(self, values: dict[str, Any]) -> None:
        """Set the widgets from a config dict (unknown keys are ignored)."""
        for f in FIELDS:
            if f.name not in values:
                continue
            value, widget = values[f.name], self.control(f.name)
            if isinstance(widget, Select):
                choices = f.metadata.get("choices") or ()
                if value in choices:
                    widget.value = value
                elif str(value) in map(str, choices):
                    widget.value = next(c for c in choices if str(c) == str(value))
                else:
                    self.notify(f"--{flag(f.name)}: {value!r} is not a known choice; kept {widget.value!r}",
                                severity="warning")
            elif isinstance(widget, Switch):
                widget.value = bool(value)
            else:
                widget.value = to_text(f.name, value)
        self.revalidate()

    def apply_prefill(self) -> None:
        prefill = getattr(self.app, "launch_prefill", None)
        if not prefill:
            return
        self.app.launch_prefill = None
        self.fill({**DEFAULTS, **prefill})
        origin = f" of run '{prefill['name']}'" if prefill.get("name") else ""
        self.notify(f"form filled from the config{origin}: change what you need, then ^L or ^N")
        self.query_one("#launch-form").scroll_home(animate=False)

    # ---- validation ---------------------------------------------------------------------------
    @on(Input.Changed, ".opt-control")
    @on(Select.Changed, ".opt-control")
    @on(Switch.Changed, ".opt-control")
    def changed(self, event) -> None:
        if isinstance(event, Switch.Changed):
            name = event.switch.id.removeprefix("opt-")
            self.query_one(f"#state-{name}", Static).update(on_off(event.value))
        self.revalidate()

    def revalidate(self) -> None:
        values, problems = self.read_form()
        self.config = check_values(values, problems)
        self.problems = problems
        for f in FIELDS:
            self.show_error(f.name, problems.get(f.name, ""))
        if problems:
            text = f"[b red]{len(problems)} problem(s):[/] " + ", ".join(f"--{flag(n)}" for n in problems)
        else:
            c = self.config
            text = (f"[green]ready[/]: {c.classes}{' conditional' if c.conditional else ''}, {c.image_size} px, "
                    f"{c.schedule}, attention {c.attention}, {c.max_steps} steps on {escape(c.data or '?')}")
        self.set_status(text)

    def set_status(self, text: str) -> None:
        if text != self.shown_errors.get(None):  # an update re-lays out the screen: only when it changed
            self.shown_errors[None] = text
            self.query_one("#launch-status", Static).update(text)

    def show_error(self, name: str, message: str) -> None:
        if self.shown_errors.get(name, "") == message:
            return
        self.shown_errors[name] = message
        box = self.query_one(f"#err-{name}", Static)
        box.update(message)
        box.set_class(not message, "hidden")
        self.query_one(f"#field-{name}").set_class(bool(message), "invalid")

    # ---- actions ------------------------------------------------------------------------------
    @on(Select.Changed, "#launch-preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        if event.select.is_blank():
            return
        preset = PRESETS[event.value]
        current_data = self.control("data").value
        self.fill({**DEFAULTS, "data": current_data, **preset})
        self.notify(f"preset '{event.value}' applied")

    def action_reset(self) -> None:
        self.fill(DEFAULTS)
        self.query_one("#launch-preset", Select).clear()

    @on(Button.Pressed, "#launch-now")
    def launch_now_pressed(self) -> None:
        self.action_launch(False)

    @on(Button.Pressed, "#launch-queue")
    def queue_pressed(self) -> None:
        self.action_launch(True)

    @on(Button.Pressed, "#launch-reset")
    def reset_pressed(self) -> None:
        self.action_reset()

    def action_launch(self, queue: bool) -> None:
        self.revalidate()
        if self.config is None:
            first = next(iter(self.problems), None)
            self.notify("fix the fields marked in red first", severity="error")
            if first:
                self.control(first).focus()
            return
        if self.busy:
            self.notify("already launching…", severity="warning")
            return
        self.busy = True
        self.set_status("queueing…" if queue else "launching…")
        self.launch_run(self.config, queue)

    @work(thread=True, exclusive=True, group="launch")
    def launch_run(self, cfg: TrainConfig, queue: bool) -> None:
        try:
            run = self.app.lab.launch(cfg, queue=queue)
            run_id = run.id
        except Exception as exc:  # bad data path, locked store...: a notification, never a crash
            self.app.call_from_thread(self.launch_failed, exc)
            return
        self.app.call_from_thread(self.launched, run_id, queue)

    def launched(self, run_id: int, queue: bool) -> None:
        self.busy = False
        self.revalidate()
        what = "queued (start a worker with w on the runs screen)" if queue else "started"
        self.notify(f"run {run_id} {what}")
        # back on the form later, the digits switch views until a field is chosen again
        self.query_one("#launch-preset", Select).focus()
        self.app.switch_mode("runs")

    def launch_failed(self, exc: BaseException) -> None:
        self.busy = False
        self.revalidate()
        message = str(exc)
        name = None
        if isinstance(exc, BadInput):  # the form validated, so what launch refuses is about the data
            name = exc.field if exc.field in DEFAULTS else "data"
        if name:
            self.show_error(name, message)
            self.control(name).focus()
        self.app.report_error("launch", exc)
