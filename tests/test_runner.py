"""Detached runs, reconciliation, stop/kill/resume/rm, the queue worker and sweeps — with real
processes and signals."""

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, poll_until as wait_for
from core.runner.processes import pid_alive
from core.runner.worker import claim_next
from core.store import Store
from core.store import queries
from core.train import checkpoint as ckpt


def listed(cli, **filters):
    r = cli("runs", "list", "--json", *[a for k, v in filters.items() for a in (f"--{k}", v)])
    assert r.code == 0, r
    return {run["id"]: run for run in json.loads(r.out)}


@pytest.fixture
def store(workdir, store_url, monkeypatch):
    """The store every command of the test uses: SQLite in the working directory, then PostgreSQL."""
    monkeypatch.setenv("DDPM_TUI_DB", store_url)
    return Store(store_url)


def launch(cli, pcam, *extra):
    r = cli("launch", "--data", pcam, *TINY, *extra)
    assert r.code == 0, r
    assert r.out.strip().isdigit(), "launch prints the run id alone on stdout"
    return int(r.out)


def test_launch_crash_resume_stop(workdir, cli, pcam, store):
    run_id = launch(cli, pcam, "--max-steps", "100000", "--ckpt-every", "5")
    run = queries.get_run(store, run_id)
    assert run.status == "running" and pid_alive(run.pid) and os.getpgid(run.pid) == run.pid != os.getpgid(0)
    wait_for(lambda: ckpt.list_checkpoints(workdir / "runs" / str(run_id) / "checkpoints"))

    os.kill(run.pid, signal.SIGKILL)
    started = time.time()
    wait_for(lambda: listed(cli)[run_id]["status"] == "crashed", timeout=30)
    assert time.time() - started < 30
    assert "is gone" in listed(cli)[run_id]["exit_reason"]

    r = cli("runs", "resume", run_id)
    assert r.code == 0 and r.out.strip() == str(run_id), r
    resumed = queries.get_run(store, run_id)
    assert resumed.status == "running" and resumed.pid != run.pid
    step_before = wait_for(lambda: queries.get_run(store, run_id).step)
    wait_for(lambda: queries.get_run(store, run_id).step > step_before + 5)

    r = cli("runs", "stop", run_id, "--wait", "60")
    assert r.code == 0, r
    final = queries.get_run(store, run_id)
    assert final.status == "stopped" and final.exit_reason.startswith("stopped at step")
    last = ckpt.load_latest_good(workdir / "runs" / str(run_id) / "checkpoints")
    assert last[1]["step"] == final.step
    events = [e.status for e in queries.status_events(store, run_id)]
    assert events == ["running", "crashed", "running", "stopped"]

    r = cli("runs", "stop", run_id)
    assert r.code == 2 and f"run {run_id} is not running (status stopped)" in r.err
    r = cli("runs", "show", run_id, "--json")
    assert json.loads(r.out)["events"][1]["status"] == "crashed"


def test_kill_escalates_to_sigkill_after_grace(workdir, cli, pcam, store):
    run_id = launch(cli, pcam, "--max-steps", "100000")
    pid = queries.get_run(store, run_id).pid
    wait_for(lambda: queries.get_run(store, run_id).step > 0)
    # a process that ignores SIGTERM: stop it so only SIGKILL can end it
    os.kill(pid, signal.SIGSTOP)
    r = cli("runs", "kill", run_id, "--grace", "1")
    assert r.code == 0, r
    assert not pid_alive(pid)
    run = queries.get_run(store, run_id)
    assert run.status == "killed" and "SIGKILL" in run.exit_reason


@pytest.mark.slow
def test_worker_runs_queued_runs_one_at_a_time(workdir, cli, pcam, store):
    ids = [launch(cli, pcam, "--max-steps", "3", "--queue") for _ in range(3)]
    assert all(listed(cli)[i]["status"] == "queued" for i in ids)
    r = cli("worker", "--slots", "1", "--until-empty", "--poll", "0.2")
    assert r.code == 0, r
    runs = [queries.get_run(store, i) for i in ids]
    assert [r.status for r in runs] == ["finished"] * 3
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.ended_at <= later.started_at, "one slot: runs must not overlap"


def test_worker_stops_on_sigterm_leaving_unstarted_runs_queued(workdir, cli, pcam, store):
    ids = [launch(cli, pcam, "--max-steps", "100000", "--queue") for _ in range(2)]
    env = dict(os.environ)
    worker = subprocess.Popen([sys.executable, "-m", "ddpm_tui", "worker", "--slots", "1", "--poll", "0.2"],
                              cwd=workdir, env=env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: queries.get_run(store, ids[0]).status == "running" and queries.get_run(store, ids[0]).pid)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.stderr.read()
    assert queries.get_run(store, ids[1]).status == "queued"
    # the started run is a detached run of its own: it keeps going after the worker left
    assert queries.get_run(store, ids[0]).status == "running"
    assert cli("runs", "stop", ids[0], "--wait", "60").code == 0


