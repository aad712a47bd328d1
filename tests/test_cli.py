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
    (["--lr", "abc"], "--lr: expected a number, got 'abc'"),
    (["--dim-mults", "1,2,4,8,16,32,64"], "not divisible by 2^(len(dim_mults)-1) = 64"),
    (["--data", "/nonexistent/pcam"], "/nonexistent/pcam: data path does not exist"),
    (["--classes", "cancerous", "--conditional"], "--conditional needs --classes both"),
    (["--frobnicate", "1"], "--frobnicate"),
    (["--lr", "inf"], "--lr: must be a finite number, got inf"),
    (["--weight-decay", "nan"], "--weight-decay: must be a finite number, got nan"),
    (["--grad-clip", "nan"], "--grad-clip: must be a finite number, got nan"),
    (["--epochs", "nan"], "--epochs: must be a finite number, got nan"),
    (["--epochs", "inf"], "--epochs: must be a finite number, got inf"),
    (["--epochs", "1e300"], "--epochs 1e+300: "),
    (["--seed", "-1"], "--seed: must be in 0..4294967295, got -1"),
    (["--seed", str(2**40)], f"--seed: must be in 0..4294967295, got {2**40}"),
    (["--max-steps", "1e20"], "--max-steps: 100000000000000000000 is too large"),
    (["--max-steps", str(10**20)], "--max-steps: 100000000000000000000 is too large"),
    (["--timesteps", "1e9"], "--timesteps: 1000000000 is too many"),
    (["--timesteps", "1000000000"], "--timesteps: 1000000000 is too many (at most 100000)"),
    (["--batch-size", "100000000"], "training (--dim 16, --dim-mults 1,2, --res-blocks 1, --batch-size 100000000"),
    (["--dim", "1000000"], "--dim: 1000000 is too large (at most 1024 channels)"),
    (["--res-blocks", "100000"], "--res-blocks: 100000 is too large (at most 16 blocks per level)"),
    (["--dim", "1024", "--dim-mults", "1,2,4,8", "--res-blocks", "16", "--batch-size", "4096"],
     "available (lower --batch-size, --dim, --dim-mults or --res-blocks)"),
    (["--device", "cuda"], "--device cuda: no CUDA device is available"),
    (["--tag", "  "], "--tag: empty tag '  '"),
    (["--attention", "full", "--dim", "56", "--dim-mults", "1,3"], None),  # heads that divide 168 are chosen
]


@pytest.mark.parametrize("args,message", BAD_TRAIN)
def test_bad_train_input_is_one_line_exit_2_and_stores_nothing(workdir, cli, pcam, args, message):
    if args[:2] == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is available here")
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "1", *args)
    if message is None:
        assert r.code == 0, r
        return
    assert r.code == 2, r
    assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
    if message == "--frobnicate":
        assert "No such option" in r.err
    assert not (workdir / "runs.db").exists() and not (workdir / "runs").exists()


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
    assert r.code == 2 and "key 'max_steps': expected a whole number, got 'many'" in r.err


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
    grid_path = workdir / "runs" / "1" / "samples" / "step-00000012.png"
    grid = iio.imread(grid_path)
    assert grid.shape[0] > 96 and grid.std() > 1
    gif = workdir / "runs" / "1" / "samples" / "reverse-step-00000012.gif"
    frames = iio.imread(gif, index=None)
    assert len(frames) > 20 and frames.shape[2] > 2 * grid.shape[1], "x_t and the predicted x_0 side by side"
    assert f"samples: {grid_path};" in r.err and f"reverse process (x_t | predicted x_0): {gif}" in r.err


def test_config_that_is_a_directory_is_one_line(workdir, cli, pcam):
    r = cli("train", "--config", workdir, "--data", pcam)
    assert r.code == 2 and "is a directory, not a TOML config file" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (workdir / "runs.db").exists()


