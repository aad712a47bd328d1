"""Pilot tests of the runs table, the run detail screen and the actions on runs."""

import pytest
from textual.widgets import DataTable, Input, Log, Static

from conftest import seed_store, wait_for, wait_screen
from core.store import queries
from ddpm_tui.tui.screens.detail import RunDetailScreen
from ddpm_tui.tui.screens.dialogs import ConfirmDialog, TextPrompt
from ddpm_tui.tui.screens.help import HelpScreen


async def wait_rows(pilot, n, timeout=10.0):
    table = pilot.app.screen.query_one("#runs-table", DataTable)
    await wait_for(pilot, lambda: table.row_count == n, timeout=timeout, what=f"{n} rows in the runs table")
    return table


def cell_texts(table):
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.asyncio
async def test_runs_table_lists_sorts_and_filters(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        table = await wait_rows(pilot, 3)
        rows = cell_texts(table)
        assert [r[1] for r in rows] == ["seed-1", "seed-2", "seed-3"]
        assert rows[0][3] == "finished" and rows[0][8] == "100/100"
        await pilot.press("o")  # sort by name, then reverse
        await pilot.press("O")
        assert [r[1] for r in cell_texts(table)] == ["seed-3", "seed-2", "seed-1"]
        await pilot.press("slash")
        await pilot.press(*"linear")
        await wait_for(pilot, lambda: [r[1] for r in cell_texts(table)] == ["seed-2"], what="the filtered rows",
                       timeout=10)
        await pilot.press("escape")
        await wait_rows(pilot, 3)
        assert "hidden" in pilot.app.screen.query_one("#runs-filter", Input).classes


@pytest.mark.asyncio
async def test_select_several_and_tag_them(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await wait_rows(pilot, 3)
        await pilot.press("space", "space")
        assert pilot.app.screen.selected == {1, 2}
        await pilot.press("t")
        await wait_screen(pilot, TextPrompt)
        await pilot.press(*"keep", "enter")
        store = pilot.app.lab.store
        await wait_for(pilot, lambda: queries.run_tags(store) == {1: ["keep"], 2: ["keep"]})


@pytest.mark.asyncio
async def test_delete_asks_first_and_then_deletes(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await wait_rows(pilot, 3)
        await pilot.press("x")
        await wait_screen(pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ConfirmDialog), what="the dialog to close")
        await pilot.app.workers.wait_for_complete()  # whatever "no" might have started has ended
        assert len(queries.list_runs(pilot.app.lab.store)) == 3
        await pilot.press("x")
        await wait_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        store = pilot.app.lab.store
        await wait_for(pilot, lambda: [r.id for r in queries.list_runs(store)] == [2, 3])
        await wait_rows(pilot, 2)


@pytest.mark.asyncio
async def test_run_detail_shows_chart_log_config_history(tui_app):
    async with tui_app.run_test(size=(120, 36)) as pilot:
        await wait_rows(pilot, 3)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        assert screen.run_id == 1
        await wait_for(pilot, lambda: screen.record is not None and screen.query_one(Log).line_count >= 2,
                       what="the run and its log", timeout=10)
        assert "seed-1" in str(screen.query_one("#detail-status", Static).render())
        assert screen.query_one(Log).lines[:2] == ["run 1 line 1", "run 1 line 2"]
        assert screen.query_one("#detail-samples").path.name == "step-00000100.png"
        assert "schedule = cosine" in str(screen.query_one("#detail-config", Static).render())
        assert screen.query_one("#detail-history", DataTable).row_count == 1
        await pilot.press("m")  # next metric
        assert screen.metric == "train/loss_smooth"
        await pilot.press("l", "x", "g")
        assert (screen.log_y, screen.wall_x, screen.smooth) == (True, True, False)
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, RunDetailScreen)


@pytest.mark.asyncio
async def test_help_lists_the_screen_keys(tui_app):
    async with tui_app.run_test(size=(100, 40)) as pilot:
        await wait_rows(pilot, 3)
        await pilot.press("question_mark")
        await wait_screen(pilot, HelpScreen)
        text = str(pilot.app.screen.query_one("#help-text", Static).render())
        for words in ("Filter", "Stop", "Kill", "Resume", "Delete", "Quit"):
            assert words in text
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, HelpScreen)


