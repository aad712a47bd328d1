"""Pilot tests of the compare view: overlaid loss curves and the config diff."""

import pytest
from textual.widgets import DataTable, Static

from conftest import wait_for, wait_screen
from ddpm_tui.tui.screens.compare import MISSING, CompareScreen, config_diff
from ddpm_tui.tui.widgets.loss_chart import LossChart


def test_config_diff_keeps_only_differing_keys():
    a = {"schedule": "cosine", "dim": 64, "tag": [], "lr": 1e-3}
    b = {"schedule": "linear", "dim": 64, "tag": [], "lr": 1e-3, "new": 1}
    assert config_diff([a, b]) == [("schedule", ["cosine", "linear"]), ("new", [MISSING, 1])]
    assert config_diff([a, dict(a)]) == []


def chart_text(chart: LossChart) -> str:
    """What the chart draws, as plain text (legend included)."""
    from rich.text import Text

    return Text.from_ansi(chart.plt.build()).plain


@pytest.mark.asyncio
async def test_compare_overlays_runs_and_diffs_configs(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table", DataTable).row_count == 3,
                       what="runs")
        await pilot.press("space", "space", "space", "c")  # select runs 1-3, compare
        screen = pilot.app.screen
        assert isinstance(screen, CompareScreen) and screen.run_ids == [1, 2, 3]
        await wait_for(pilot, lambda: screen.loaded, what="compare data")
        assert list(screen.series) == ["1 seed-1", "2 seed-2", "3 seed-3"]
        assert all(len(xs) == 100 for xs, _ in screen.series.values())
        drawn = chart_text(screen.query_one(LossChart))
        assert all(label in drawn for label in ("1 seed-1", "2 seed-2", "3 seed-3"))
        # only the keys that differ: seed runs differ in schedule, attention and name
        assert [k for k, _ in screen.diff] == ["schedule", "attention", "name"]
        table = screen.query_one("#compare-diff", DataTable)
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert labels == ["status", "step", "loss~", "best", "schedule", "attention", "name"]
        assert [str(c) for c in table.get_row_at(4)] == ["schedule", "cosine", "linear", "cosine"]
        assert "seed-1" in str(screen.query_one("#compare-status", Static).render())
        from ddpm_tui.tui.widgets.sample_view import SampleView
        await wait_for(pilot, lambda: [v.path.name if v.path else None for v in screen.query(SampleView)]
                       == ["step-00000100.png"] * 3, what="the three runs' sample grids side by side")
        captions = [str(v.query_one("#sample-caption").render()) for v in screen.query(SampleView)]
        assert captions == [f"{n} seed-{n}: step-00000100.png" for n in (1, 2, 3)]  # whose grid each is
        await pilot.press("m")  # next metric
        assert screen.metric == "train/loss_smooth"
        await wait_for(pilot, lambda: screen.loaded and list(screen.series) and
                       screen.series["1 seed-1"][1][0] == pytest.approx(1.2 / 2), what="second metric")
        await pilot.press("l", "g")
        assert (screen.log_y, screen.smooth) == (True, False)
        await pilot.press("right", "right", "enter")  # enter on a run's column opens it
        from ddpm_tui.tui.screens.detail import RunDetailScreen
        assert isinstance(pilot.app.screen, RunDetailScreen) and pilot.app.screen.run_id == 2
        await pilot.press("escape")
        assert pilot.app.screen is screen
        await pilot.press("escape")
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_compare_with_fewer_than_two_runs_says_how(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        screen = pilot.app.screen
        assert isinstance(screen, CompareScreen)
        hint = screen.query_one("#compare-empty", Static)
        await wait_for(pilot, lambda: hint.display and "press c" in str(hint.render()), what="the how-to hint")
        assert "space" in str(hint.render())
        assert not screen.query_one("#compare-chart").display
        await pilot.press("1")
        await pilot.press("space", "c")  # one run only: the runs screen refuses
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_compare_survives_a_run_deleted_meanwhile(tui_app):
    from core.store import queries

    async with tui_app.run_test(size=(100, 30)) as pilot:
        queries.delete_run(pilot.app.lab.store, 2)
        pilot.app.open_compare([1, 2, 3])
        screen = await wait_screen(pilot, CompareScreen)
        await wait_for(pilot, lambda: screen.loaded, what="compare data")
        assert screen.missing == [2] and list(screen.series) == ["1 seed-1", "3 seed-3"]
        assert "gone: 2" in str(screen.query_one("#compare-status", Static).render())


# ---- the GPU view (mode 6) lives here too: no GPU on the test machines, NVML is faked ------------------
import os  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

from ddpm_tui.tui import nvml  # noqa: E402
from ddpm_tui.tui.screens import gpus as gpu_screen  # noqa: E402


def fake_pynvml(count: int = 2, fail_init: bool = False) -> types.ModuleType:
    """Just enough of pynvml for the GPU view."""
    nv = types.ModuleType("pynvml")
    nv.NVML_TEMPERATURE_GPU = 0
    nv.calls = []

    def init():
        nv.calls.append("init")
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")
    nv.nvmlDeviceGetCount = lambda: count
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + 50 * h, memory=10)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(20 + h) * 2**30, total=80 * 2**30)
    nv.nvmlDeviceGetTemperature = lambda h, kind: 55
    nv.nvmlDeviceGetPowerUsage = lambda h: 250_000
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nv.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=4242)] if h == 0 else []
    return nv


