"""The command line from a user's side: data, train, sample, and one-line errors with exit code 2."""

import json
import shutil

import imageio.v3 as iio
import pytest

from conftest import TINY, write_pcam
from core.store import Store
from core.store import queries


def run_count(workdir):
    if not (workdir / "runs.db").exists():
        return 0
    return len(queries.list_runs(Store("sqlite:///runs.db")))


def test_data_demo_and_check_json(workdir, cli):
    r = cli("data", "demo", workdir / "demo")
    assert r.code == 0, r
    r = cli("data", "check", workdir / "demo", "--json")
    assert r.code == 0, r
    report = json.loads(r.out)
    assert report["layout"] == "pcam" and report["splits"]["train"]["n"] == 1039


def test_data_check_bad_dataset_exits_2(workdir, cli, pcam):
    (pcam / "camelyonpatch_level_2_split_test_x.h5").write_bytes(b"junk")
    r = cli("data", "check", pcam)
    assert r.code == 2 and "not a readable HDF5 file" in r.err


def test_train_then_sample_png_and_gif(workdir, cli, pcam):
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "6", "--ckpt-every", "3", "--sample-every", "3",
            "--eval-every", "3", "--name", "tiny", "--tag", "smoke")
    assert r.code == 0, r
    assert "run 1 finished at step 6/6" in r.err
    run = queries.get_run(Store("sqlite:///runs.db"), 1)
    assert run.status == "finished" and run.name == "tiny" and run.config["dim"] == 16
    store = Store("sqlite:///runs.db")
    assert queries.metric_series(store, 1, "train/loss")[0] == [1, 2, 3, 4, 5, 6]
    assert queries.metric_series(store, 1, "val/loss")[0] == [3, 6]
    assert len(queries.artifacts(store, 1, "samples")) == 2
    assert queries.run_tags(store)[1] == ["smoke"]

    r = cli("sample", "1", "--n", "4", "--sampler", "ddpm", "--steps", "10", "--out", workdir / "g.png",
            "--gif", workdir / "r.gif", "--seed", "1")
    assert r.code == 0, r
    grid = iio.imread(workdir / "g.png")
    assert grid.shape == (2 + 2 * (96 + 2), 2 + 2 * (96 + 2), 3)
    frames = iio.imread(workdir / "r.gif", index=None)
    assert frames.shape[0] > 5
    r2 = cli("sample", "1", "--n", "4", "--sampler", "ddim", "--steps", "5", "--out", workdir / "h.png")
    assert r2.code == 0, r2

    r = cli("train", "--resume", "1")
    assert r.code == 2 and "run 1 is finished" in r.err


def test_conditional_run_samples_a_class_with_guidance(workdir, cli, pcam):
    r = cli("train", "--data", pcam, *TINY, "--conditional", "--max-steps", "2")
    assert r.code == 0, r
    r = cli("sample", "1", "--n", "2", "--steps", "3", "--class", "cancerous", "--guidance", "2",
            "--out", workdir / "c.png")
    assert r.code == 0, r
    r = cli("sample", "1", "--n", "2", "--steps", "3", "--class", "tumour", "--out", workdir / "c.png")
    assert r.code == 2 and "--class: unknown class 'tumour'" in r.err


BAD_TRAIN = [
    (["--schedule", "exp"], "--schedule: unknown value 'exp'"),
    (["--attention", "sparse"], "--attention: unknown value 'sparse'"),
    (["--objective", "score"], "--objective: unknown value"),
    (["--lr", "-1"], "--lr: must be positive"),
    (["--batch-size", "0"], "--batch-size: must be positive"),
    (["--lr", "abc"], "Invalid value for '--lr'"),
    (["--dim-mults", "1,2,4,8,16,32,64"], "not divisible by 2^(len(dim_mults)-1) = 64"),
    (["--data", "/nonexistent/pcam"], "/nonexistent/pcam: data path does not exist"),
    (["--classes", "cancerous", "--conditional"], "--conditional needs --classes both"),
    (["--frobnicate", "1"], "--frobnicate"),
]


