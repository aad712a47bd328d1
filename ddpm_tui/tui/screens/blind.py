"""Blind test: "Can YOU guess which ones are cancerous?"

Two games on a trained run, scored with an exact binomial test against guessing (core/blind.py):
- class test (g): generated patches of a class-conditional run, one at a time, shuffled;
  answer c (cancerous) or n (non-cancerous).
- real vs generated (v): a real test-split patch and a generated one side by side;
  answer a / left or b / right for the one you think is generated.
Every finished test is stored (table blind_tests) and listed below the form."""

from __future__ import annotations

import math
import random
import time

import numpy as np
from PIL import Image as PILImage
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Input, Label, Static
from textual.worker import get_current_worker
from textual_image.widget import Image

from core.services.views import BlindTest, RunView
from core.blind import CLASS_MODE, CLASS_NAMES, PAIR_MODE, BlindSession, verdict
from core.text import printable
from ddpm_tui.keys import bindings
from ddpm_tui.tui.failures import reported
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.plain import PlainTable, plain

DEFAULT_TRIALS = 10
MAX_TRIALS = 200
SAMPLING_STEPS = 50
DISPLAY_PX = 96  # the size of an original PCam patch
QUESTION = "Can YOU guess which ones are cancerous?"  # what a class-conditional run's test asks
PAIR_QUESTION = "Can YOU tell which patch the model made?"  # any run: real vs generated
SETUP_HELP = ("g  class test: is this generated patch cancerous? (class-conditional runs)\n"
              "v  real vs generated: which of two patches did the model make?\n"
              "e  edit the run id and the number of trials")


def question_for(record) -> str:
    """The question the setup asks: an unconditional run has no class to guess, only real vs generated."""
    return QUESTION if record is not None and record.config.get("conditional") else PAIR_QUESTION


