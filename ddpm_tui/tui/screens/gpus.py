"""The machine (`6`): CPU and RAM, and what each running run uses of them, then utilisation,
memory, temperature and power per GPU through NVML; refreshed every 2 s.

NVML comes from the optional dependency `gpu` (package nvidia-ml-py, module `pynvml`). Without it,
or without an NVIDIA driver, the GPU part says so in one line: training then runs on the CPU."""

from __future__ import annotations

import os
import time
from collections import deque

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Static

from core import host
from ddpm_tui.keys import bindings
from ddpm_tui.tui.nvml import NO_GPU, _nvml, nvml_problem, read_gpus
from ddpm_tui.tui.screens.base import AppScreen
from ddpm_tui.tui.widgets.keys_footer import KeysFooter
from ddpm_tui.tui.widgets.loss_chart import LossChart
from ddpm_tui.tui.widgets.plain import PlainTable

REFRESH_SECONDS = 2.0
HISTORY_POINTS = 150  # 5 minutes at one reading every 2 s
COLUMNS = ("gpu", "name", "util", "memory", "mem used", "temp", "power", "runs")
HOST_COLUMNS = ("what", "use", "detail")


def bar(percent: float | None, width: int = 10) -> Text:
    """A small horizontal bar with the percentage, coloured by load."""
    if percent is None:
        return Text("-")
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    style = "green" if percent < 50 else "yellow" if percent < 85 else "bold red"
    return Text.assemble((("█" * filled).ljust(width, "░"), style), f" {percent:3.0f}%")


def fmt_gib(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**30:.1f} GiB"


def fmt_mib(used: float | None, total: float | None) -> str:
    if used is None or total is None:
        return "-"
    return f"{used / 1024:.1f}/{total / 1024:.1f} GiB"


