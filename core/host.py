"""This machine's CPU and memory, and a process's share of them, read from Linux's /proc (None
where there is no /proc): what the TUI's machine view shows beside the GPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class CpuTimes:
    busy: float  # seconds of all cores: everything but idle and iowait
    total: float


def cpu_times() -> CpuTimes | None:
    """The first line of /proc/stat in seconds."""
    try:
        ticks = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return CpuTimes((sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz)


def cpu_percent(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """Busy share of all cores between two readings, in percent."""
    if before is None or after is None or after.total <= before.total:
        return None
    return 100.0 * (after.busy - before.busy) / (after.total - before.total)


def memory() -> tuple[int, int] | None:
    """(used, total) bytes of RAM; used = total - MemAvailable."""
    try:
        fields = dict(line.split(":", 1) for line in (PROC / "meminfo").read_text().splitlines() if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    return total - available, total


def process_times(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, its children not included."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def process_rss(pid: int) -> int | None:
    """Resident memory of a process in bytes."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None