def upscale(patch: np.ndarray, size: int = DISPLAY_PX) -> PILImage.Image:
    """A uint8 (S, S, 3) patch enlarged with nearest-neighbour pixels to about `size` px, so the
    terminal shows the pixels the model made rather than a blur of them."""
    factor = max(1, size // max(patch.shape[:2]))
    return PILImage.fromarray(np.ascontiguousarray(patch.repeat(factor, axis=0).repeat(factor, axis=1)))


def cell_aspect() -> float:
    """Height / width of a terminal cell in pixels (about 2), so a square patch stays square."""
    try:
        from textual_image._terminal import get_cell_size

        cell = get_cell_size()
        return max(1.0, min(3.0, cell.height / cell.width))
    except Exception:
        return 2.0


def fmt_p(p: float) -> str:
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def marks(session: BlindSession) -> str:
    return "".join("✓" if a == t else "✗" for a, t in zip(session.answers, session.truths))


class BlindTestScreen(AppScreen):
    AUTO_FOCUS = "#blind-results"
    BINDINGS = bindings("blind")

    def __init__(self):
        super().__init__()
        self.state = "setup"  # setup -> generating -> trial -> result
        self.mode = CLASS_MODE
        self.run_id: int | None = None
        self.run_record: RunView | None = None
        self.run_edited = False
        self.seed: int | None = None  # None: a fresh seed per test (tests may fix it)
        self.session: BlindSession | None = None
        self.images: list = []  # per trial: one patch (class test) or (left, right) patches
        self.extra: dict = {}
        self.results: list[BlindTest] = []
        self.saved_id: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="blind-status")
        with Vertical(id="blind-setup"):
            yield Static(Text(question_for(None), style="bold"), id="blind-question")
            with Horizontal(id="blind-form"):
                yield Label("run id")
                yield Input(id="blind-run", type="integer", placeholder="id")
                yield Label("trials")
                yield Input(str(DEFAULT_TRIALS), id="blind-count", type="integer")
                yield Static("", id="blind-run-info")
            yield Static(SETUP_HELP, id="blind-help")
        yield Static("", id="blind-result", classes="hidden")
        with Horizontal(id="blind-stage", classes="hidden"):
            with Vertical(id="blind-panel-a", classes="blind-panel"):
                yield Static("", id="blind-caption-a", classes="blind-caption")
                yield Image(None, id="blind-img-a")
            with Vertical(id="blind-panel-b", classes="blind-panel"):
                yield Static("", id="blind-caption-b", classes="blind-caption")
                yield Image(None, id="blind-img-b")
        yield Static("", id="blind-prompt", classes="hidden")
        table = PlainTable(id="blind-results", cursor_type="row", zebra_stripes=True)
        for key, label in (("when", "when"), ("run", "run"), ("mode", "test"), ("score", "score"),
                           ("p", "p (vs guessing)"), ("verdict", "verdict")):
            table.add_column(label, key=key)
        yield table
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = "ddpm-tui — blind test"
        self.set_state("setup")
        self.load_results()

    def on_screen_resume(self) -> None:
        if self.state == "setup" and not self.run_edited:
            self.pick_default_run(self.cursor_run_id())

    # ---- state ---------------------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        self.state = state
        in_trial = state == "trial"
        self.query_one("#blind-setup").set_class(state not in ("setup", "result"), "hidden")
        self.query_one("#blind-result").set_class(state != "result", "hidden")
        for widget in self.query("#blind-question, #blind-help"):
            widget.set_class(state == "result", "hidden")  # room for the score and the list
        self.query_one("#blind-stage").set_class(not in_trial, "hidden")
        self.query_one("#blind-prompt").set_class(not in_trial, "hidden")
        self.query_one("#blind-results").set_class(in_trial or state == "generating", "hidden")
        if in_trial:
            self.set_focus(None)  # the answer keys (arrows included) go to the screen
        elif state in ("setup", "result") and not isinstance(self.focused, Input):
            self.set_focus(self.query_one("#blind-results"))
        self.refresh_bindings()
        self.update_status()

    def update_status(self, text: str | None = None) -> None:
        if text is None:
            if self.state == "trial" and self.session:
                what = "class test" if self.mode == CLASS_MODE else "real vs generated"
                text = (f"run {self.run_id} — {what}: {self.session.position + 1} of {self.session.n}"
                        "   (esc abandons)")
            elif self.state == "result" and self.session:
                text = f"run {self.run_id} — done: {self.session.correct}/{self.session.n} correct"
            else:
                text = "blind test — choose a run, then g (class test) or v (real vs generated)"
        self.query_one("#blind-status", Static).update(text)

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("start", "edit"):
            return self.state in ("setup", "result")
        if action == "answer":
            if self.state != "trial":
                return False
            return (parameters[0] in CLASS_NAMES) == (self.mode == CLASS_MODE)
        return True

    # ---- choosing the run --------------------------------------------------------------------------
    def cursor_run_id(self) -> int | None:
        """The run under the cursor of the runs view, if that view exists."""
        try:
            stack = self.app.get_screen_stack("runs")
        except KeyError:
            return None
        for screen in stack:
            if hasattr(screen, "current_id"):
                try:
                    return screen.current_id()
                except Exception:
                    return None
        return None

    @work(thread=True, exclusive=True, group="blind-run")
    @reported("reading runs")
    def pick_default_run(self, cursor_id: int | None) -> None:
        """The run under the runs cursor, else the newest finished conditional run, else the newest
        finished run."""
        records = self.app.lab.runs()
        by_id = {r.id: r for r in records}
        finished = [r for r in records if r.status == "finished"]
        conditional = [r for r in finished if r.config.get("conditional")]
        chosen = by_id.get(cursor_id) or (conditional or finished or [None])[-1]
        self.app.call_from_thread(self.show_run, chosen, True)

    @work(thread=True, exclusive=True, group="blind-run")
    def load_run(self, run_id: int) -> None:
        try:
            record = self.app.lab.run(run_id)
        except Exception as exc:
            self.app.call_from_thread(self.show_run_problem, run_id, exc)
            return
        self.app.call_from_thread(self.show_typed_run, run_id, record)

    def typed_id(self) -> str:
        return self.query_one("#blind-run", Input).value.strip()

    def show_typed_run(self, run_id: int, record: dict) -> None:
        if self.typed_id() == str(run_id):  # not overtaken by more typing
            self.show_run(record, False)

    def show_run(self, record: dict | None, fill_input: bool) -> None:
        if fill_input and self.run_edited:
            return
        self.run_record = record
        self.run_id = record.id if record else None
        box = self.query_one("#blind-run", Input)
        if fill_input:
            with box.prevent(Input.Changed):
                box.value = str(self.run_id) if record else ""
        self.query_one("#blind-question", Static).update(Text(question_for(record), style="bold"))
        info = self.query_one("#blind-run-info", Static)
        if record is None:
            info.update("no finished run yet: train one, or type a run id")
            return
        cfg = record.config
        kind = "conditional" if cfg.get("conditional") else f"unconditional, {cfg.get('classes', '?')}"
        note = "" if cfg.get("conditional") else "  — class test needs a conditional run"
        info.update(Text.assemble((printable(record.name), "bold"), f"  {record.status}, {kind}, "
                                  f"{cfg.get('image_size', '?')} px, step {record.step}", (note, "dim")))

    def show_run_problem(self, run_id: int, exc: BaseException) -> None:
        if self.typed_id() != str(run_id):
            return
        self.run_id, self.run_record = None, None
        self.query_one("#blind-run-info", Static).update(plain(str(exc).splitlines()[0], style="red"))

    @on(Input.Changed, "#blind-run")
    def run_typed(self, event: Input.Changed) -> None:
        self.run_edited = True
        value = event.value.strip()
        if value.lstrip("-").isdigit():
            self.load_run(int(value))
        else:
            self.run_id, self.run_record = None, None
            self.query_one("#blind-run-info", Static).update("type a run id")

    @on(Input.Submitted)
    def form_done(self) -> None:
        self.set_focus(self.query_one("#blind-results"))

    def action_edit(self) -> None:
        self.query_one("#blind-run", Input).focus()

    def trials_wanted(self) -> int:
        value = self.query_one("#blind-count", Input).value.strip()
        try:
            n = int(value)
        except ValueError:
            n = DEFAULT_TRIALS
        return max(2, min(MAX_TRIALS, n))

    # ---- running a test ----------------------------------------------------------------------------
    def action_start(self, mode: str) -> None:
        if self.run_id is None:
            self.notify("choose a run first: press e and type its id", severity="warning")
            return
        if mode == CLASS_MODE and self.run_record and not self.run_record.config.get("conditional"):
            self.notify(f"run {self.run_id} is not class-conditional: the class test needs a run trained "
                        "with --conditional (try v: real vs generated)", severity="warning", timeout=6)
            return
        self.mode = mode
        seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**31)
        n = self.trials_wanted()
        self.set_state("generating")
        what = f"{2 * math.ceil(n / 2)} patches" if mode == CLASS_MODE else f"{n} generated + {n} real patches"
        self.update_status(f"run {self.run_id}: generating {what} (DDIM, {SAMPLING_STEPS} steps)… "
                           "this can take a while on a CPU; esc cancels")
        self.prepare(self.run_id, mode, n, seed)

    @work(thread=True, exclusive=True, group="blind-generate")
    def prepare(self, run_id: int, mode: str, n: int, seed: int) -> None:
        worker = get_current_worker()
        try:
            truths, images = self.app.lab.blind_trials(run_id, mode, n, seed, SAMPLING_STEPS)
        except Exception as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.preparation_failed, exc)
            return
        if not worker.is_cancelled:
            extra = {"seed": seed, "sampler": "ddim", "steps": SAMPLING_STEPS, "guidance": 0.0}
            self.app.call_from_thread(self.begin, run_id, mode, truths, images, extra)

    def preparation_failed(self, exc: BaseException) -> None:
        self.app.report_error(f"blind test of run {self.run_id}", exc)
        self.set_state("setup")

    def begin(self, run_id: int, mode: str, truths: list[str], images: list, extra: dict) -> None:
        if self.state != "generating":
            return
        self.run_id, self.mode = run_id, mode
        self.session = BlindSession(mode, truths)
        self.images, self.extra, self.saved_id = images, extra, None
        self.set_state("trial")
        self.show_trial()

    def fit_images(self) -> None:
        """Make the patches as big as the terminal allows: a square patch is about twice as many
        cells wide as high, and the pair test puts two side by side."""
        width, height = self.size
        rows = height - 8  # header, status, caption, prompt (and its margin), footer, slack
        if self.mode == PAIR_MODE:
            rows = min(rows, int((width - 12) / (2 * cell_aspect())))
        else:
            rows = min(rows, int((width - 6) / cell_aspect()))
        rows = max(4, rows)
        for image in self.query(Image):
            image.styles.height = rows
            image.styles.width = round(rows * cell_aspect())

    def on_resize(self) -> None:
        if self.state == "trial":
            self.fit_images()

    def show_trial(self) -> None:
        i = self.session.position
        pair = self.mode == PAIR_MODE
        self.fit_images()
        left, right = self.images[i] if pair else (self.images[i], None)
        self.query_one("#blind-img-a", Image).image = upscale(left)
        self.query_one("#blind-img-b", Image).image = upscale(right) if pair else None
        self.query_one("#blind-panel-b").set_class(not pair, "hidden")
        self.query_one("#blind-caption-a", Static).update(
            "A  (a or ←)" if pair else f"patch {i + 1} of {self.session.n}")
        self.query_one("#blind-caption-b", Static).update("B  (b or →)")
        prompt = ("Which one is GENERATED?  a / ← for A,  b / → for B" if pair else
                  "Is this patch cancerous?  c = cancerous,  n = non-cancerous")
        self.query_one("#blind-prompt", Static).update(Text(prompt, style="bold"))
        self.update_status()

    def action_answer(self, value: str) -> None:
        if self.state != "trial" or self.session is None:
            return
        self.session.answer(value)
        if self.session.done:
            self.finish()
        else:
            self.show_trial()

    def finish(self) -> None:
        s = self.session
        what = "class test" if self.mode == CLASS_MODE else "real vs generated"
        chance = ("a coin flip would say the right class" if self.mode == CLASS_MODE
                  else "a coin flip would find the generated patch")
        self.query_one("#blind-result", Static).update(Text.assemble(
            (f"{s.correct} / {s.n} correct", "bold"), f"  ({what}, run {self.run_id})\n",
            f"one-sided exact binomial p = {fmt_p(s.p_value)}: the chance of {s.correct} or more right "
            f"out of {s.n} if {chance} half the time\n", (verdict(s.correct, s.n), "bold"), "   ", marks(s)))
        self.set_state("result")
        self.save_result(self.run_id, self.mode, s.n, s.correct, s.p_value, s.record(**self.extra))

    @work(thread=True, group="blind-save")
    @reported("storing the blind test")
    def save_result(self, run_id: int, mode: str, n: int, correct: int, p: float, answers: dict) -> None:
        saved = self.app.lab.add_blind_test(run_id, mode, n, correct, p, answers)
        self.saved_id = saved
        self.app.call_from_thread(self.notify, f"blind test stored (run {run_id}: {correct}/{n})")
        self.load_results()

    # ---- past results --------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="blind-results")
    @reported("reading blind tests")
    def load_results(self) -> None:
        results = self.app.lab.blind_tests()
        self.app.call_from_thread(self.show_results, results)

    def show_results(self, results: list[BlindTest]) -> None:
        self.results = results
        table = self.query_one("#blind-results", DataTable)
        table.clear()
        for r in results:
            table.add_row(time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)), str(r.run_id),
                          "class" if r.mode == CLASS_MODE else "real/gen", f"{r.correct}/{r.n}",
                          fmt_p(r.p_value), verdict(r.correct, r.n).split(" (")[0], key=str(r.id))
        if not results:
            table.add_row("no blind tests yet", "", "", "", "", "")

    def action_back(self) -> None:
        if self.state in ("trial", "generating"):
            if self.state == "generating":
                self.workers.cancel_group(self, "blind-generate")
            self.notify("blind test abandoned (not stored)")
            self.session = None
            self.set_state("setup")
        elif self.state == "result":
            self.set_state("setup")
        elif isinstance(self.focused, Input):
            self.set_focus(self.query_one("#blind-results"))
        else:
            self.app.switch_mode("runs")