def test_nvml_problem_names_why_there_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, as on a machine without the extra
    assert "not installed" in nvml.nvml_problem()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    assert nvml.nvml_problem() is not None
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=0))
    assert nvml.nvml_problem() is not None
    nv = fake_pynvml(count=1)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert nvml.nvml_problem() is None and nv.calls == ["init", "shutdown"]


@pytest.mark.asyncio
async def test_machine_view_on_a_cpu_box_shows_cpu_ram_and_explains_the_missing_gpu(tui_app, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    async with tui_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")  # exists on a CPU box too
        screen = await wait_screen(pilot, gpu_screen.GpuScreen)
        await wait_for(pilot, lambda: screen.problem is not None, what="NVML check")
        status = str(screen.query_one("#gpu-status", Static).render())
        assert status == "No NVIDIA GPU found (NVML unavailable): training runs on the CPU"
        assert not screen.query_one("#gpu-table").display
        host = screen.query_one("#host-table", DataTable)
        await wait_for(pilot, lambda: host.row_count >= 2, what="host rows")
        cpu, ram = ([str(c) for c in host.get_row_at(i)] for i in (0, 1))
        assert cpu[0] == "CPU" and f"{os.cpu_count()} cores" in cpu[2]
        assert ram[0] == "RAM" and "GiB of" in ram[2] and "%" in ram[1]
        await pilot.press("escape")
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_machine_view_shows_what_a_running_run_uses(tui_app, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(gpu_screen, "REFRESH_SECONDS", 0.2)
    monkeypatch.setattr("core.services.runs.reconcile", lambda store, *a, **k: None)
    from core.store import queries

    queries.update_run(tui_app.lab.store, 1, status="running", pid=os.getpid(), heartbeat_at=9e12)
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await pilot.press("6")
        screen = await wait_screen(pilot, gpu_screen.GpuScreen)
        host = screen.query_one("#host-table", DataTable)
        await wait_for(pilot, lambda: host.row_count == 3 and "core" in str(host.get_row_at(2)[1]),
                       what="the run's row with its CPU share")
        row = [str(c) for c in host.get_row_at(2)]
        assert row[0] == "run 1" and row[2].startswith(f"pid {os.getpid()}  RSS ") and row[2].endswith("GiB")


@pytest.mark.asyncio
async def test_gpu_view_shows_each_gpu_and_the_run_using_it(tui_app, monkeypatch):
    from core.store import queries

    nv = fake_pynvml(count=2)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.setattr(gpu_screen, "REFRESH_SECONDS", 0.2)
    queries.update_run(tui_app.lab.store, 1, status="running", pid=4242, heartbeat_at=9e12)
    monkeypatch.setattr("core.runner.liveness.reconcile", lambda store, *a, **k: None)
    monkeypatch.setattr("core.services.runs.reconcile", lambda store, *a, **k: None)
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: len(screen.gpus) == 2 and len(screen.history.get(0, ())) >= 2,
                       what="two readings")
        table = screen.query_one("#gpu-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][1] == "NVIDIA H100 80GB HBM3" and "40%" in rows[0][2] and "90%" in rows[1][2]
        assert rows[0][4] == "20.0/80.0 GiB" and rows[0][5] == "55 °C" and rows[0][6] == "250 W/700"
        assert rows[0][7] == "run 1" and rows[1][7] == "-"
        assert "2 GPUs" in str(screen.query_one("#gpu-status", Static).render())
    assert nv.calls[-1] == "shutdown"