def _claimer(url, out):
    store = Store(url)
    got = []
    while (run_id := claim_next(store, f"w{os.getpid()}")) is not None:
        got.append(run_id)
    out.put(got)


def test_two_workers_never_claim_the_same_run(store_url):
    url = store_url
    store = Store(url)
    ids = [queries.create_run(store, {}, status="queued").id for _ in range(40)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    flat = [i for got in claimed for i in got]
    assert sorted(flat) == ids and len(set(flat)) == len(flat)


def test_ablate_queues_the_grid_under_one_sweep(workdir, cli, pcam, store):
    r = cli("ablate", "--data", pcam, *TINY, "--schedule", "linear,cosine", "--attention", "none,full",
            "--seeds", "2", "--max-steps", "2", "--sweep-name", "sched-attn")
    assert r.code == 0, r
    sweep_id = int(r.out)
    runs = listed(cli, sweep=str(sweep_id))
    assert len(runs) == 8 and {r["status"] for r in runs.values()} == {"queued"}
    configs = [queries.get_run(store, i).config for i in runs]
    combos = {(c["schedule"], c["attention"], c["seed"]) for c in configs}
    assert combos == {(s, a, seed) for s in ("linear", "cosine") for a in ("none", "full") for seed in (0, 1)}
    assert all(c["max_steps"] == 2 for c in configs)
    r = cli("ablate", "--data", pcam, "--schedule", "linear,exp")
    assert r.code == 2 and "--schedule: unknown value 'exp'" in r.err
    assert len(listed(cli)) == 8


def test_an_interrupt_half_way_through_queueing_a_sweep_stores_nothing(workdir, cli, pcam, store, monkeypatch):
    from core.runner import lifecycle

    made = []

    def interrupted_on_the_third(plan, run_id):
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append(real_make_run_dir(plan, run_id))
        return made[-1]

    real_make_run_dir = lifecycle.make_run_dir
    monkeypatch.setattr(lifecycle, "make_run_dir", interrupted_on_the_third)
    r = cli("ablate", "--data", pcam, *TINY, "--seeds", "4", "--max-steps", "2")
    assert r.code == 130, r
    assert len(made) == 2 and not any(path.exists() for path in made)
    assert queries.list_sweeps(store) == [] and listed(cli) == {}
    assert list((workdir / "runs").iterdir()) == []


def test_a_grid_past_the_limit_needs_yes_large(workdir, cli, pcam, store, monkeypatch):
    monkeypatch.setattr("core.runner.sweeps.MAX_SWEEP_RUNS", 4)
    r = cli("ablate", "--data", pcam, *TINY, "--schedule", "linear,cosine", "--seeds", "3", "--max-steps", "2")
    assert r.code == 2 and "the grid is 6 (2 configurations x --seeds 3), more than 4" in r.err, r
    assert listed(cli) == {}
    r = cli("ablate", "--data", pcam, *TINY, "--schedule", "linear,cosine", "--seeds", "3", "--max-steps", "2",
            "--yes-large")
    assert r.code == 0, r
    assert len(listed(cli)) == 6


def test_bad_run_commands_are_one_line_exit_2(workdir, cli, pcam, store):
    for args in (["runs", "stop", "42"], ["runs", "kill", "42"], ["runs", "resume", "42"], ["runs", "show", "42"],
                 ["runs", "rm", "42", "--yes"], ["runs", "note", "42", "hi"]):
        r = cli(*args)
        assert r.code == 2 and "no run with id 42" in r.err and len(r.err.strip().splitlines()) == 1, (args, r)
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    r = cli("runs", "resume", "1")
    assert r.code == 2 and "run 1 is finished" in r.err
    r = cli("runs", "list", "--status", "sleeping")
    assert r.code == 2 and "unknown status 'sleeping'" in r.err


def test_tag_note_export_and_rm(workdir, cli, pcam, store, tmp_path):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "2").code == 0
    assert cli("runs", "tag", "1", "baseline", "cosine").out.split() == ["baseline", "cosine"]
    assert cli("runs", "tag", "1", "cosine", "--remove").out.split() == ["baseline"]
    assert cli("runs", "note", "1", "looks fine").code == 0
    shown = json.loads(cli("runs", "show", "1", "--json").out)
    assert shown["notes"][0]["text"] == "looks fine" and shown["tags"] == ["baseline"]
    exported = json.loads(cli("export", "--format", "json").out)
    assert exported[0]["id"] == 1 and exported[0]["config"]["dim"] == 16
    assert exported[0]["tags"] == ["baseline"] and exported[0]["notes"] == ["looks fine"]
    assert exported[0]["created_at"].endswith("+00:00") and "val_loss" in exported[0] and "sweep_id" in exported[0]
    csv_out = cli("export", "--format", "csv").out.splitlines()
    assert csv_out[0].startswith("id,name,status") and ",tags,notes," in csv_out[0] and len(csv_out) == 2
    assert "baseline,looks fine" in csv_out[1]
    r = cli("export", "--of-sweep", "7")
    assert r.code == 2 and "7" in r.err
    run_dir = workdir / "runs" / "1"
    assert run_dir.is_dir()
    r = cli("runs", "rm", "1", "--yes")
    assert r.code == 0 and not run_dir.exists() and listed(cli) == {}
    # rm given another --runs-dir than the run's: the run's own directory goes with its records
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1", "--runs-dir", tmp_path / "elsewhere").code == 0
    assert cli("runs", "rm", "2", "--yes", "--runs-dir", tmp_path / "third").code == 0, "ids are not reused"
    assert not (tmp_path / "elsewhere" / "2").exists() and listed(cli) == {}


