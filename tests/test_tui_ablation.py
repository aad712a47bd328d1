"""Pilot tests of the ablation screen: build and queue a grid, watch the sweep by configuration."""

import pytest
from conftest import open_view, wait_for
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from core.services.views import RunView
from core.errors import BadInput
from core.runner.ownership import running_fields
from core.runner.sweeps import group_runs, parse_option_list
from core.store import queries
from ddpm_tui.tui.screens.ablation import AblationScreen, grid_values
from ddpm_tui.tui.screens.dialogs import ConfirmDialog


async def open_ablation(pilot) -> AblationScreen:
    return await open_view(pilot, "3", AblationScreen)


def set_inputs(screen, **values) -> None:
    for key, value in values.items():
        screen.query_one(f"#abl-{key}", Input).value = value


def test_other_options_and_grid_values():
    assert parse_option_list("lr=1e-4,2e-4; --image-size=32;") == {"lr": "1e-4,2e-4", "image_size": "32"}
    assert parse_option_list("dim_mults=1,2,4 | 1,2,4,8") == {"dim_mults": "1,2,4;1,2,4,8"}
    for bad in ("lr", "colour=red", "lr=1;lr=2", "name=x", "lr="):
        with pytest.raises(BadInput):
            parse_option_list(bad)
    raw, axes = grid_values({"dim": 32, "name": "demo"}, "/d", "linear,cosine", "none", "lr=1e-4,2e-4; seed=5")
    assert raw == {"dim": "32", "data": "/d", "schedule": "linear,cosine", "attention": "none",
                   "lr": "1e-4,2e-4", "seed": "5"}
    assert axes == ["lr", "schedule"]
    with pytest.raises(BadInput):
        grid_values({}, "/d", "linear", "none", "schedule=cosine")


def test_group_runs_counts_and_means():
    def rec(i, sched, status, step, loss, best):
        return RunView.of(dict(id=i, name="", status=status, step=step, total_steps=100, loss=loss, smooth_loss=loss,
                               best=best, val_loss=None, img_per_s=None, created_at=0.0, started_at=None,
                               ended_at=None, heartbeat_at=None, host=None, pid=None, exit_reason=None, sweep_id=1,
                               parent_id=None, executor="local", external_id=None, global_batch=64, run_dir=None,
                               checkpoint_path=None, tags=[],
                               config={"schedule": sched, "seed": i}))

    rows = group_runs([rec(1, "linear", "finished", 100, 0.2, 0.1), rec(2, "linear", "running", 50, 0.4, 0.3),
                       rec(3, "cosine", "queued", 0, None, None), rec(4, "cosine", "crashed", 10, 0.5, 0.5)],
                      ["schedule"])
    assert [r["values"] for r in rows] == [{"schedule": "linear"}, {"schedule": "cosine"}]
    lin, cos = rows
    assert (lin["runs"], lin["finished"], lin["running"], lin["queued"], lin["other"]) == (2, 1, 1, 0, 0)
    assert lin["progress"] == pytest.approx(0.75) and lin["loss"] == pytest.approx(0.3) and lin["best"] == 0.1
    assert (cos["queued"], cos["other"], cos["loss"]) == (1, 1, 0.5)


