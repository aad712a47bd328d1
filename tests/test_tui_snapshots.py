"""Snapshot tests (pytest-textual-snapshot) of the main screens over a fixed, seeded store.
Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

from textual.widgets import DataTable, Log


async def rows_loaded(pilot, n=3):
    table = pilot.app.screen.query_one("#runs-table", DataTable)
    while table.row_count < n:
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_runs_screen(snap_compare, tui_app):
    assert snap_compare(tui_app, terminal_size=(110, 24), run_before=rows_loaded)


def test_runs_screen_filtered_and_selected(snap_compare, tui_app):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("space", "slash", *"cosine", "enter")
        await pilot.pause(0.2)

    assert snap_compare(tui_app, terminal_size=(110, 24), run_before=before)


def test_run_detail_screen(snap_compare, tui_app):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("down", "enter")
        while pilot.app.screen.query(Log).first().line_count < 2:
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    assert snap_compare(tui_app, terminal_size=(120, 36), run_before=before)


def test_help_screen(snap_compare, tui_app):
    async def before(pilot):
        await rows_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(tui_app, terminal_size=(100, 40), run_before=before)
