"""A first run with the defaults a new user leaves alone: it must learn something and show it."""

import json

from conftest import TINY
from core.store import Store, queries
from core.train.trainer import warmup_for_run, warmup_lr


def test_warmup_is_at_most_a_tenth_of_the_run():
    assert warmup_for_run(200, 150) == 15
    assert warmup_for_run(200, 10_000) == 200
    assert warmup_for_run(20, 5) == 0
    assert warmup_lr(1e-3, 14, warmup_for_run(200, 150)) == 1e-3


def test_a_short_run_with_the_default_warmup_reaches_the_full_rate_and_ends_with_a_grid(workdir, cli, pcam):
    args = [a for a in TINY if a not in ("--warmup-steps", "2")]
    r = cli("train", "--data", pcam, *args, "--max-steps", "20", "--lr", "1e-3")
    assert r.code == 0, r
    log = (workdir / "runs" / "1" / "train.log").read_text()
    assert "starting run 1: 20 steps, learning-rate warm-up over 2" in log
    store = Store("sqlite:///runs.db")
    run = queries.get_run(store, 1)
    assert run.config["warmup_steps"] == 2
    assert json.loads((workdir / "runs" / "1" / "config.json").read_text())["warmup_steps"] == 2
    steps, rates = queries.metric_series(store, 1, "lr")[:2]
    assert rates[steps.index(20)] == 1e-3
    # no --sample-every: the run still ends with its grid and the reverse-process GIF
    kinds = {(a.kind, a.step) for a in queries.artifacts(store, 1)}
    assert ("samples", 20) in kinds and ("gif", 20) in kinds
    assert (workdir / "runs" / "1" / "samples" / "step-00000020.png").exists()


def test_eval_with_its_defaults_uses_the_whole_split_when_it_is_smaller_and_says_so(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "2").code == 0
    r = cli("eval", "1", "--nll-timesteps", "3", "--json")
    assert r.code == 0, r
    assert "note: run 1: the test split has 16 patches of class 'both', fewer than the default --n 256" in r.err
    (row,) = json.loads(r.out)
    assert row["metric"] == "nll" and row["n"] == 16
    r = cli("eval", "1", "--n", "17")
    assert r.code == 2 and "--n 17: the test split has only 16 patches" in r.err, r
