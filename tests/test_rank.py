"""Ranking an ablation: the statistics against hand-computed examples, and `rank`/`export` from the
store, with their bad input."""

import dataclasses
import json
import math

import numpy as np
import pytest

from core.intervals import bootstrap_ci, mean_ci
from core.rank.significance import (RunValue, configuration_stats, holm_rejections, interaction_2x2, main_effects,
                                    rank_configurations, welch_worse_p)
from core.store import Store, queries


def runs_of(config, values, start=1, per_unit=()):
    return [RunValue(start + i, config, v, per_unit) for i, v in enumerate(values)]


def test_mean_and_t_interval_by_hand():
    i = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert (i.value, i.low, i.high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-12)


def test_welch_one_sided_p_by_hand():
    # diff 3, se sqrt(1/3 + 1/3), t = 3.6742, Welch df = (2/3)^2 / (2 (1/3)^2 / 2) = 4; P(T_4 > 3.6742)
    from scipy.stats import t

    p = welch_worse_p(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), "lower")
    assert p == pytest.approx(t.sf(3 / math.sqrt(2 / 3), 4), rel=1e-12) and p == pytest.approx(0.010651, abs=1e-5)
    assert welch_worse_p(np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0]), "higher") == pytest.approx(p)


def test_holm_step_down_by_hand():
    # sorted 0.01 <= 0.05/3 rejects; 0.03 > 0.05/2 stops: only the first is rejected
    assert holm_rejections([0.01, 0.04, 0.03]) == [True, False, False]
    assert holm_rejections([0.001, 0.02, 0.04]) == [True, True, True]
    assert holm_rejections([0.2]) == [False]


def test_ties_with_the_best_and_the_order():
    runs = (runs_of(("a",), [1.0, 1.1, 0.9]) + runs_of(("b",), [1.05, 1.2, 0.95], 4)
            + runs_of(("c",), [3.0, 3.1, 2.9], 7))
    ranked = rank_configurations(runs, "lower")
    assert [r.config for r in ranked] == [("a",), ("b",), ("c",)]
    assert [r.tied for r in ranked] == [True, True, False]
    assert ranked[0].ci_method == "t over 3 seeds" and ranked[2].p_worse < 0.001
    flipped = rank_configurations(runs, "higher")
    assert [r.config for r in flipped][0] == ("c",) and [r.tied for r in flipped] == [True, False, False]


def test_one_seed_uses_a_bootstrap_of_its_per_image_values_with_a_fixed_seed():
    rng = np.random.default_rng(0)
    images = tuple(rng.normal(5.0, 1.0, 400))
    stats = configuration_stats([RunValue(1, ("a",), float(np.mean(images)), images)], seed=3)
    again = configuration_stats([RunValue(1, ("a",), float(np.mean(images)), images)], seed=3)
    assert stats.interval == again.interval and stats.ci_method == "1 seed: bootstrap over its 400 per-image values"
    t = mean_ci(images)
    assert stats.interval.low == pytest.approx(t.low, abs=0.03) and stats.interval.high == pytest.approx(t.high, abs=0.03)
    stored = configuration_stats([RunValue(2, ("b",), 0.5, (), (0.4, 0.7))])
    assert (stored.interval.low, stored.interval.high) == (0.4, 0.7) and "own interval" in stored.ci_method


def test_bootstrap_percentiles_are_reproducible():
    data = np.arange(10, dtype=float)
    stat = lambda rng: float(data[rng.integers(0, 10, 10)].mean())  # noqa: E731
    a, b = bootstrap_ci(stat, 4.5, 10, rounds=500, seed=7), bootstrap_ci(stat, 4.5, 10, rounds=500, seed=7)
    assert a == b and a.low < 4.5 < a.high and 2.5 < a.low and a.high < 6.5


