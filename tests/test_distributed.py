"""Data-parallel training under torchrun on the CPU (gloo): N ranks of batch B take the steps of one
process of batch N*B, each rank streams its own share of the data, and a SIGKILLed run resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ddpm_subprocess, poll_until, wait_for_checkpoint
from core.config import TrainConfig
from core.data import PatchStream, open_split, selected_indices
from core.errors import BadInput
from core.runner.run_lock import trainer_holding
from core.store import Store
from core.store import queries

# dropout draws a mask per image of each rank's own batch, so it alone cannot match across splits
OPTS = ["--dim", "16", "--dim-mults", "1,2", "--res-blocks", "1", "--attention", "full", "--timesteps", "100",
        "--warmup-steps", "3", "--device", "cpu", "--dropout", "0", "--seed", "5"]


def last_checkpoint(run_dir):
    return torch.load(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)


def rank_pid(cache: Path, rank: int) -> int:
    """The pid of training rank `rank` among the processes started with DDPM_TUI_CACHE=`cache`."""
    wanted = {f"RANK={rank}".encode(), f"DDPM_TUI_CACHE={cache}".encode()}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                return int(entry.name)
        except OSError:  # gone meanwhile, or not ours
            continue
    raise AssertionError(f"no rank {rank} running")


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def assert_same_weights(a, b, atol=1e-6):
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.allclose(a[part][key], b[part][key], rtol=0, atol=atol), f"{part}.{key} differs"


def test_rank_streams_split_each_global_batch_into_disjoint_shares(pcam):
    source = open_split(pcam, "train")
    indices = selected_indices(source, "both")
    whole = PatchStream(source, indices, 8, seed=1, block_size=16, window_blocks=2)
    ranks = [PatchStream(source, indices, 4, seed=1, block_size=16, window_blocks=2, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(20):  # 160 patches: past two epochs of 64 and across window boundaries
        images, labels, codes = whole.next_batch()
        shares = [stream.next_batch() for stream in ranks]
        assert np.array_equal(np.concatenate([s[0] for s in shares]), images)
        assert np.array_equal(np.concatenate([s[1] for s in shares]), labels)
        assert np.array_equal(np.concatenate([s[2] for s in shares]), codes)
        assert whole.position == ranks[0].position == ranks[1].position
    assert len(ranks[0]._window) + len(ranks[1]._window) == len(whole._window)
    for stream in (whole, *ranks):
        stream.close()
    source.close()


def test_a_trainer_refuses_another_number_of_processes_than_its_run_has(tmp_path, pcam):
    from core.train.trainer import Trainer

    with pytest.raises(BadInput, match="trained by 2 process"):
        Trainer(TrainConfig(nproc=2, device="cpu", dim=16, dim_mults="1,2"), tmp_path, pcam)


@pytest.mark.slow
def test_two_ranks_of_batch_b_reach_the_weights_of_one_process_of_batch_2b(tmp_path, pcam, workdir, cli):
    common = ["--data", pcam, *OPTS, "--conditional", "--max-steps", 8, "--ckpt-every", 8]
    assert cli("train", *common, "--batch-size", 8).code == 0
    r = cli("train", *common, "--batch-size", 4, "--nproc", 2)
    assert r.code == 0, r
    assert "2 processes x batch 4 = global batch 8" in r.err

    one, two = last_checkpoint(workdir / "runs" / "1"), last_checkpoint(workdir / "runs" / "2")
    assert one["step"] == two["step"] == 8 and one["data_position"] == two["data_position"] == 64
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert_same_weights(one, two)
    store = Store(f"sqlite:///{workdir / 'runs.db'}")
    np.testing.assert_allclose(queries.metric_series(store, 2, "train/loss")[1],
                               queries.metric_series(store, 1, "train/loss")[1], rtol=1e-5)
    run = queries.get_run(store, 2)
    assert run.executor == "torchrun" and run.status == "finished"
    assert (run.config["batch_size"], run.config["nproc"]) == (4, 2)


@pytest.mark.slow
def test_a_sigkilled_two_rank_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, pcam):
    n, k = 30, 10
    common = ["--data", pcam, *OPTS, "--max-steps", n, "--ckpt-every", k, "--keep-ckpts", 10]
    straight = ddpm_subprocess(["train", *common, "--batch-size", 8], tmp_path)
    assert straight.wait(timeout=240) == 0, straight.stderr.read()

    victim = ddpm_subprocess(["train", *common, "--batch-size", 4, "--nproc", 2], tmp_path, start_new_session=True)
    wait_for_checkpoint(victim, tmp_path / "runs" / "2" / "checkpoints" / f"ckpt-{k:08d}.pt")
    rank1 = rank_pid(tmp_path / "cache", 1)
    agent = parent_pid(rank1)
    os.killpg(victim.pid, signal.SIGKILL)  # the CLI and torchrun; each rank has a session of its own
    victim.wait()
    # the worst order: rank 1 ends first, breaking rank 0's next all-reduce before rank 0 sees the
    # agent gone by itself; rank 0 must end as the agent did, not record the run failed
    try:
        while parent_pid(rank1) == agent:
            time.sleep(0.001)
        os.kill(rank1, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass  # rank 1 saw its agent gone and ended first by itself: the same order
    deadline = time.time() + 30
    while trainer_holding(tmp_path / "runs" / "2") is not None:  # the orphaned ranks end themselves
        assert time.time() < deadline, "the ranks outlived their torchrun agent"
        time.sleep(0.1)
    killed_at = {p.name for p in (tmp_path / "runs" / "2" / "checkpoints").glob("ckpt-*.pt")}
    assert f"ckpt-{n:08d}.pt" not in killed_at, "the kill came too late to test anything"
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    assert queries.get_run(store, 2).status == "running"  # nobody said goodbye: resume finds out

    resumed = ddpm_subprocess(["train", "--resume", 2], tmp_path)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()
    one, two = last_checkpoint(tmp_path / "runs" / "1"), last_checkpoint(tmp_path / "runs" / "2")
    assert two["step"] == n and two["world_size"] == 2
    assert_same_weights(one, two, atol=1e-5)
    assert queries.metric_series(store, 2, "train/loss")[0] == list(range(1, n + 1))
    assert [e.status for e in queries.status_events(store, 2)] == ["running", "crashed", "running", "finished"]


def test_placement_mistakes_are_one_line_and_store_nothing(workdir, cli, pcam):
    for args, message in (
        (["--nproc", "0"], "--nproc: must be positive, got 0"),
        (["--nnodes", "2"], "--nnodes 2: several nodes need --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "--rdzv-endpoint: expected HOST:PORT, got 'nohost'"),
    ):
        r = cli("train", "--data", pcam, *OPTS, *args)
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r
    assert not (workdir / "runs.db").exists()


def test_more_processes_than_visible_gpus_is_refused(monkeypatch):
    from core.runner import run

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(run, "usable_cpus", lambda: 2)  # the CPU line holds on a machine of one usable core too
    with pytest.raises(BadInput, match=r"--nproc 2: only 1 GPU\(s\) are visible"):
        run.check_placement(TrainConfig(nproc=2), torch.device("cuda"))
    run.check_placement(TrainConfig(nproc=2), torch.device("cpu"))  # gloo ranks share the CPU


def test_more_processes_than_cpu_cores_is_refused_on_cpu(monkeypatch):
    from core.runner import run

    monkeypatch.setattr(run, "usable_cpus", lambda: 2)
    with pytest.raises(BadInput, match=r"--nproc 3: only 2 CPU core\(s\) are usable here"):
        run.check_placement(TrainConfig(nproc=3), torch.device("cpu"))
    run.check_placement(TrainConfig(nproc=2), torch.device("cpu"))


def test_a_rank_whose_agent_died_before_it_watched_still_ends():
    """The rank noted its agent at start; by the time it watches, it has a new parent (here: the
    test), which must not be taken for the agent."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    rank = subprocess.Popen([sys.executable, "-c", "import time; from core.train.distributed import exit_with_agent; "
                             f"exit_with_agent(poll_s=0.05, agent_pid={gone.pid}); time.sleep(60)"],
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        assert rank.wait(timeout=30) == 1
    finally:
        if rank.poll() is None:
            os.killpg(rank.pid, signal.SIGKILL)
            rank.wait()


