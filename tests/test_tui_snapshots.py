"""Snapshot tests (pytest-textual-snapshot) of the main screens over a fixed, seeded store.
Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

import pytest
from textual.widgets import DataTable, Log

from conftest import wait_for, wait_screen
from ddpm_tui.tui.screens.ablation import AblationScreen
from ddpm_tui.tui.screens.compare import CompareScreen
from ddpm_tui.tui.screens.detail import RunDetailScreen
from ddpm_tui.tui.screens.help import HelpScreen
from ddpm_tui.tui.screens.launch import LaunchScreen

SIZES = pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])


async def rows_loaded(pilot, n=3):
    """The runs table filled and its columns measured (snap_compare itself waits for idle after)."""
    table = pilot.app.screen.query_one("#runs-table", DataTable)
    await wait_for(pilot, lambda: table.row_count >= n and table.columns["name"].content_width >= len("seed-1"),
                   what="rows measured", timeout=10)
    return table


@SIZES
def test_runs_screen(snap_compare, tui_app, size):
    assert snap_compare(tui_app, terminal_size=size, run_before=rows_loaded)


def test_runs_screen_filtered_and_selected(snap_compare, tui_app):
    async def before(pilot):
        table = await rows_loaded(pilot)
        await pilot.press("space", "slash", *"cosine", "enter")
        await wait_for(pilot, lambda: table.row_count == 2, what="the two cosine runs", timeout=10)

    assert snap_compare(tui_app, terminal_size=(110, 24), run_before=before)


@SIZES
def test_run_detail_screen(snap_compare, tui_app, size):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("down", "enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        await wait_for(pilot, lambda: screen.record is not None and screen.query_one(Log).line_count >= 2
                       and screen.query_one("#detail-samples").path is not None
                       and screen.query_one("#detail-chart").drawn, what="the run page filled", timeout=10)

    assert snap_compare(tui_app, terminal_size=size, run_before=before)


@SIZES
def test_help_screen(snap_compare, tui_app, size):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("question_mark")
        await wait_screen(pilot, HelpScreen)

    assert snap_compare(tui_app, terminal_size=size, run_before=before)


def test_compare_screen_fits_80x24(snap_compare, tui_app):
    """Chart, sample grids and the config table all in view on 24 rows."""
    async def before(pilot):
        await rows_loaded(pilot)
        pilot.app.open_compare([1, 2])
        screen = await wait_screen(pilot, CompareScreen)
        await wait_for(pilot, lambda: screen.loaded and len([v for v in screen.query("SampleView") if v.path]) == 2,
                       what="the data and both grids", timeout=10)

    assert snap_compare(tui_app, terminal_size=(80, 24), run_before=before)


@pytest.mark.parametrize("key", ["2", "3"], ids=["launch", "ablation"])
def test_form_screens_fit_80x24(snap_compare, tui_app, key):
    """The launch form's and the ablation grid's buttons and every footer key in 80 columns."""
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press(key)
        await wait_screen(pilot, {"2": LaunchScreen, "3": AblationScreen}[key])

    assert snap_compare(tui_app, terminal_size=(80, 24), run_before=before)
