"""A run's folder is named in one place (core.run_dir.RunDir) and a run is read with its config in
one call (core.loaded_run.load_run): what the trainer, the sampler and an evaluation write must be
where RunDir says, and what load_run refuses must say why."""

import dataclasses

import pytest

from conftest import TINY, write_kaggle
from core.errors import BadInput, NotFound
from core.loaded_run import load_run
from core.run_dir import RunDir
from core.store.db import Store

NAMED = [field for field, value in vars(RunDir).items() if isinstance(value, property)]


def named_paths(files: RunDir) -> set:
    return {getattr(files, name) for name in NAMED}


def test_everything_a_run_leaves_in_its_folder_is_named_by_run_dir(workdir, cli, tmp_path):
    data, _ = write_kaggle(tmp_path / "kaggle")  # a Kaggle folder: the run freezes its split.json
    assert cli("train", "--data", data, *TINY, "--max-steps", "4", "--ckpt-every", "2", "--sample-every", "2").code == 0
    assert cli("sample", "1", "--n", "4", "--out", "runs/1/samples/asked.png").code == 0
    loaded = load_run(Store("sqlite:///runs.db"), 1)
    files = loaded.files
    assert files.root.resolve() == (workdir / "runs" / "1").resolve()
    left = {path for path in files.root.iterdir()}
    assert left <= named_paths(files), f"not named by RunDir: {sorted(map(str, left - named_paths(files)))}"
    for expected in (files.config, files.split, files.checkpoints, files.samples, files.train_log, files.journal):
        assert expected.exists(), expected
    assert sorted(p.name for p in files.checkpoints.iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    assert {"step-00000002.png", "asked.png"} <= {p.name for p in files.samples.iterdir()}


def test_load_run_gives_the_stored_config_and_the_newest_checkpoint(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "4", "--ckpt-every", "2", "--lr", "3e-4").code == 0
    loaded = load_run(Store("sqlite:///runs.db"), "1")
    assert (loaded.record.id, loaded.cfg.lr, loaded.cfg.max_steps) == (1, 3e-4, 4)
    path, state = loaded.checkpoint()
    assert path == loaded.files.checkpoints / "ckpt-00000004.pt" and state["step"] == 4
    assert loaded.checkpoint(2)[0].name == "ckpt-00000002.pt"
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.cfg = None


def test_load_run_refuses_what_it_cannot_load_with_the_reason(workdir, cli, pcam):
    store = Store("sqlite:///runs.db")
    with pytest.raises(NotFound, match="no run with id 9"):
        load_run(store, 9)
    assert cli("launch", "--data", pcam, *TINY, "--max-steps", "2", "--queue").code == 0
    with pytest.raises(BadInput, match=r"run 1 has no checkpoint yet in .*runs/1/checkpoints; nothing to draw"):
        load_run(store, 1).checkpoint(purpose="; nothing to draw")