@pytest.mark.asyncio
async def test_app_survives_a_broken_database_and_resizes(tmp_path):
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    (tmp_path / "runs.db").write_bytes(b"not a database" * 50)
    app = DdpmApp(Lab(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "runs"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: any("not an SQLite database" in str(n.message) for n in app._notifications),
                       what="the notification", timeout=10)
        assert app.is_running
        await pilot.resize_terminal(60, 20)
        await pilot.resize_terminal(140, 50)
        await wait_for(pilot, lambda: app.screen.size == (140, 50), what="the resize", timeout=10)
        assert app.is_running
    assert (tmp_path / "runs.db").read_bytes() == b"not a database" * 50


@pytest.mark.asyncio
async def test_detail_of_a_run_whose_directory_vanished(tui_app, tmp_path):
    import shutil

    async with tui_app.run_test(size=(120, 36)) as pilot:
        await wait_rows(pilot, 3)
        shutil.rmtree(tmp_path / "runs" / "1")
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        log = screen.query_one(Log)
        await wait_for(pilot, lambda: log.line_count and "no log yet" in log.lines[0], what="'no log yet'", timeout=10)
        assert pilot.app.is_running


async def wait_status(pilot, run_id, status, timeout=90.0):
    store = pilot.app.lab.store
    await wait_for(pilot, lambda: queries.get_run(store, run_id).status == status, timeout=timeout,
                   what=f"run {run_id} {status}")


@pytest.mark.slow
async def test_stop_resume_kill_a_real_run_from_the_table(tmp_path):
    from conftest import TINY, write_pcam
    from core.config import build_config
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    pcam = write_pcam(tmp_path / "pcam")
    lab = Lab(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "runs")
    flags = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    cfg = build_config({**flags, "data": str(pcam), "max_steps": 100000, "ckpt_every": 5,
                        **{k: int(v) for k, v in flags.items() if v.isdigit()}})
    run_id = lab.launch(cfg).id
    app = DdpmApp(lab)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_rows(pilot, 1)
        await wait_for(pilot, lambda: queries.get_run(lab.store, run_id).step >= 3, timeout=90)
        await pilot.press("s")
        await wait_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_status(pilot, run_id, "stopped")
        await pilot.press("r")
        await wait_status(pilot, run_id, "running")
        step = queries.get_run(lab.store, run_id).step
        await wait_for(pilot, lambda: queries.get_run(lab.store, run_id).step > step, timeout=90)
        await pilot.press("ctrl+k")
        await wait_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_status(pilot, run_id, "killed")
        table = pilot.app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: str(table.get_row_at(0)[3]) == "killed", what="'killed' in the table", timeout=10)
    events = [e.status for e in queries.status_events(lab.store, run_id)]
    assert events == ["running", "stopped", "running", "killed"]


@pytest.mark.slow
async def test_demo_flow_opens_on_a_running_run_whose_chart_moves(tmp_path, monkeypatch):
    """What `ddpm-tui demo` does: queue the demo run, start a detached worker, open the app on it."""
    from core.config import DEMO_PRESET, TrainConfig
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    monkeypatch.setenv("DDPM_TUI_CACHE", str(tmp_path / "cache"))
    lab = Lab(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "runs")
    run_id = lab.launch(TrainConfig(**dict(DEMO_PRESET, max_steps=400)).validate(), queue=True).id
    lab.start_worker()
    app = DdpmApp(lab, open_run_id=run_id)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await wait_screen(pilot, RunDetailScreen)
            await wait_for(pilot, lambda: screen.record is not None and screen.record.status == "running",
                           timeout=120, what="the demo run running")
            chart = screen.query_one("#detail-chart")
            await wait_for(pilot, lambda: screen.record.step >= 20, timeout=180, what="step 20")
            first = screen.record.step
            await wait_for(pilot, lambda: screen.record.step >= first + 20, timeout=180, what="20 more steps")
            steps, values, _ = lab.series(run_id, "train/loss")
            assert len(steps) >= first + 20 and values[-1] < values[0]
            await wait_for(pilot, lambda: chart.drawn.get("train/loss", 0) >= first + 20, timeout=10, what="the chart")
    finally:
        lab.stop(run_id)


