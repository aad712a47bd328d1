"""Pilot tests of the launch form: generated fields, live validation, presets, duplicate, queue."""

import dataclasses

import pytest
from textual.widgets import Input, Select, Static, Switch

from conftest import open_view, wait_for, wait_screen
from core.config import DEMO_PRESET, TrainConfig
from core.store import queries
from ddpm_tui.tui.screens.launch import PRESETS, LaunchScreen


async def open_launch(pilot) -> LaunchScreen:
    return await open_view(pilot, "2", LaunchScreen)


async def runs_loaded(pilot, n: int = 3) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == n, what=f"{n} rows")


def form_has(screen, **values) -> bool:
    """Whether the form's config is valid and holds `values` (it revalidates on every change)."""
    return screen.config is not None and all(getattr(screen.config, k) == v for k, v in values.items())


def error_text(screen, name: str) -> str:
    box = screen.query_one(f"#err-{name}", Static)
    return "" if "hidden" in box.classes else str(box.render())


async def type_into(pilot, screen, name: str, text: str) -> None:
    box = screen.query_one(f"#opt-{name}", Input)
    box.focus()
    box.value = ""
    await pilot.press(*text)
    await pilot.pause()  # the screen revalidates on each Changed message: all of them handled


async def paste_into(pilot, screen, name: str, text: str) -> None:
    """A long value (a path) in one change: typed key by key it costs a revalidation per key."""
    screen.query_one(f"#opt-{name}", Input).value = text
    await pilot.pause()