def test_main_effects_and_the_2x2_interaction_by_hand():
    cells = {("cosine", "none"): [1.0, 2.0, 3.0], ("cosine", "full"): [2.0, 3.0, 4.0],
             ("linear", "none"): [3.0, 4.0, 5.0], ("linear", "full"): [6.0, 7.0, 8.0]}
    runs = [r for i, (k, v) in enumerate(cells.items()) for r in runs_of(k, v, 1 + 3 * i)]
    effects = {(e.factor, e.level): e.interval for e in main_effects(runs, ["schedule", "attention"])}
    assert effects[("schedule", "cosine")].value == pytest.approx(2.5)  # mean of 1..3 and 2..4
    assert effects[("schedule", "linear")].value == pytest.approx(5.5)
    assert effects[("attention", "full")].value == pytest.approx(5.0)
    inter = interaction_2x2(rank_configurations(runs, "lower"), ["schedule", "attention"])
    # (cosine/full - cosine/none) ... as (a1b1 - a1b2) - (a2b1 - a2b2) with levels sorted: cosine, linear; full, none
    assert inter.value == pytest.approx((3 - 2) - (7 - 4))
    half = 2.306004135204166 * math.sqrt(4 / 3)  # t_{0.975, 8} * sqrt(4 * 1/3)
    assert (inter.low, inter.high) == pytest.approx((inter.value - half, inter.value + half), rel=1e-9)


def sweep_with_evaluations(store, settings_n=(64, 64, 64, 64)):
    sweep = queries.create_sweep(store, "toy", {"axes": ["schedule"], "seeds": 2, "runs": 4})
    for i, (schedule, seed) in enumerate([("cosine", 0), ("cosine", 1), ("linear", 0), ("linear", 1)]):
        run = queries.create_run(store, {"schedule": schedule, "seed": seed}, status="finished", sweep_id=sweep.id)
        queries.add_evaluation(store, run.id, "nll", [3.0, 3.2, 4.0, 4.3][i], None, None, settings_n[i], "test", 0,
                               {"per_image": [3.0, 3.1]})
    return sweep


def test_rank_prints_and_exports_the_table_and_figures(workdir, cli):
    store = Store("sqlite:///runs.db")
    sweep = sweep_with_evaluations(store)
    r = cli("rank", "--sweep", sweep.id, "--json")
    assert r.code == 0, r
    record = json.loads(r.out)
    assert [row["config"]["schedule"] for row in record["rows"]] == ["cosine", "linear"]
    assert record["rows"][0]["nll"]["value"] == pytest.approx(3.1) and record["rows"][0]["nll"]["seeds"] == 2
    assert "k(k-1) one-sided Welch t-tests" in record["tie_test"] and "choice of the best" in record["tie_test"]
    r = cli("rank")
    assert r.code == 0 and "ranked by nll (lower is better)" in r.out and "=best" in r.out, r
    r = cli("export", "--sweep", sweep.id, "--format", "md", "--figures", workdir / "figs")
    assert r.code == 0 and r.out.startswith("**sweep 1 (toy)") and (workdir / "figs" / "sweep-1-nll.png").exists()
    table = [line for line in r.out.splitlines() if line.startswith("|")]  # a Markdown table, not a code fence
    assert "```" not in r.out and table[0].startswith("| schedule | seeds | p_worse | nll [95% CI]") and table[1].startswith("| --- |")
    assert len(table) == 4 and table[2].startswith("| cosine |")
    csv_lines = cli("export", "--sweep", sweep.id, "--format", "csv", "--figures", workdir / "figs").out.splitlines()
    assert csv_lines[0].startswith("schedule,runs,nll.mean") and len(csv_lines) == 3


def test_rank_bad_input(workdir, cli):
    store = Store("sqlite:///runs.db")
    empty = queries.create_sweep(store, "empty", {"axes": ["schedule"]})
    queries.create_run(store, {"schedule": "cosine"}, status="finished", sweep_id=empty.id)
    r = cli("rank", "--sweep", empty.id)
    assert r.code == 2 and "has no evaluations yet: run `ddpm-tui eval --sweep 1 --missing" in r.err
    mixed = sweep_with_evaluations(store, settings_n=(64, 64, 128, 64))
    r = cli("rank", "--sweep", mixed.id)
    assert r.code == 2 and "different settings" in r.err and "runs 4: n=128" in r.err, r
    assert len(r.err.strip().splitlines()) == 1
    assert cli("rank", "--sweep", mixed.id, "--mixed").code == 0
    r = cli("rank", "--sweep", mixed.id, "--metric", "beauty")
    assert r.code == 2 and "--metric: unknown metric 'beauty'" in r.err
    r = cli("rank", "--sweep", mixed.id, "--metric", "kid")
    assert r.code == 2 and "no run of sweep 2 has it (evaluated: nll)" in r.err
    r = cli("rank", "--sweep", "99")
    assert r.code == 2 and "no sweep with id 99" in r.err


