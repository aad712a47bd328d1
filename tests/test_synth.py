"""Synthetic sets (`core.synthetic`) and the utility metric (TSTR against TRTR) from a tiny run."""

import json
import os

import h5py
import numpy as np
import pytest

from conftest import TINY, write_pcam
from core.data import open_split
from core.data.check import check_dataset
from core.data.sources import check_resolution
from core.errors import BadInput
from core.evaluate.classifier import train_classifier
from core.evaluate.metrics import METRICS
from core.evaluate.planning import plan_evaluation
from core.evaluate.service import evaluate
from core.store import Store
from core.synthetic import MANIFEST, PARTS, batch_labels, plan_synth, synthesize


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 1: a tiny conditional run; run 2: an unconditional one on both classes; run 3: one on
    cancerous patches only (4 steps each, T = 50)."""
    from ddpm_tui.cli import main

    root = tmp_path_factory.mktemp("synth")
    write_pcam(root / "pcam", {"train": 30, "valid": 32, "test": 40})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for extra in (["--conditional"], [], ["--classes", "cancerous"]):
            with pytest.raises(SystemExit) as exit_info:
                main(["train", "--data", "pcam", *TINY, *extra, "--max-steps", "4", "--ckpt-every", "4"])
            assert exit_info.value.code == 0, extra
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def store(runs, monkeypatch):
    monkeypatch.chdir(runs)
    return Store("sqlite:///runs.db")


def test_batch_labels_alternate_across_batches_as_within_one():
    labels = np.concatenate([batch_labels(s, 64, "both") for s in range(0, 192, 64)])
    assert labels.tolist() == (np.arange(192) % 2).tolist()
    assert set(batch_labels(0, 5, "cancerous").tolist()) == {1}


def test_synth_writes_a_labelled_pcam_set_that_data_check_and_the_readers_know(store, runs):
    plan = plan_synth(store, 1, runs / "set", n=70, sampler="ddim", steps=3, seed=5)
    seen = []
    manifest = synthesize(store, plan, device="cpu", on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(64, 70), (70, 70)]
    assert manifest["complete"] and manifest["counts"] == {"non_cancerous": 35, "cancerous": 35}
    assert manifest["settings"]["sampler"] == "ddim" and manifest["settings"]["steps"] == 3
    assert manifest["source_data"] == str((runs / "pcam").resolve())
    assert not (runs / "set" / PARTS).exists()
    source = open_split(runs / "set", "train")
    assert len(source) == 70 and source.patch_size == 32 and source.read(0, 3).shape == (3, 32, 32, 3)
    assert source.labels.tolist() == (np.arange(70) % 2).tolist()
    assert source.read(0, 70).std() > 5  # drawn images, not zeros
    source.close()
    report = check_dataset(runs / "set")
    assert report["problems"] == [] and report["splits"]["train"]["n"] == 70
    assert report["synthetic"]["run"] == 1 and report["synthetic"]["complete"] is True
    with pytest.raises(BadInput, match="its patches are 32 px, smaller than --image-size 64"):
        check_resolution(open_split(runs / "set", "train"), 64)


def test_a_killed_synth_resumes_and_equals_an_uninterrupted_one(store, runs):
    whole = synthesize(store, plan_synth(store, 1, runs / "whole", n=130, steps=2, seed=3), device="cpu")
    assert whole["settings"]["sampler"] == "dpm++"  # the default: fewest steps for the same ODE solution

    class Killed(Exception):
        pass

    def kill_after_first_batch(done, total):
        if done >= 64:
            raise Killed

    plan = plan_synth(store, 1, runs / "resumed", n=130, steps=2, seed=3)
    with pytest.raises(Killed):
        synthesize(store, plan, device="cpu", on_progress=kill_after_first_batch)
    assert len(list((runs / "resumed" / PARTS).glob("batch-*.npz"))) == 1
    assert json.loads((runs / "resumed" / MANIFEST).read_text())["complete"] is False
    assert "unfinished synthetic set" in check_dataset(runs / "resumed")["problems"][0]
    drawn = []
    synthesize(store, plan_synth(store, 1, runs / "resumed", n=130, steps=2, seed=3), device="cpu",
               on_progress=lambda done, total: drawn.append(done))
    assert drawn == [64, 128, 130]
    for name in ("camelyonpatch_level_2_split_train_x.h5", "camelyonpatch_level_2_split_train_y.h5"):
        key = name[-4]
        with h5py.File(runs / "whole" / name) as a, h5py.File(runs / "resumed" / name) as b:
            np.testing.assert_array_equal(a[key][...], b[key][...])


@pytest.mark.parametrize("run,kwargs,message", [
    (2, {}, "run 2 is unconditional on both classes: its samples carry no label"),
    (3, {"classes": "non_cancerous"}, "--class non_cancerous: run 3 draws only cancerous patches"),
    (1, {"classes": "tumour"}, "--class: unknown value 'tumour'"),
    (1, {"n": 0}, "--n: must be between 1 and"),
    (1, {"steps": 51}, "--steps 51: must be between 1 and run 1's 50 diffusion steps"),
    (1, {"guidance": float("nan")}, "--guidance: must be a finite number"),
    (3, {"guidance": 1.0}, "--guidance: run 3 is unconditional"),
    (1, {"sampler": "euler"}, "--sampler: unknown value 'euler'"),
    (1, {"checkpoint": 3}, "--checkpoint 3"),
])
def test_synth_refuses_what_it_cannot_draw(store, runs, run, kwargs, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        plan_synth(store, run, runs / "never", **{"n": 8, **kwargs})
    assert not (runs / "never").exists()


def test_synth_never_writes_over_another_folder_or_another_set(store, runs):
    (runs / "taken").mkdir()
    (runs / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty and not a synthetic set"):
        plan_synth(store, 1, runs / "taken", n=8)
    synthesize(store, plan_synth(store, 1, runs / "small", n=4, steps=2), device="cpu")
    with pytest.raises(BadInput, match="holds a synthetic set made with n 4, not 8"):
        plan_synth(store, 1, runs / "small", n=8, steps=2)
    (runs / "file").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        plan_synth(store, 1, runs / "file", n=8)
    assert (runs / "taken" / "notes.txt").read_text() == "mine"


def test_a_classifier_learns_from_a_synthetic_set_and_is_scored_on_real_patches(store, runs):
    synthesize(store, plan_synth(store, 1, runs / "for-classifier", n=32, steps=2), device="cpu")
    model, report = train_classifier(runs / "for-classifier", 32, "center-crop", steps=3, batch_size=8)
    assert report.split == "valid" and report.n == 32  # the real data's valid split: the set has none
    assert 0 <= report.accuracy <= 1


def test_utility_stores_tstr_and_trtr_with_intervals(store):
    plan = plan_evaluation(store, 1, "utility", n=16, sampler="ddim", steps=3, utility_steps=4, augment=True)
    rows = {r.metric: r for r in evaluate(store, plan, device="cpu")}
    assert set(rows) == {"utility", "tstr_auc", "trtr_auc", "tstr_accuracy", "trtr_accuracy", "augment_auc_gain"}
    assert set(rows) == {name for name, m in METRICS.items() if m.request == "utility"}  # the registry knows them all
    for row in rows.values():
        assert row.ci_low <= row.value <= row.ci_high and row.sampler == "ddim" and row.n == 16
    utility = rows["utility"]
    assert utility.value == pytest.approx(utility.details["tstr_auc"] / utility.details["trtr_auc"])
    assert utility.details["n_test"] == 40 and utility.details["classifier_steps"] == 4
    assert 0 <= rows["tstr_auc"].value <= 1 and -1 <= rows["augment_auc_gain"].value <= 1


@pytest.mark.parametrize("run,kwargs,message", [
    (2, {"metrics": "utility"}, "--metrics utility: run 2 is unconditional"),
    (1, {"metrics": "nll", "augment": True}, "--augment goes with --metrics utility"),
    (1, {"metrics": "utility", "utility_steps": 0}, "--utility-steps: must be between 1"),
    (1, {"metrics": "utility", "n": 40}, "--n 40: the utility metric trains on 20 real non_cancerous patches, but the train split of pcam has 15"),
])
def test_utility_refuses_what_it_cannot_measure(store, run, kwargs, message):
    with pytest.raises(BadInput, match=message):
        plan_evaluation(store, run, **kwargs)


# ---- the command line -----------------------------------------------------------------------------
def test_synth_command_writes_a_set_that_data_check_names_and_a_classifier_learns_from(runs, cli, monkeypatch):
    monkeypatch.chdir(runs)
    r = cli("synth", "1", "--n", "10", "--out", "cli-set", "--steps", "2", "--device", "cpu")
    assert r.code == 0 and "cli-set: 10 patches of run 1 (step 4; dpm++, 2 steps" in r.out, r
    assert "non_cancerous 5, cancerous 5" in r.out
    r = cli("data", "check", "cli-set")
    assert r.code == 0 and "synthetic: drawn by run 1" in r.out and "scored on" in r.out, r
    r = cli("classifier", "train", "--data", "cli-set", "--max-steps", "2", "--batch-size", "4", "--device", "cpu")
    assert r.code == 0, r
    r = cli("synth", "1", "--n", "12", "--out", "cli-set", "--steps", "2")
    assert r.code == 2 and "holds a synthetic set made with n 10, not 12" in r.err, r


@pytest.mark.slow
def test_synth_on_a_terminal_shows_its_progress_and_ends_cleanly(runs):
    from conftest import run_on_pty

    code, screen = run_on_pty(["synth", "1", "--n", "70", "--out", "tty-set", "--steps", "2", "--device", "cpu"], runs)
    assert code == 0, screen
    assert "tty-set: 70 patches of run 1" in screen and "Traceback" not in screen
    assert "drawing" in screen  # the progress bar was drawn on the terminal


def test_eval_utility_from_the_command_line(runs, cli, monkeypatch):
    monkeypatch.chdir(runs)
    r = cli("eval", "1", "--metrics", "utility", "--n", "8", "--steps", "2", "--utility-steps", "2", "--json")
    assert r.code == 0, r
    rows = {e["metric"]: e for e in json.loads(r.out)}
    assert {"utility", "tstr_auc", "trtr_auc"} <= set(rows) and "augment_auc_gain" not in rows
    assert rows["utility"]["details"]["classifier_steps"] == 2
    text = cli("runs", "show", "1")
    assert text.code == 0 and "utility" in text.out.lower(), text


@pytest.mark.slow
def test_the_tui_s_detached_synth_draws_the_set_into_the_run_folder(runs, monkeypatch):
    from conftest import poll_until
    from core.services.lab import Lab

    monkeypatch.chdir(runs)  # where the runs were trained: their --data is relative to it
    lab = Lab(f"sqlite:///{runs / 'runs.db'}", runs / "runs")
    job = lab.start_synth(1, 6)
    try:
        poll_until(lambda: (job.out / MANIFEST).exists() and json.loads((job.out / MANIFEST).read_text())["complete"],
                   timeout=240, what="the detached synth to finish")
    finally:
        poll_until(lambda: not os.path.exists(f"/proc/{job.pid}") or open(f"/proc/{job.pid}/stat").read().split()[2] == "Z",
                   timeout=60, what="the synth process to exit")
    assert job.out.parent == runs / "runs" / "1" / "synthetic"
    assert len(open_split(job.out, "train")) == 6 and "done:" in job.log.read_text()