@pytest.mark.asyncio
async def test_key_2_opens_a_form_with_a_widget_per_option(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        for f in dataclasses.fields(TrainConfig):
            widget = screen.query_one(f"#opt-{f.name}")
            if f.metadata.get("choices"):
                assert isinstance(widget, Select) and widget.value == f.default
            elif f.type == "bool":
                assert isinstance(widget, Switch) and widget.value == f.default
            else:
                assert isinstance(widget, Input)
            assert widget.tooltip == f.metadata["help"]
        assert screen.config == TrainConfig()
        await pilot.press("escape")
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_invalid_values_are_reported_beside_their_field(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        await type_into(pilot, screen, "dim", "12")
        assert "multiple of 8" in error_text(screen, "dim")
        await type_into(pilot, screen, "lr", "fast")
        assert "expected a number" in error_text(screen, "lr")
        assert "multiple of 8" in error_text(screen, "dim")  # both problems shown at once
        assert screen.config is None
        await type_into(pilot, screen, "dim", "32")
        await type_into(pilot, screen, "lr", "1e-4")
        assert error_text(screen, "dim") == "" and error_text(screen, "lr") == ""
        assert screen.config.dim == 32 and screen.config.lr == 1e-4
        # a combination: conditional needs classes both
        screen.query_one("#opt-classes", Select).value = "cancerous"
        screen.query_one("#opt-conditional", Switch).value = True
        await wait_for(pilot, lambda: "--conditional needs --classes both" in error_text(screen, "conditional"),
                       what="the combination's problem", timeout=10)
        # launching with problems does nothing but say so
        n_before = len(queries.list_runs(pilot.app.lab.store))
        await pilot.press("ctrl+n")
        await pilot.app.workers.wait_for_complete()
        assert len(queries.list_runs(pilot.app.lab.store)) == n_before
        assert isinstance(pilot.app.screen, LaunchScreen)


@pytest.mark.asyncio
async def test_presets_fill_the_form(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        screen.query_one("#opt-data", Input).value = "/some/data"
        screen.query_one("#launch-preset", Select).value = "demo (CPU, about a minute)"
        await wait_for(pilot, lambda: form_has(screen, **DEMO_PRESET), what="the demo preset")
        cfg = screen.config
        for key, value in DEMO_PRESET.items():
            assert getattr(cfg, key) == value, key
        screen.query_one("#opt-data", Input).value = "/some/data"
        screen.query_one("#launch-preset", Select).value = "original: 32 px, cosine, no attention"
        await wait_for(pilot, lambda: form_has(screen, dim=TrainConfig().dim), what="the original preset")
        cfg = screen.config
        assert (cfg.image_size, cfg.schedule, cfg.attention, cfg.data) == (32, "cosine", "none", "/some/data")
        assert cfg.dim == TrainConfig().dim  # a preset starts from the defaults
        screen.query_one("#launch-preset", Select).value = "96 px conditional"
        await wait_for(pilot, lambda: form_has(screen, image_size=96), what="the 96 px preset")
        assert screen.config.image_size == 96 and screen.config.conditional and screen.config.classes == "both"
        for preset in PRESETS.values():
            TrainConfig(**{k: v for k, v in preset.items()}).validate()


@pytest.mark.asyncio
async def test_duplicate_as_new_prefills_the_form(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await runs_loaded(pilot)
        await open_launch(pilot)  # the screen exists already: prefill must work on resume too
        await pilot.press("escape")
        config = pilot.app.lab.run(2).config
        pilot.app.open_launch(dict(config))
        screen = await wait_screen(pilot, LaunchScreen)
        await wait_for(pilot, lambda: form_has(screen, name=config["name"]), what="the prefill")
        assert screen.config.to_dict() == config
        assert pilot.app.launch_prefill is None


@pytest.mark.asyncio
async def test_duplicate_from_the_runs_table(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await runs_loaded(pilot)
        await pilot.press("d")  # first row, run 1
        screen = await wait_screen(pilot, LaunchScreen)
        await wait_for(pilot, lambda: form_has(screen, name="seed-1"), what="the prefill")
        assert screen.config.name == "seed-1" and screen.config.schedule == "cosine"


@pytest.mark.asyncio
async def test_queue_creates_a_queued_run_with_the_form_config(tui_app, tmp_path):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        await paste_into(pilot, screen, "data", str(tmp_path / "pcam"))
        await type_into(pilot, screen, "name", "from-form")
        await type_into(pilot, screen, "max_steps", "123")
        await type_into(pilot, screen, "tag", "a, b")
        screen.query_one("#opt-schedule", Select).value = "linear"
        screen.query_one("#opt-augment", Switch).value = False
        await wait_for(pilot, lambda: form_has(screen, schedule="linear", augment=False), what="the form's choices")
        expected = screen.config.to_dict()
        await pilot.press("ctrl+n")
        await pilot.app.workers.wait_for_complete()
        await wait_for(pilot, lambda: pilot.app.current_mode == "runs", what="the switch back to the runs")
        runs = queries.list_runs(pilot.app.lab.store)
        run = runs[-1]
        assert len(runs) == 4 and run.status == "queued" and run.name == "from-form"
        assert run.config == {**expected, "warmup_steps": 12}  # the warm-up is capped at a tenth of the run
        assert run.config["schedule"] == "linear" and run.config["augment"] is False
        assert run.config["max_steps"] == 123 and run.config["tag"] == ["a", "b"]
        assert run.pid is None  # queue mode starts no process
        assert pilot.app.current_mode == "runs"
        assert any(f"run {run.id} queued" in str(n.message) for n in pilot.app._notifications)


@pytest.mark.asyncio
async def test_a_bad_data_path_is_a_notification_not_a_crash(tui_app, tmp_path):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        await paste_into(pilot, screen, "data", str(tmp_path / "nowhere"))
        await pilot.click("#launch-queue")
        await pilot.app.workers.wait_for_complete()
        await wait_for(pilot, lambda: any(n.severity == "error" for n in pilot.app._notifications), what="the error")
        assert pilot.app.is_running and isinstance(pilot.app.screen, LaunchScreen)
        assert len(queries.list_runs(pilot.app.lab.store)) == 3
        assert any(n.severity == "error" for n in pilot.app._notifications)
        assert "data path does not exist" in error_text(screen, "data")


@pytest.mark.asyncio
async def test_form_fits_a_small_terminal(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot)
        form = screen.query_one("#launch-form")
        assert form.max_scroll_y > 0  # scrolls rather than overflowing
        widget = screen.query_one("#opt-tag")
        widget.focus()
        await wait_for(pilot, lambda: form.scroll_y > 0, what="the form to scroll to the field", timeout=10)
        assert form.scroll_y > 0
        assert screen.query_one("#launch-now").region.height >= 1


@pytest.mark.slow
async def test_launch_now_starts_a_run_that_appears_and_trains(tui_app, tmp_path):
    from textual.widgets import DataTable

    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        await paste_into(pilot, screen, "data", str(tmp_path / "pcam"))
        for name, value in (("name", "launched-now"), ("dim", "16"),
                            ("dim_mults", "1,2"), ("res_blocks", "1"), ("batch_size", "8"), ("max_steps", "6"),
                            ("timesteps", "50"), ("ckpt_every", "3")):
            await type_into(pilot, screen, name, value)
        screen.query_one("#opt-attention", Select).value = "none"
        await wait_for(pilot, lambda: form_has(screen, attention="none"), what="attention none")
        await pilot.press("ctrl+l")
        store = pilot.app.lab.store
        await wait_for(pilot, lambda: (lambda runs: len(runs) == 4 and runs[-1].status == "finished")(
            queries.list_runs(store)), timeout=90, what="the launched run to finish")
        run = queries.list_runs(store)[-1]
        assert run.name == "launched-now" and run.status == "finished" and run.step == 6
        assert pilot.app.current_mode == "runs"
        table = pilot.app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: "launched-now" in [str(table.get_row_at(i)[1]) for i in range(table.row_count)],
                       timeout=10, what="the run in the table")
        assert "launched-now" in [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert queries.summaries(store)[run.id]["train/loss"]["count"] == 6