@pytest.mark.slow
def test_ablate_eval_on_finish_through_the_worker_then_rank_and_retry_a_failed_evaluation(workdir, cli, pcam):
    from conftest import TINY, write_pcam

    r = cli("ablate", "--data", pcam, *TINY, "--schedule", "linear,cosine", "--seeds", "2", "--max-steps", "2",
            "--eval-on-finish", "nll", "--eval-n", "8", "--eval-nll-timesteps", "5")
    assert r.code == 0, r
    store = Store("sqlite:///runs.db")
    assert queries.get_sweep(store, 1).spec["eval_on_finish"] == {"metrics": "nll", "n": 8, "nll_timesteps": "5"}
    other = write_pcam(workdir / "other")
    r = cli("ablate", "--data", other, *TINY, "--max-steps", "2", "--eval-on-finish", "nll", "--eval-n", "8",
            "--eval-nll-timesteps", "5", "--sweep-name", "will-fail")
    assert r.code == 0, r
    test_x = other / "camelyonpatch_level_2_split_test_x.h5"
    test_x.rename(other / "held-away.h5")  # the evaluation of sweep 2's run will find no test split
    r = cli("worker", "--slots", "2", "--until-empty", "--poll", "0.2")  # two at once: each is mostly start-up
    assert r.code == 0, r
    jobs = {j.run_id: j for j in queries.eval_jobs(store)}
    assert sorted(jobs) == [1, 2, 3, 4, 5]
    assert [jobs[i].status for i in (1, 2, 3, 4)] == ["finished"] * 4
    assert jobs[5].status == "failed" and "--split test" in jobs[5].reason and "missing file" in jobs[5].reason

    record = json.loads(cli("rank", "--sweep", "1", "--json").out)
    assert [row["nll"]["seeds"] for row in record["rows"]] == [2, 2]
    assert {row["config"]["schedule"] for row in record["rows"]} == {"linear", "cosine"}
    assert all(e.details["timesteps"] == 5 for e in queries.evaluations(store, [1, 2, 3, 4]))

    r = cli("rank", "--sweep", "2")
    assert r.code == 2 and "no evaluations yet" in r.err
    (other / "held-away.h5").rename(test_x)
    r = cli("eval", "--sweep", "2", "--missing")
    assert r.code == 0 and "NLL bits/dim" in r.out, r
    r = cli("rank", "--sweep", "2")
    assert r.code == 0 and "1 configurations" in r.out and "without nll" not in r.out, r
    r = cli("eval", "--sweep", "2", "--missing")
    assert r.code == 0 and "nothing to evaluate" in r.err


def test_eval_on_finish_is_checked_before_anything_is_queued(workdir, cli, pcam):
    from conftest import TINY

    for extra, message in ((["--eval-on-finish", "kid", "--eval-n", "8"], "no PCam classifier for"),
                           (["--eval-on-finish", "nll", "--eval-n", "17"], "--eval-n 17: the test split of"),
                           (["--eval-on-finish", "nll,beauty"], "--metrics: unknown metric 'beauty'"),
                           (["--eval-on-finish", "class", "--eval-n", "8"], "class fidelity needs --conditional runs")):
        r = cli("ablate", "--data", pcam, *TINY, "--schedule", "linear,cosine", *extra)
        assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, (extra, r)
    assert not (workdir / "runs.db").exists()


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 8, 30, 200, 5000])
def test_student_t_without_scipy_stats_matches_scipy(df):
    from scipy.stats import t

    from core.intervals import student_t_cdf, student_t_quantile

    for p in (0.5, 0.6, 0.9, 0.975, 0.995, 0.9999, 0.025):
        assert student_t_quantile(p, df) == pytest.approx(t.ppf(p, df), rel=1e-9, abs=1e-12)
    for x in (-40.0, -3.674, -1.0, 0.0, 0.3, 2.0, 10.0):
        assert student_t_cdf(x, df) == pytest.approx(t.cdf(x, df), rel=1e-9, abs=1e-14)


