"""Local processes: start a run detached from the terminal, tell whether a pid is still alive and
still the process a run recorded (a pid is reused once its process ends: its start time tells them
apart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.errors import BadInput
from core.loaded_run import LoadedRun


def pid_alive(pid: int | None) -> bool:
    """True while `pid` is a live process (a zombie left for its parent to reap counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


PROC = Path("/proc")


def process_start_time(pid: int | None) -> float | None:
    """When process `pid` started, in seconds since the epoch (boot time plus /proc/PID/stat's field
    22, in clock ticks); None when it cannot be read: no such process, or no /proc (not Linux)."""
    if not pid:
        return None
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22; fields[0] is field 3
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def same_process(pid: int | None, started: float | None) -> bool:
    """True while `pid` is alive and is the process that started at `started` (its recorded start
    time), not a later one given the same number. Without a recorded start time, or where start
    times cannot be read, a live pid is taken as the same process."""
    if not pid_alive(pid):
        return False
    now_started = process_start_time(pid) if started is not None else None
    return now_started is None or abs(now_started - started) < 1 / os.sysconf("SC_CLK_TCK")


def run_command(run_id: int, nproc: int = 1, nnodes: int = 1, rdzv_endpoint: str | None = None) -> list[str]:
    """The command a run executes (core's own entry point; the store's URL goes in the environment):
    one process, or `nproc` per node under torchrun, which rendezvous on this machine alone
    (standalone) or, over several nodes, at `rdzv_endpoint` (c10d, host:port of any one node)."""
    entry = ["-m", "core.runner.execute", str(run_id)]
    if nproc * nnodes == 1:
        return [sys.executable, *entry]
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and not rdzv_endpoint:
        return [*torchrun, "--standalone", *entry]
    return [*torchrun, f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id=ddpm-tui-run-{run_id}", *entry]


def trainer_command(run, rdzv_endpoint: str | None = None) -> list[str]:
    """The command that trains `run` on this machine: one process, or torchrun for several."""
    cfg = LoadedRun.of(run).cfg
    return run_command(run.id, cfg.nproc, cfg.nnodes, rendezvous_endpoint(run, rdzv_endpoint))


def rendezvous_endpoint(run, given: str | None = None) -> str | None:
    """Where the torchrun agents of a run over several nodes meet: the HOST:PORT given now, else the
    one the run was started with (so a resume meets where the first start did). BadInput when a
    multi-node run has neither."""
    if LoadedRun.of(run).cfg.nnodes == 1:
        return given
    stored = (run.executor_spec or {}).get("rdzv_endpoint")
    if not (given or stored):
        raise BadInput(f"run {run.id} trains on several nodes and has no rendezvous endpoint stored: continue it "
                       f"with `ddpm-tui train --resume {run.id} --rdzv-endpoint HOST:PORT`")
    return given or stored


def spawn_detached(command: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start `command` in its own session (so a terminal hang-up never reaches it), stdin closed,
    stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=env, cwd=cwd,
        )


def signal_group(pgid: int | None, pid: int | None, sig: int) -> bool:
    """Send `sig` to the process group (or the pid when no group is known); False if none was there."""
    try:
        if pgid:
            os.killpg(pgid, sig)
        elif pid:
            os.kill(pid, sig)
        else:
            return False
        return True
    except ProcessLookupError:
        return False


def thread_env(threads: int) -> dict:
    """Environment limiting a child's CPU threads (several runs sharing cores must not oversubscribe)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


SIGTERM, SIGKILL = signal.SIGTERM, signal.SIGKILL
