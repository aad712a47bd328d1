"""Snapshot tests (pytest-textual-snapshot) of the main screens over a fixed, seeded store.
Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

import pytest
from textual.widgets import DataTable, Log

SIZES = pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])


async def rows_loaded(pilot, n=3):
    table = pilot.app.screen.query_one("#runs-table", DataTable)
    while table.row_count < n or table.columns["name"].content_width < len("seed-1"):  # measured
        await pilot.pause(0.05)
    await pilot.pause(0.2)


@SIZES
def test_runs_screen(snap_compare, tui_app, size):
    assert snap_compare(tui_app, terminal_size=size, run_before=rows_loaded)


def test_runs_screen_filtered_and_selected(snap_compare, tui_app):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("space", "slash", *"cosine", "enter")
        await pilot.pause(0.2)

    assert snap_compare(tui_app, terminal_size=(110, 24), run_before=before)


@SIZES
def test_run_detail_screen(snap_compare, tui_app, size):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("down", "enter")
        while pilot.app.screen.query(Log).first().line_count < 2:
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    assert snap_compare(tui_app, terminal_size=size, run_before=before)


@SIZES
def test_help_screen(snap_compare, tui_app, size):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(tui_app, terminal_size=size, run_before=before)


def test_compare_screen_fits_80x24(snap_compare, tui_app):
    """Chart, sample grids and the config table all in view on 24 rows."""
    async def before(pilot):
        await rows_loaded(pilot)
        pilot.app.open_compare([1, 2])
        while len([v for v in pilot.app.screen.query("SampleView") if v.path]) < 2:  # both grids drawn
            await pilot.pause(0.05)
        await pilot.pause(0.5)

    assert snap_compare(tui_app, terminal_size=(80, 24), run_before=before)


@pytest.mark.parametrize("key", ["2", "3"], ids=["launch", "ablation"])
def test_form_screens_fit_80x24(snap_compare, tui_app, key):
    """The launch form's and the ablation grid's buttons and every footer key in 80 columns."""
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press(key)
        await pilot.pause(0.5)

    assert snap_compare(tui_app, terminal_size=(80, 24), run_before=before)