def test_deterministic_runs_switch_torch_to_deterministic_kernels(workdir, cli, pcam):
    from conftest import TINY

    assert not torch.are_deterministic_algorithms_enabled()
    try:
        r = cli("train", "--data", pcam, *TINY, "--max-steps", 2, "--deterministic")
        assert r.code == 0, r
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert json.loads(cli("runs", "show", 1, "--json").out)["config"]["deterministic"] is True
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_worker_gpu_groups_give_each_slot_its_devices():
    from core.runner.worker import Worker, parse_gpu_groups

    assert parse_gpu_groups("0,1,2,3") == ["0", "1", "2", "3"]
    assert parse_gpu_groups("0,1;2,3") == ["0,1", "2,3"]
    assert parse_gpu_groups(" 0 , 1 ; 2,3 ") == ["0,1", "2,3"]
    assert parse_gpu_groups(None) == []
    worker = Worker(store=None, slots=2, gpus=parse_gpu_groups("0,1;2,3"))
    assert [worker.slot_env(slot)["CUDA_VISIBLE_DEVICES"] for slot in (0, 1)] == ["0,1", "2,3"]


def test_a_rank_without_its_gpu_is_refused(monkeypatch):
    from core.train.distributed import Replicas

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BadInput, match="rank 1 needs GPU 1 of this node, which sees only 1"):
        Replicas(rank=1, local_rank=1, world_size=2).device(torch.device("cuda"))