def test_read_only_and_corrupt_databases(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    ro = f"sqlite:///file:{workdir / 'runs.db'}?mode=ro&uri=true"
    r = cli("--db", ro, "runs", "tag", "1", "x")
    assert r.code == 2 and "read-only" in r.err and len(r.err.strip().splitlines()) == 1, r
    assert queries.run_tags(Store("sqlite:///runs.db")) == {}
    assert json.loads(cli("--db", ro, "runs", "list", "--json").out)[0]["id"] == 1
    (workdir / "bad.db").write_bytes(b"garbage" * 100)
    r = cli("--db", "sqlite:///bad.db", "runs", "list")
    assert r.code == 2 and "not an SQLite database" in r.err
    assert (workdir / "bad.db").read_bytes() == b"garbage" * 100


@pytest.mark.slow
@pytest.mark.timeout(600)  # four cold starts of a trainer: minutes on a loaded 2-core machine
def test_chaos_random_sigkills_then_resume_reach_the_end(workdir, cli, pcam, store):
    total = 120
    run_id = launch(cli, pcam, "--max-steps", total, "--ckpt-every", "7")
    rng = random.Random(5)
    for _ in range(4):
        # a kill a random number of steps on (not after a fixed time, which a loaded machine spends starting up)
        target = queries.get_run(store, run_id).step + rng.randint(1, 25)
        run = wait_for(lambda: (lambda r: r if r.step >= target or r.status != "running" else None)(
            queries.get_run(store, run_id)), timeout=120, what=f"step {target}")
        if run.status != "running":
            break
        os.killpg(run.pgid, signal.SIGKILL)
        wait_for(lambda: listed(cli)[run_id]["status"] == "crashed", timeout=30)
        assert cli("runs", "resume", run_id).code == 0
    wait_for(lambda: listed(cli)[run_id]["status"] == "finished", timeout=240, every=0.5)
    path, state = ckpt.load_latest_good(workdir / "runs" / str(run_id) / "checkpoints")
    assert state["step"] == total
    steps, values, _ = queries.metric_series(store, run_id, "train/loss", max_points=10**6)
    assert steps == list(range(1, total + 1))
    assert queries.summaries(store)[run_id]["train/loss"]["count"] == total
    crashes = [e for e in queries.status_events(store, run_id) if e.status == "crashed"]
    assert len(crashes) >= 2


CHECKPOINT_WRITER = """
import sys, torch
from core.train.checkpoint import save_atomic, checkpoint_path, prune
from pathlib import Path
d = Path(sys.argv[1])
state = {"model": {"w": torch.randn(2_000_000)}, "step": 0}
for step in range(1, 10_000):
    state["step"] = step
    save_atomic(state, checkpoint_path(d, step))
    prune(d, 2)
"""


def test_kill_during_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path):
    d = tmp_path / "ckpts"
    rng = random.Random(1)
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", CHECKPOINT_WRITER, str(d)], env=dict(os.environ))
        wait_for(lambda: len(ckpt.list_checkpoints(d)) >= 1, timeout=60, every=0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        found = ckpt.load_latest_good(d)
        assert found is not None
        for path in ckpt.list_checkpoints(d):
            assert ckpt.load(path)["model"]["w"].numel() == 2_000_000