def test_a_one_seed_configuration_is_shown_but_never_compared_even_with_the_best_value():
    runs = (runs_of(("a",), [1.0, 1.1, 0.9]) + runs_of(("b",), [3.0, 3.1, 2.9], 4)
            + [RunValue(7, ("solo",), 0.1, tuple(np.linspace(0.0, 0.2, 50)))])
    ranked = rank_configurations(runs, "lower")
    assert [r.config for r in ranked] == [("a",), ("b",), ("solo",)]
    solo = ranked[2]
    assert solo.tied is None and solo.p_worse is None and not solo.compared and "bootstrap" in solo.ci_method
    assert ranked[0].tied is True and ranked[1].tied is False


def test_nan_values_are_left_out_never_best_and_mean_ci_does_not_crash():
    nan = float("nan")
    assert math.isnan(mean_ci([1.0, nan, 2.0]).value)  # it raised AttributeError ('numerator')
    one_each = [RunValue(1, ("n",), nan), RunValue(2, ("a",), 1.0), RunValue(3, ("b",), 2.0)]
    assert ("n",) not in [r.config for r in rank_configurations(one_each, "lower")]
    runs = runs_of(("a",), [1.0, nan, 1.1, 0.9]) + runs_of(("b",), [1.05, 1.2, 0.95], 5)
    ranked = rank_configurations(runs, "lower")
    assert ranked[0].values == (1.0, 1.1, 0.9) and ranked[0].run_ids == (1, 3, 4)
    assert holm_rejections([nan, 0.001]) == [False, True]


def test_zero_seed_variance_on_both_sides_makes_no_claim_and_no_interaction():
    runs = runs_of(("a",), [1.0, 1.0]) + runs_of(("b",), [1.5, 1.5], 3)
    ranked = rank_configurations(runs, "lower")
    assert [r.tied for r in ranked] == [True, True] and ranked[1].p_worse == 1.0  # was p = 0: "worse"
    cells = [r for i, k in enumerate([("x", "u"), ("x", "v"), ("y", "u"), ("y", "v")])
             for r in runs_of(k, [float(i), float(i)], 1 + 2 * i)]
    assert interaction_2x2(rank_configurations(cells, "lower"), ["f", "g"]) is None  # was ZeroDivisionError


def test_rank_leaves_out_a_nan_evaluation_and_names_it(workdir, cli, monkeypatch):
    store = Store("sqlite:///runs.db")
    sweep = sweep_with_evaluations(store)
    original = queries.latest_evaluations

    def with_a_nan(store, run_ids=None):  # as PostgreSQL would return a stored NaN
        latest = original(store, run_ids)
        latest[4]["nll"] = latest[4]["nll"].replace(value=float("nan"))
        return latest

    monkeypatch.setattr(queries, "latest_evaluations", with_a_nan)
    record = json.loads(cli("rank", "--sweep", sweep.id, "--json").out)
    assert record["missing"] == {"4": "nll is nan (a failed evaluation): left out"}
    assert [row["nll"]["seeds"] for row in record["rows"]] == [2, 1] and record["rows"][1]["nll"]["compared"] is False
    r = cli("rank", "--sweep", sweep.id)
    assert r.code == 0 and "run 4 (nll is nan (a failed evaluation): left out)" in r.out, r
    assert "n/c: not compared" in r.out


def test_rank_shows_the_p_value_and_a_guard_column(workdir, cli, monkeypatch):
    from dataclasses import replace

    from core.evaluate import metrics

    store = Store("sqlite:///runs.db")
    sweep = sweep_with_evaluations(store)
    for run_id, value in zip((1, 2, 3, 4), (0.1, 0.2, 0.6, 0.7)):
        queries.add_evaluation(store, run_id, "ssim_memorisation", value, None, None, 64, "test", 0, {})
    memorisation = replace(metrics.METRICS["ssim_memorisation"], meaning="share of samples memorised")
    monkeypatch.setitem(metrics.METRICS, "ssim_memorisation", memorisation)  # the guard text comes from the registry
    r = cli("rank", "--sweep", sweep.id)
    assert r.code == 0, r
    header, best, other = r.out.splitlines()[1:4]
    assert "p_worse" in header and "ssim_memorisation (guard)" in header and "ssim_memorisation [95% CI]" not in header
    from scipy.stats import ttest_ind

    expected = ttest_ind([3.0, 3.2], [4.0, 4.3], equal_var=False).pvalue  # Holm over 2 tests: 2 x one-sided
    assert other.split()[2] == f"{expected:.3g}" and float(best.split()[2]) > 0.5 and "=best" in best
    assert "0.15 [" in best and "0.65 [" in other  # the guard's means, without marks
    assert "ssim_memorisation (guard): share of samples memorised; shown, never ranked" in r.out
    record = json.loads(cli("rank", "--sweep", sweep.id, "--json").out)
    assert record["rows"][1]["ssim_memorisation"]["guard"] == "share of samples memorised"