@pytest.mark.slow
def test_two_nodes_by_hand_train_one_run_as_the_readme_says(tmp_path, pcam):
    """Two 'nodes' on this machine: `train --nnodes 2 --rdzv-endpoint` on the first, and on the
    other the torchrun command the first one prints."""
    from conftest import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    first = ddpm_subprocess(["train", "--data", pcam, *OPTS, "--batch-size", 4, "--max-steps", 6, "--ckpt-every", 6,
                             "--nnodes", 2, "--rdzv-endpoint", endpoint], tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    printed = ""
    while "waiting for 1 more node(s)" not in printed:
        line = first.stderr.readline()
        assert line, f"the first node ended early: {printed}"
        printed += line
    command = printed.split("runs directory: ", 1)[1].strip()
    assert command.startswith(f"DDPM_TUI_DB='sqlite:///{tmp_path / 'runs.db'}' python -m torch.distributed.run")
    env_part, python_part = command.split(" python ", 1)
    env = dict(os.environ, DDPM_TUI_DB=env_part.split("=", 1)[1].strip("'"), PYTHONPATH=str(Path(__file__).parents[1]))
    second = subprocess.run([sys.executable, *python_part.split()], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]
    assert first.wait(timeout=240) == 0, first.stderr.read()
    run = queries.get_run(store, 1)
    assert (run.status, run.step, run.config["nnodes"]) == ("finished", 6, 2)
    assert last_checkpoint(tmp_path / "runs" / "1")["world_size"] == 2

    # trained further (a resume): this node meets the other one where the first start did
    extend = subprocess.run([sys.executable, "-m", "ddpm_tui", "runs", "extend", "1", "--steps", "2"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert extend.returncode == 0, extend.stderr
    second = subprocess.run([sys.executable, *python_part.split()], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]
    run = poll_until(lambda: (lambda r: r if r.status != "running" else None)(queries.get_run(store, 1)), timeout=120)
    assert (run.status, run.step) == ("finished", 8), run.exit_reason


def test_a_multi_node_run_without_a_stored_endpoint_is_not_resumed_half_way(tmp_path, cli, monkeypatch):
    from core.runner.processes import trainer_command

    monkeypatch.chdir(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    config = TrainConfig(nnodes=2, nproc=1).to_dict()
    (tmp_path / "r1").mkdir()
    old = queries.create_run(store, config, status="stopped", executor="torchrun", run_dir=str(tmp_path / "r1"))
    r = cli("runs", "resume", old.id, "--restart")
    assert r.code == 2 and f"train --resume {old.id} --rdzv-endpoint HOST:PORT" in r.err, r
    assert queries.get_run(store, old.id).status == "stopped"
    queries.update_run(store, old.id, executor_spec={"rdzv_endpoint": "node-a.cluster:29511"})
    assert "--rdzv-endpoint=node-a.cluster:29511" in trainer_command(queries.get_run(store, old.id))