class GpuScreen(AppScreen):
    BINDINGS = bindings("gpus")

    def __init__(self):
        super().__init__()
        self.nv = None
        self.problem: str | None = None
        self.gpus: list[dict] = []
        self.history: dict[int, deque] = {}
        self.started = time.monotonic()
        self.cpu_before = host.cpu_times()
        self.run_cpu_before: dict[int, tuple[float, float]] = {}  # pid -> (monotonic time, CPU seconds)

    def compose(self) -> ComposeResult:
        yield Header()
        table = PlainTable(id="host-table", cursor_type="none")
        for column in HOST_COLUMNS:
            table.add_column(column, key=column)
        yield table
        yield Static("reading GPUs…", id="gpu-status")
        yield Static("", id="gpu-reason", classes="hidden")
        table = PlainTable(id="gpu-table", cursor_type="row", zebra_stripes=True)
        for column in COLUMNS:
            table.add_column(column, key=column)
        yield table
        yield LossChart(id="gpu-chart")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = "ddpm-tui — machine"
        self.refresh_gpus()
        self.set_interval(REFRESH_SECONDS, self.tick)

    def tick(self) -> None:
        if self.is_current:  # no NVML reads while another view is on screen
            self.refresh_gpus()

    def on_unmount(self) -> None:
        if self.nv is not None:
            try:
                self.nv.nvmlShutdown()
            except Exception:
                pass
            self.nv = None

    @work(thread=True, exclusive=True, group="gpu-refresh")
    def refresh_gpus(self) -> None:
        owners = self.run_owners()
        self.app.call_from_thread(self.show_host, self.read_host(owners))
        if self.problem is not None:
            return  # NVML will not appear while the app runs
        if self.nv is None:
            problem = nvml_problem()
            if problem is not None:
                self.app.call_from_thread(self.show_problem, problem)
                return
            self.nv = _nvml()
        try:
            gpus = read_gpus(self.nv)
        except Exception as exc:
            self.app.call_from_thread(self.show_problem, f"reading NVML failed: {exc}")
            return
        self.app.call_from_thread(self.apply, gpus, owners)

    def read_host(self, owners: dict[int, int]) -> list[list]:
        """Rows of the host table: CPU, RAM, then each running run's process on this machine."""
        now_cpu = host.cpu_times()
        cpu = host.cpu_percent(self.cpu_before, now_cpu)
        self.cpu_before = now_cpu
        load = "load " + " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else ""
        rows = [["CPU", bar(cpu), f"{os.cpu_count()} cores  {load}"]]
        ram = host.memory()
        rows.append(["RAM", bar(None if ram is None else 100 * ram[0] / ram[1]),
                     "-" if ram is None else f"{fmt_gib(ram[0])} of {fmt_gib(ram[1])}"])
        now = time.monotonic()
        for pid, run_id in sorted(owners.items(), key=lambda item: item[1]):
            seconds = host.process_times(pid)
            if seconds is None:
                continue  # on another host, or gone
            before = self.run_cpu_before.get(pid)
            self.run_cpu_before[pid] = (now, seconds)
            share = None if before is None or now <= before[0] else 100 * (seconds - before[1]) / (now - before[0])
            cores = "-" if share is None else f"{share:.0f}% of a core"
            rows.append([f"run {run_id}", cores, f"pid {pid}  RSS {fmt_gib(host.process_rss(pid))}"])
        return rows

    def show_host(self, rows: list[list]) -> None:
        table = self.query_one("#host-table", DataTable)
        table.clear()
        for row in rows:
            table.add_row(*row)

    def run_owners(self) -> dict[int, int]:
        """{pid: run id} of the store's running runs, to name the run behind a GPU process."""
        try:
            return {r.pid: r.id for r in self.app.lab.runs() if r.status == "running" and r.pid}
        except Exception:
            return {}

    def show_problem(self, problem: str) -> None:
        self.problem = problem
        self.query_one("#gpu-status", Static).update(Text(NO_GPU, style="bold"))
        reason = self.query_one("#gpu-reason", Static)
        reason.update(Text(problem, style="dim"))
        reason.remove_class("hidden")
        self.query_one("#gpu-table").add_class("hidden")
        self.query_one("#gpu-chart").add_class("hidden")

    def apply(self, gpus: list[dict], owners: dict[int, int]) -> None:
        self.gpus = gpus
        now = time.monotonic() - self.started
        table = self.query_one("#gpu-table", DataTable)
        if table.row_count != len(gpus):
            table.clear()
            for g in gpus:
                table.add_row(*[""] * len(COLUMNS), key=str(g["index"]))
        for g in gpus:
            runs = sorted({owners[p] for p in g["pids"] if p in owners})
            others = len([p for p in g["pids"] if p not in owners and p != os.getpid()])
            who = ", ".join(f"run {r}" for r in runs) + (f" +{others} other" if others else "")
            mem_pct = 100 * g["mem_used"] / g["mem_total"] if g["mem_total"] else None
            power = "-" if g["power"] is None else (
                f"{g['power']:.0f} W" + (f"/{g['power_limit']:.0f}" if g["power_limit"] else ""))
            cells = [str(g["index"]), g["name"], bar(g["util"]), bar(mem_pct), fmt_mib(g["mem_used"], g["mem_total"]),
                     "-" if g["temp"] is None else f"{g['temp']} °C", power, who or "-"]
            for column, cell in zip(COLUMNS, cells):
                table.update_cell(str(g["index"]), column, cell)
            points = self.history.setdefault(g["index"], deque(maxlen=HISTORY_POINTS))
            points.append((now, g["util"] if g["util"] is not None else 0))
        total_used = sum(g["mem_used"] or 0 for g in gpus) / 1024
        self.query_one("#gpu-status", Static).update(
            f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}  memory in use {total_used:.1f} GiB"
            f"  — refreshed every {REFRESH_SECONDS:.0f} s")
        series = {f"gpu {i}": ([t - now for t, _ in pts], [u for _, u in pts]) for i, pts in self.history.items()}
        self.query_one(LossChart).show(series, title="utilisation %", xlabel="seconds (0 = now)")

    def action_back(self) -> None:
        self.app.switch_mode("runs")