@pytest.mark.asyncio
async def test_queue_a_grid_and_watch_it_by_configuration(tui_app, tmp_path):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_ablation(pilot)
        set_inputs(screen, schedule="linear,cosine", attention="none,full", seeds="2",
                   data=str(tmp_path / "pcam"), other="max_steps=20; dim=32", name="abl")
        preview = screen.query_one("#abl-preview", Static)
        await wait_for(pilot, lambda: "4 configuration(s) x 2 seed(s) = 8 runs" in str(preview.render()),
                       what="the grid's preview")
        await pilot.press("ctrl+l")
        await pilot.app.workers.wait_for_complete()
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), what="the worker question")
        await pilot.press("n")  # no worker: nothing trains in this test
        store = pilot.app.lab.store
        sweeps = queries.list_sweeps(store)
        assert len(sweeps) == 1 and sweeps[0].name == "abl"
        runs = queries.list_runs(store, sweep_id=sweeps[0].id)
        assert len(runs) == 8 and {r.status for r in runs} == {"queued"}
        assert all(r.pid is None for r in runs)
        combos = {(r.config["schedule"], r.config["attention"]) for r in runs}
        assert combos == {(s, a) for s in ("linear", "cosine") for a in ("none", "full")}
        assert sorted(r.config["seed"] for r in runs) == [0, 0, 0, 0, 1, 1, 1, 1]
        assert {r.config["max_steps"] for r in runs} == {20} and {r.config["dim"] for r in runs} == {32}
        assert sweeps[0].spec["axes"] == ["attention", "schedule"]

        # the sweep view: 4 configurations of 2 queued runs each
        screen = pilot.app.screen
        assert screen.query_one("#abl-tabs", TabbedContent).active == "tab-sweeps"
        table = screen.query_one("#sweep-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4, what="4 configurations")
        assert screen.query_one("#sweep-select", Select).value == sweeps[0].id
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[:2] == ["attention", "schedule"] and labels[-1] == "loss~ n.c."
        for row in rows:
            assert row[2] == "2" and row[5] == "2"  # runs, queued
        assert {(r[0], r[1]) for r in rows} == {(a, s) for s in ("linear", "cosine") for a in ("none", "full")}
        summary = str(screen.query_one("#sweep-summary", Static).render())
        assert "8 runs" in summary and "4 configuration(s)" in summary and "no evaluations yet" in summary

        # progress and loss update on the next refresh
        first = runs[0]
        queries.set_status(store, first.id, "running", reason="test", **running_fields())  # owned by this process
        queries.update_run(store, first.id, step=10)
        queries.insert_metrics(store, first.id, [("train/loss_smooth", 10, 0.5, 1.0)])
        await wait_for(pilot, lambda: any(str(table.get_row_at(i)[4]) == "1" for i in range(table.row_count)),
                       timeout=6, what="a running run counted")
        row = next([str(c) for c in table.get_row_at(i)] for i in range(4) if str(table.get_row_at(i)[4]) == "1")
        assert row[7] == "25%" and row[8] == "0.5000"

        # evaluations land while the view is open: a metric column appears, best configuration first
        nll = {("none", "linear"): [3.0, 3.1], ("none", "cosine"): [3.05, 3.12], ("full", "linear"): [5.0, 5.2],
               ("full", "cosine"): [6.0, 6.1]}
        seen: dict = {}
        for r in sorted(runs, key=lambda r: r.id):
            key = (r.config["attention"], r.config["schedule"])
            value = nll[key][seen.setdefault(key, 0)]
            seen[key] += 1
            queries.add_evaluation(store, r.id, "nll", value, value - 0.1, value + 0.1, 64, "test", 0,
                                   {"per_image": [value] * 4})
        await wait_for(pilot, lambda: any("NLL b/d" in str(c.label) for c in table.columns.values()), timeout=10,
                       what="the NLL column")
        await wait_for(pilot, lambda: table.row_count == 4, what="4 configurations")
        labels = [str(c.label) for c in table.columns.values()]
        assert "NLL b/d [95% CI] ↑" in labels
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(4)]
        assert (rows[0][0], rows[0][1]) == ("none", "linear") and rows[0][-1].endswith(" =")
        assert (rows[1][0], rows[1][1]) == ("none", "cosine") and rows[1][-1].endswith(" =")  # tied with the best
        assert not rows[3][-1].endswith("=") and (rows[3][0], rows[3][1]) == ("full", "cosine")
        summary = str(screen.query_one("#sweep-summary", Static).render())
        assert "sorted by nll (lower is better, best first" in summary and "Holm" in summary
        queries.queue_eval_job(store, runs[0].id, "kid", 64)
        queries.set_eval_job(store, queries.eval_jobs(store)[0].id, status="failed", reason="no classifier")
        await wait_for(pilot, lambda: "evaluations 1 failed (E retries" in str(
            screen.query_one("#sweep-summary", Static).render()), timeout=10, what="the failed evaluation")
        await pilot.press("O")
        await wait_for(pilot, lambda: str(table.get_row_at(0)[1]) == "cosine" and str(table.get_row_at(0)[0]) == "full",
                       what="the reversed order")
        await pilot.press("o")
        await wait_for(pilot, lambda: "NOT comparable" in str(screen.query_one("#sweep-summary", Static).render()),
                       what="the other sort's warning")
        table.focus()
        await pilot.press("enter")  # a configuration's runs side by side; Esc comes back to the sweep
        await wait_for(pilot, lambda: pilot.app.current_mode == "compare", what="the compare view")
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.current_mode == "ablation", what="the ablation view")
        await pilot.press("escape")
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_bad_grid_values_are_shown_and_nothing_is_queued(tui_app, tmp_path):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_ablation(pilot)
        set_inputs(screen, schedule="linear,wobbly", data=str(tmp_path / "pcam"))
        preview = screen.query_one("#abl-preview", Static)
        await wait_for(pilot, lambda: "--schedule: unknown value 'wobbly'" in str(preview.render()), what="the problem")
        await pilot.press("ctrl+l")
        set_inputs(screen, schedule="linear,cosine", data=str(tmp_path / "nowhere"))
        await wait_for(pilot, lambda: "wobbly" not in str(preview.render()), what="the preview of the new values")
        await pilot.press("ctrl+l")
        await pilot.app.workers.wait_for_complete()
        await wait_for(pilot, lambda: any(n.severity == "error" for n in pilot.app._notifications),
                       what="the error notification")
        assert pilot.app.is_running
        assert queries.list_sweeps(pilot.app.lab.store) == []
        assert len(queries.list_runs(pilot.app.lab.store)) == 3
        assert any(n.severity == "error" for n in pilot.app._notifications)


@pytest.mark.asyncio
async def test_ablation_fits_a_small_terminal(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        screen = await open_ablation(pilot)
        assert screen.query_one("#abl-queue").region.height >= 1 or screen.query_one("#abl-grid").max_scroll_y > 0
        await pilot.press("ctrl+g")
        assert screen.query_one("#abl-tabs", TabbedContent).active == "tab-sweeps"
        await wait_for(pilot, lambda: "no sweep yet" in str(screen.query_one("#sweep-summary", Static).render()),
                       what="the empty sweep summary")


@pytest.mark.asyncio
async def test_a_huge_grid_is_refused_before_anything_is_built(tui_app, tmp_path):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        screen = await open_ablation(pilot)
        set_inputs(screen, seeds="100000", data=str(tmp_path / "pcam"))
        preview = screen.query_one("#abl-preview", Static)
        await wait_for(pilot, lambda: "400000 runs: more than 1000" in str(preview.render()), what="the refusal")
        await pilot.press("ctrl+l")
        await pilot.app.workers.wait_for_complete()
        assert queries.list_sweeps(pilot.app.lab.store) == []