@pytest.mark.asyncio
async def test_a_cluster_runs_page_shows_the_log_its_executor_keeps(tmp_path):
    """A SLURM run whose trainer's log is only in the job's output (no train.log where this host looks)."""
    from core.services.lab import Lab
    from core.store import Store
    from ddpm_tui.tui.app import DdpmApp

    url, runs_dir = seed_store(tmp_path, n_runs=1)
    store = Store(url)
    run_dir = runs_dir / "1"
    (run_dir / "train.log").unlink()
    (run_dir / "slurm").mkdir()
    (run_dir / "slurm" / "4242_0_log.out").write_text("starting run 1\nstep 40/100 loss 0.2500 90.0 img/s eta 1s\n")
    queries.update_run(store, 1, executor="slurm", external_id="slurm:4242")
    app = DdpmApp(Lab(url, runs_dir))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_rows(pilot, 1)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        await wait_for(pilot, lambda: screen.query_one(Log).line_count >= 2, what="the job's log")
        assert screen.query_one(Log).lines[:2] == ["starting run 1", "step 40/100 loss 0.2500 90.0 img/s eta 1s"]
        assert "[slurm slurm:4242, global batch 64]" in str(screen.query_one("#detail-status", Static).render())


@pytest.mark.asyncio
async def test_a_run_past_its_last_step_says_it_is_writing_samples_not_eta_zero(tui_app):
    from core.runner.ownership import running_fields

    store = tui_app.lab.store
    queries.set_status(store, 2, "running", reason="test", **running_fields())  # owned by this process
    queries.update_run(store, 2, step=100)  # its last step done: the final grid is being written
    queries.insert_metrics(store, 2, [("img_per_s", 100, 50.0, 1100.0)])
    async with tui_app.run_test(size=(120, 36)) as pilot:
        table = await wait_rows(pilot, 3)
        await wait_for(pilot, lambda: cell_texts(table)[1][11] == "writing samples", what="the ETA cell")
        await pilot.press("down", "enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        status = screen.query_one("#detail-status", Static)
        await wait_for(pilot, lambda: "writing samples" in str(status.render()), what="the run page's status")
        assert "ETA" not in str(status.render())


@pytest.mark.asyncio
async def test_a_store_that_goes_away_puts_a_banner_on_every_view_until_it_answers(tui_app, monkeypatch):
    from textual.widgets import Header

    lab = tui_app.lab
    real_runs = lab.runs
    async with tui_app.run_test(size=(100, 30)) as pilot:
        await wait_rows(pilot, 3)
        header = pilot.app.screen.query_one(Header)
        calm = header.styles.background

        def unreachable():
            raise ConnectionError("server closed the connection unexpectedly")

        monkeypatch.setattr(lab, "runs", unreachable)
        await wait_for(pilot, lambda: tui_app.has_class("-store-down"), what="the banner")
        assert "STORE UNREACHABLE since" in tui_app.sub_title and "server closed the connection" in tui_app.sub_title
        await wait_for(pilot, lambda: header.styles.background != calm, what="the header's warning colour")
        alarm = header.styles.background
        await pilot.press("2")  # another view carries it too: it is the app's
        await wait_for(pilot, lambda: "STORE UNREACHABLE" in pilot.app.screen.query_one(Header).screen_sub_title,
                       what="the banner on the launch view", timeout=10)
        monkeypatch.setattr(lab, "runs", real_runs)
        await wait_for(pilot, lambda: not tui_app.has_class("-store-down"), what="the banner to go")
        # the toast is a message the app handles after the banner goes
        await wait_for(pilot, lambda: any("answers again" in str(n.message) for n in tui_app._notifications),
                       what="the 'answers again' toast", timeout=10)
        assert tui_app.sub_title == "" and any("answers again" in str(n.message) for n in tui_app._notifications)
        await pilot.press("1")
        await wait_for(pilot, lambda: pilot.app.screen.query_one(Header).styles.background != alarm,
                       what="the header's warning colour to go", timeout=10)
