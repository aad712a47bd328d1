"""A sweep's ranking from the store: the latest evaluation of each run, grouped by configuration
(the values of the swept options), ranked by one metric with core.rank.significance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import BadInput
from core.evaluate.metrics import METRICS, guards, rank_keys
from core.intervals import Interval
from core.rank.significance import (ONE_SEED_NOTE, TIE_RULE, ConfigStats, LevelEffect, RunValue, configuration_stats,
                                    interaction_2x2, main_effects, rank_configurations, split_finite)
from core.runner.sweeps import configuration_key
from core.store import queries
from core.store.db import Store

IGNORED_AXES = ("seed", "name", "tag")
TIE_TEST = TIE_RULE


def sweep_factors(sweep: queries.Sweep, runs: list[queries.Run]) -> list[str]:
    """The swept options (seed excluded): from the sweep's spec, else the config keys that differ."""
    axes = [a for a in (sweep.spec or {}).get("axes") or [] if a not in IGNORED_AXES]
    if axes or not runs:
        return axes
    keys = sorted({k for r in runs for k in r.config} - set(IGNORED_AXES))
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def settings_of(e: queries.Evaluation) -> tuple:
    """What makes two evaluations of one metric comparable."""
    return (e.n, e.split, e.sampler, e.steps, e.guidance, e.classifier_id, e.details.get("timesteps"))


def describe_settings(s: tuple) -> str:
    n, split, sampler, steps, guidance, classifier, timesteps = s
    parts = [f"n={n}", f"split={split}"]
    if sampler:
        parts.append(f"{sampler}-{steps}" + (f" w={guidance:g}" if guidance else ""))
    if classifier:
        parts.append(f"classifier {classifier}")
    if timesteps is not None:
        parts.append(f"nll timesteps {timesteps}")
    return ", ".join(parts)


@dataclass(frozen=True)
class MetricRanking:
    metric: str
    direction: str
    configs: list[ConfigStats]
    settings: str
    effects: list[LevelEffect]
    interaction: Interval | None
    mixed: bool = False  # its runs were evaluated with different settings (ranked only with mixed=True)


@dataclass(frozen=True)
class SweepRanking:
    sweep_id: int
    name: str
    factors: list[str]
    metric: str  # the rank key
    rankings: dict[str, MetricRanking]  # every metric with evaluations
    run_status: dict[int, str]
    missing: dict[int, str]  # runs without the rank metric, and why (status or failed evaluation)
    train_loss: dict[tuple, float | None]  # mean smoothed training loss per configuration (not comparable)
    tie_test: str = TIE_TEST
    guards: dict[str, dict[tuple, ConfigStats]] = None  # guard metric -> configuration -> its values, never ranked
    one_seed_note: str = ONE_SEED_NOTE


def rank_sweep(store: Store, sweep_id: int | str | None = None, metric: str | None = None,
               mixed: bool = False) -> SweepRanking:
    """Rank the configurations of a sweep (the newest one by default) by `metric` (default: the
    first of nll, kid, fid, ... that was evaluated). BadInput when there is nothing to rank, the
    metric is unknown, or runs were evaluated with different settings (unless `mixed`)."""
    if metric in guards():
        raise BadInput(f"--metric {metric}: a guard shown beside the ranking, never a rank key")
    if metric is not None and metric not in METRICS:
        raise BadInput(f"--metric: unknown metric {metric!r} (choose from {', '.join(METRICS)}; training loss is "
                       "not comparable across schedules and is never a rank key)")
    sweeps = queries.list_sweeps(store)
    if sweep_id is None:
        if not sweeps:
            raise BadInput("no sweeps yet: queue one with `ddpm-tui ablate`")
        sweep = sweeps[-1]
    else:
        sweep = queries.get_sweep(store, sweep_id)
    runs = queries.list_runs(store, sweep_id=sweep.id)
    factors = sweep_factors(sweep, runs)
    latest = queries.latest_evaluations(store, [r.id for r in runs])
    evaluated = [m for m in rank_keys() if any(has_finite(latest, r.id, m) for r in runs)]
    if not evaluated:
        raise BadInput(f"sweep {sweep.id} has no evaluations yet: run `ddpm-tui eval --sweep {sweep.id} --missing "
                       f"--metrics nll` once its runs finish (or queue sweeps with --eval-on-finish)")
    key_metric = metric or evaluated[0]
    if key_metric not in evaluated:
        raise BadInput(f"--metric {key_metric}: no run of sweep {sweep.id} has it (evaluated: {', '.join(evaluated)})")
    rankings, left_out = {}, {}
    for m in evaluated:
        by_settings: dict[tuple, list[int]] = {}
        values, not_finite = split_finite(metric_values(runs, latest, m, factors, by_settings))
        if m == key_metric:
            left_out = {r.run_id: f"{m} is {r.value} (a failed evaluation): left out" for r in not_finite}
        if len(by_settings) > 1 and not mixed:
            described = "; ".join(f"runs {', '.join(map(str, ids))}: {describe_settings(s)}"
                                  for s, ids in by_settings.items())
            raise BadInput(f"{m} of sweep {sweep.id} was evaluated with different settings ({described}); evaluate "
                           f"them alike, or rank anyway with --mixed")
        configs = rank_configurations(values, METRICS[m].direction)
        rankings[m] = MetricRanking(m, METRICS[m].direction, configs, " | ".join(describe_settings(s) for s in by_settings),
                                    main_effects(values, factors), interaction_2x2(configs, factors),
                                    len(by_settings) > 1)
    failed_jobs = {j.run_id: j.reason for j in queries.eval_jobs(store, [r.id for r in runs], status="failed")}
    missing = {r.id: (f"evaluation failed: {failed_jobs[r.id]}" if r.id in failed_jobs else r.status)
               for r in runs if key_metric not in latest.get(r.id, {})}
    missing.update(left_out)
    summaries = queries.summaries(store, [r.id for r in runs])
    losses: dict[tuple, list[float]] = {}
    for r in runs:
        smooth = summaries.get(r.id, {}).get("train/loss_smooth", {}).get("last")
        losses.setdefault(configuration_key(r.config, factors), []).append(smooth)
    train_loss = {k: (sum(v for v in vs if v is not None) / len([v for v in vs if v is not None])
                      if any(v is not None for v in vs) else None) for k, vs in losses.items()}
    return SweepRanking(sweep.id, sweep.name, factors, key_metric, rankings, {r.id: r.status for r in runs}, missing,
                        train_loss, guards=guard_columns(runs, latest, factors))