@pytest.mark.parametrize("args,message", BAD_TRAIN)
def test_bad_train_input_is_one_line_exit_2_and_stores_nothing(workdir, cli, pcam, args, message):
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "1", *args)
    assert r.code == 2, r
    assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
    if message == "--frobnicate":
        assert "No such option" in r.err
    assert run_count(workdir) == 0 and not (workdir / "runs").exists()


def test_bad_h5_and_empty_class_exit_2(workdir, cli, tmp_path):
    import h5py
    import numpy as np

    root = write_pcam(tmp_path / "p", {"train": 4})
    with h5py.File(root / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((4, 1, 1, 1), np.uint8))
    r = cli("train", "--data", root, *TINY, "--classes", "cancerous")
    assert r.code == 2 and "no patches of class 'cancerous'" in r.err
    with h5py.File(root / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((3, 1, 1, 1), np.uint8))
    r = cli("train", "--data", root, *TINY)
    assert r.code == 2 and "4 images but camelyonpatch_level_2_split_train_y.h5 has 3 labels" in r.err
    assert run_count(workdir) == 0


def test_bad_config_toml_exit_2(workdir, cli, pcam):
    (workdir / "c.toml").write_text("learning_rate = 1e-4\n")
    r = cli("train", "--config", workdir / "c.toml", "--data", pcam)
    assert r.code == 2 and "c.toml: unknown key 'learning_rate'" in r.err
    (workdir / "c.toml").write_text('max_steps = "many"\n')
    r = cli("train", "--config", workdir / "c.toml", "--data", pcam)
    assert r.code == 2 and "key 'max_steps' must be int" in r.err


def test_corrupt_and_foreign_checkpoints(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "4", "--ckpt-every", "2").code == 0
    assert cli("train", "--data", pcam, *TINY, "--dim", "24", "--max-steps", "2").code == 0
    ckpts = sorted((workdir / "runs" / "1" / "checkpoints").iterdir())
    # a newer corrupt checkpoint is skipped in favour of the last good one
    (ckpts[-1].parent / "ckpt-00000009.pt").write_bytes(b"\x00garbage")
    assert cli("sample", "1", "--n", "1", "--steps", "2", "--out", workdir / "a.png").code == 0
    # all corrupt: a clear error
    for p in (workdir / "runs" / "1" / "checkpoints").iterdir():
        p.write_bytes(b"\x00garbage")
    r = cli("sample", "1", "--n", "1", "--steps", "2", "--out", workdir / "a.png")
    assert r.code == 2 and "no loadable checkpoint" in r.err
    # a checkpoint from another architecture
    other = next((workdir / "runs" / "2" / "checkpoints").iterdir())
    shutil.copy(other, workdir / "runs" / "1" / "checkpoints" / "ckpt-00000010.pt")
    r = cli("sample", "1", "--n", "1", "--steps", "2", "--out", workdir / "a.png")
    assert r.code == 2 and "checkpoint of another architecture: dim=24 (run has 16)" in r.err


def test_unknown_run_and_bad_sample_options(workdir, cli):
    r = cli("sample", "7", "--out", workdir / "a.png")
    assert r.code == 2 and "no run with id 7" in r.err
    r = cli("sample", "x", "--out", workdir / "a.png")
    assert r.code == 2 and "run id must be a number" in r.err


def test_demo_without_a_terminal_trains_and_samples(workdir, cli):
    r = cli("demo", "--no-tui", "--steps", "12")
    assert r.code == 0, r
    run = queries.get_run(Store("sqlite:///runs.db"), 1)
    assert run.status == "finished" and run.step == 12 and run.config["data"] == "demo"
    assert (workdir / "cache" / "demo-pcam" / "README.txt").exists()
    grid = iio.imread(workdir / "runs" / "1" / "demo-samples.png")
    assert grid.shape[0] > 96 and grid.std() > 1
    assert (workdir / "runs" / "1" / "demo-samples.gif").exists()