BAD_SAMPLE = [
    (["--eta", "nan"], "--eta: must be a number in [0, 1], got nan"),
    (["--steps", "51"], "--steps 51: more than run 1's 50 diffusion steps"),
    (["--n", "1e8"], "'1e8' is not a valid integer"),
    (["--n", "100000000"], "sampling 100000000 images at --scale 3 needs about"),
    (["--scale", "100000"], "at --scale 100000 needs about"),
    (["--scale", "-1"], "--scale: must not be negative"),
    (["--out", "."], "--out .: is a directory"),
    (["--out", "afile/x.png"], "afile is a file, not a directory"),
    (["--seed", "-3"], "--seed: must be in 0..4294967295"),
    (["--guidance", "inf"], "--guidance: must be a finite number >= 0"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished run (T=50) that the sampling tests share; they only read it."""
    import os

    root = tmp_path_factory.mktemp("trained")
    write_pcam(root / "pcam")
    from ddpm_tui.cli import main

    cwd = os.getcwd()
    os.chdir(root)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--data", str(root / "pcam"), *TINY, "--max-steps", "2"])
        assert exit_info.value.code == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("args,message", BAD_SAMPLE)
def test_bad_sample_input_is_one_line_exit_2(trained, cli, monkeypatch, args, message):
    monkeypatch.chdir(trained)
    (trained / "afile").write_text("x")
    out = [] if "--out" in args else ["--out", "s.png"]
    before = len(queries.artifacts(Store("sqlite:///runs.db"), 1))
    r = cli("sample", "1", *out, *args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r
    assert len(queries.artifacts(Store("sqlite:///runs.db"), 1)) == before


def test_ddpm_samples_the_full_chain_by_default_and_says_which_chain(trained, cli, monkeypatch):
    monkeypatch.chdir(trained)
    r = cli("sample", "1", "--n", "2", "--sampler", "ddpm", "--out", "d.png")
    assert r.code == 0 and "ddpm: the full chain of 50 steps" in r.err, r
    r = cli("sample", "1", "--n", "2", "--sampler", "ddpm", "--steps", "10", "--out", "d.png")
    assert r.code == 0 and "ddpm: respaced to 10 of 50 steps" in r.err, r
    r = cli("sample", "1", "--n", "2", "--out", "d.png")
    assert r.code == 0 and "ddim: 50 of 50 steps, eta 0" in r.err, r


def test_blank_tags_and_notes_are_refused(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    for args, message in ((["runs", "tag", "1", " "], "tag: empty tag ' '"), (["runs", "tag", "1", ""], "empty tag"),
                          (["runs", "note", "1", "  \n "], "note: empty text")):
        r = cli(*args)
        assert r.code == 2 and message in r.err, r
    assert queries.run_tags(Store("sqlite:///runs.db")) == {}


def test_runs_list_and_show_neutralise_escape_sequences(workdir, cli, pcam):
    hostile = "evil\x1b]8;;http://x.example\x07link\x1b]8;;\x07\x1b[31mred\x9b2J"
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1", "--name", hostile).code == 0
    assert cli("runs", "note", "1", "see \x1b[2Jcleared").code == 0
    for args in (["runs", "list"], ["runs", "show", "1"]):
        r = cli(*args)
        assert r.code == 0 and "\x1b" not in r.out and "\x07" not in r.out and "\x9b" not in r.out, args
        assert "evil\\x1b]8;;http://x.example" in r.out
    assert "evil\\x1b]8;;http://x.example\\x07link" in cli("runs", "show", "1").out
    assert "see \\x1b[2Jcleared" in cli("runs", "show", "1").out
    assert json.loads(cli("runs", "show", "1", "--json").out)["name"] == hostile, "JSON keeps the data exact"


def test_help_shows_defaults_without_a_markup_escape(cli):
    result = cli("eval", "--help")
    assert result.code == 0
    assert "[default: nll]" in result.out and "\\[" not in result.out


def test_the_terminal_probe_starts_early_only_for_arguments_that_open_the_tui():
    from ddpm_tui.entry import opens_tui

    for args in ([], ["--db", "sqlite:///x.db"], ["--db=sqlite:///x.db"], ["--runs-dir", "r", "--db", "u"]):
        assert opens_tui(args), args
    for args in (["runs", "list"], ["--db"], ["--help"], ["--db", "u", "train"], ["demo"]):
        assert not opens_tui(args), args
