"""Where a command writes what the user names (sample --out/--gif, export --figures, data demo OUT)
is checked before the work starts: a read-only or missing folder is one line, exit 2, nothing
stored (issue 17). Mounting a read-only filesystem is the one check that holds for root too."""

from __future__ import annotations

import subprocess

import pytest

from conftest import seed_store
from core.store import Store, queries


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (the test is skipped where this process may not mount one)."""
    where = tmp_path / "ro"
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(where)], capture_output=True)
    if mount.returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def one_line(r, code: int, *words: str) -> None:
    assert r.code == code and len(r.err.strip().splitlines()) == 1, r
    for word in words:
        assert word in r.err, r


@pytest.mark.parametrize("where", [["--out", "{ro}/g.png"], ["--out", "{ro}/missing/g.png"],
                                   ["--out", "{work}/g.png", "--gif", "{ro}/r.gif"]])
def test_sample_into_a_read_only_folder_is_refused_before_sampling(workdir, cli, read_only, where):
    seed_store(workdir)
    store = Store(f"sqlite:///{workdir / 'runs.db'}")
    before = [a.path for a in queries.artifacts(store, 1)]
    r = cli("sample", "1", *[a.format(ro=read_only, work=workdir) for a in where])
    one_line(r, 2, f"cannot write in {read_only}", "Read-only file system")
    assert [a.path for a in queries.artifacts(store, 1)] == before and not (workdir / "g.png").exists()


def test_export_figures_into_a_read_only_folder_is_refused_before_writing(workdir, cli, read_only):
    store = Store(f"sqlite:///{workdir / 'runs.db'}")
    sweep = queries.create_sweep(store, "toy", {"axes": ["schedule"], "seeds": 2, "runs": 4})
    for i, (schedule, seed) in enumerate([("cosine", 0), ("cosine", 1), ("linear", 0), ("linear", 1)]):
        run = queries.create_run(store, {"schedule": schedule, "seed": seed}, status="finished", sweep_id=sweep.id)
        queries.add_evaluation(store, run.id, "nll", 3.0 + i, None, None, 64, "test", 0, {"per_image": [3.0, 3.1]})
    r = cli("export", "--sweep", sweep.id, "--format", "csv", "--out", workdir / "table.csv",
            "--figures", read_only / "figs")
    one_line(r, 2, "--figures", f"cannot write in {read_only}")
    assert not (workdir / "table.csv").exists()


def test_data_demo_into_a_read_only_folder_is_refused(workdir, cli, read_only):
    one_line(cli("data", "demo", read_only / "demo"), 2, "data demo", f"cannot write in {read_only}")