def test_rank_values_file_uses_the_sweep_statistics(workdir, cli):
    from scipy.stats import ttest_ind

    a, b = [1.0, 1.1, 0.9], [3.0, 3.2, 2.9]
    rows = ([f"a,{i},{v}" for i, v in enumerate(a)] + [f"b,{i},{v}" for i, v in enumerate(b)]
            + ["solo,0,0.5", "a,9,nan"])
    (workdir / "v.csv").write_text("configuration,seed,value\n" + "\n".join(rows) + "\n")
    r = cli("rank", "--values", workdir / "v.csv", "--json")
    assert r.code == 0, r
    record = json.loads(r.out)
    by = {row["configuration"]: row for row in record["rows"]}
    assert [row["configuration"] for row in record["rows"]] == ["a", "b", "solo"] and record["direction"] == "lower"
    assert by["b"]["p_worse"] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-8)
    assert by["a"]["value"] == pytest.approx(mean_ci(a).value) and by["a"]["ci_low"] == pytest.approx(mean_ci(a).low)
    assert by["solo"]["compared"] is False and by["solo"]["tied_with_best"] is None
    assert record["left_out"] == ["row 8 (a, seed 9): value nan"]
    flipped = json.loads(cli("rank", "--values", workdir / "v.csv", "--higher-is-better", "--json").out)
    assert flipped["rows"][0]["configuration"] == "b" and flipped["direction"] == "higher"
    rows = [{"configuration": "x", "seed": s, "value": v, "metric": "class_fidelity"} for s, v in enumerate([0.8, 0.9])]
    (workdir / "v.json").write_text(json.dumps(rows))
    r = cli("rank", "--values", workdir / "v.json", "--metric", "class_fidelity")
    assert r.code == 0 and "ranked by class_fidelity (higher is better)" in r.out and "=best" in r.out, r
    assert not (workdir / "runs.db").exists()


def test_kid_subsets_are_not_images_a_one_seed_kid_keeps_its_stored_interval(workdir):
    from core.rank.sweep import rank_sweep

    store = Store("sqlite:///runs.db")
    sweep = queries.create_sweep(store, "kid", {"axes": ["schedule"], "seeds": 1, "runs": 2})
    for schedule, value in (("cosine", 0.01), ("linear", 0.02)):
        run = queries.create_run(store, {"schedule": schedule, "seed": 0}, status="finished", sweep_id=sweep.id)
        queries.add_evaluation(store, run.id, "kid", value, value - 0.005, value + 0.005, 64, "test", 0,
                               {"per_subset": [value - 0.004, value, value + 0.001, value + 0.003]})
    configs = rank_sweep(store, sweep.id).rankings["kid"].configs
    assert all(c.ci_method == "1 seed: the evaluation's own interval" and not c.compared for c in configs)
    assert (configs[0].interval.low, configs[0].interval.high) == pytest.approx((0.005, 0.015))


def test_the_readme_states_the_tie_rule_rank_prints():
    from pathlib import Path

    from core.rank.significance import TIE_RULE

    assert f"tie rule: {TIE_RULE}\n" in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_rank_values_reads_a_csv_with_a_byte_order_mark(workdir, cli):
    (workdir / "v.csv").write_bytes(b"\xef\xbb\xbfconfiguration,seed,value\na,0,1\na,1,2\n")  # as spreadsheets save it
    r = cli("rank", "--values", workdir / "v.csv", "--json")
    assert r.code == 0 and json.loads(r.out)["rows"][0]["value"] == 1.5, r