def has_finite(latest: dict, run_id: int, metric: str) -> bool:
    """Whether the run's latest evaluation of `metric` is a finite number (NaN is a failed evaluation)."""
    e = latest.get(run_id, {}).get(metric)
    return e is not None and math.isfinite(e.value)


def guard_columns(runs: list[queries.Run], latest: dict, factors: list[str]) -> dict[str, dict[tuple, ConfigStats]]:
    """Per guard metric (core.evaluate.metrics) that was evaluated: each configuration's mean and interval, shown
    beside the ranking, never compared."""
    columns = {}
    for metric in guards():
        groups: dict[tuple, list[RunValue]] = {}
        for r in split_finite(metric_values(runs, latest, metric, factors, {}))[0]:
            groups.setdefault(r.config, []).append(r)
        if groups:
            columns[metric] = {config: configuration_stats(g) for config, g in groups.items()}
    return columns


def metric_values(runs: list[queries.Run], latest: dict, metric: str, factors: list[str],
                  by_settings: dict[tuple, list[int]]) -> list[RunValue]:
    """Each run's latest value of `metric` (with its per-image values, for a one-seed interval; KID's
    per-subset values are not images and are not used); records each run's settings in by_settings."""
    values = []
    for r in runs:
        e = latest.get(r.id, {}).get(metric)
        if e is None:
            continue
        by_settings.setdefault(settings_of(e), []).append(r.id)
        values.append(RunValue(r.id, configuration_key(r.config, factors), e.value,
                               tuple(e.details.get("per_image") or ()), (e.ci_low, e.ci_high)))
    return values


def ranking_record(ranking: SweepRanking) -> dict:
    """A ranking as plain data (what `rank --json` prints)."""
    def interval(i: Interval | None):
        return None if i is None else {"value": i.value, "ci_low": i.low, "ci_high": i.high, "n": i.n, "method": i.method}

    order = [c.config for c in ranking.rankings[ranking.metric].configs]
    by_metric = {m: {c.config: c for c in r.configs} for m, r in ranking.rankings.items()}
    rows = []
    for config in order:
        row = {"config": dict(zip(ranking.factors, config)), "runs": list(by_metric[ranking.metric][config].run_ids),
               "train_loss_not_comparable": ranking.train_loss.get(config)}
        for m, stats in by_metric.items():
            c = stats.get(config)
            row[m] = None if c is None else dict(interval(c.interval), seeds=len(c.values), values=list(c.values),
                                                 ci_method=c.ci_method, compared=c.compared, tied_with_best=c.tied,
                                                 p_worse=c.p_worse)
        for m, stats in (ranking.guards or {}).items():
            c = stats.get(config)
            row[m] = None if c is None else dict(interval(c.interval), seeds=len(c.values), values=list(c.values),
                                                 ci_method=c.ci_method, guard=METRICS[m].meaning)
        rows.append(row)
    return {
        "sweep": ranking.sweep_id, "name": ranking.name, "factors": ranking.factors, "rank_metric": ranking.metric,
        "direction": METRICS[ranking.metric].direction, "tie_test": ranking.tie_test, "one_seed": ranking.one_seed_note,
        "rows": rows,
        "settings": {m: r.settings for m, r in ranking.rankings.items()},
        "main_effects": {m: [{"factor": e.factor, "level": e.level, **interval(e.interval)} for e in r.effects]
                         for m, r in ranking.rankings.items()},
        "interaction": {m: interval(r.interaction) for m, r in ranking.rankings.items()},
        "missing": {str(k): v for k, v in ranking.missing.items()},
    }
