"""Ranking results produced elsewhere: a CSV or JSON file of rows (configuration, seed, value), ranked
with the same statistics as a sweep (core.rank.significance), so the method is usable and testable alone.

CSV: a header with at least `configuration,seed,value` (an optional `metric` column holds several
metrics, one chosen with --metric). JSON: a list of objects with the same keys. A value that reads
as NaN or infinity is a failed result: left out and named, never ranked."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import BadInput
from core.evaluate.metrics import METRICS
from core.rank.significance import ONE_SEED_NOTE, TIE_RULE, ConfigStats, RunValue, rank_configurations

FIELDS = ("configuration", "seed", "value")
MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class ValuesRanking:
    source: str
    metric: str | None
    direction: str
    configs: list[ConfigStats]
    left_out: list[str]  # rows not ranked, and why
    tie_test: str = TIE_RULE
    one_seed_note: str = ONE_SEED_NOTE


def read_rows(path: Path) -> list[dict]:
    """The file's rows as dicts of field -> text (or JSON value), refusing what cannot be read."""
    if not path.is_file():
        raise BadInput(f"--values {path}: no such file")
    if path.suffix.lower() not in (".csv", ".json"):
        raise BadInput(f"--values {path}: expected a .csv or .json file of configuration, seed, value rows")
    if path.stat().st_size > MAX_BYTES:
        raise BadInput(f"--values {path}: larger than {MAX_BYTES // 2 ** 20} MiB")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except UnicodeDecodeError as e:
        raise BadInput(f"--values {path}: not UTF-8 text (byte {e.start})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise BadInput(f"--values {path}: no {', '.join(missing)} column in the header (needs {', '.join(FIELDS)})")
        return list(reader)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"--values {path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadInput(f"--values {path}: expected a JSON list of objects with {', '.join(FIELDS)}")
    return rows


def parse_value(path: Path, number: int, raw) -> float:
    """A row's value as a float (NaN and infinity allowed: they are left out later)."""
    if isinstance(raw, bool) or raw is None or (isinstance(raw, str) and not raw.strip()):
        raise BadInput(f"--values {path} row {number}, field value: {raw!r} is not a number")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise BadInput(f"--values {path} row {number}, field value: {raw!r} is not a number") from None


def checked_runs(path: Path, rows: list[dict], metric: str | None) -> tuple[list[RunValue], list[str]]:
    """The rows of `metric` as RunValues (run id = row number), and the non-finite rows left out."""
    metrics = sorted({str(r.get("metric")) for r in rows if r.get("metric") not in (None, "")})
    if metric is None and len(metrics) > 1:
        raise BadInput(f"--values {path}: holds several metrics ({', '.join(metrics)}): choose one with --metric")
    if metric is not None and metrics and metric not in metrics:
        raise BadInput(f"--values {path}: no rows of metric {metric!r} (it holds {', '.join(metrics)})")
    runs, left_out, seen = [], [], {}
    for number, row in enumerate(rows, start=1):
        if metric is not None and metrics and str(row.get("metric")) != metric:
            continue
        for field in FIELDS:
            if field not in row or row[field] is None or str(row[field]).strip() == "":
                raise BadInput(f"--values {path} row {number}, field {field}: missing")
        config, seed = str(row["configuration"]).strip(), str(row["seed"]).strip()
        if (config, seed) in seen:
            raise BadInput(f"--values {path} row {number}, field seed: configuration {config!r} seed {seed!r} "
                           f"already given in row {seen[(config, seed)]}")
        seen[(config, seed)] = number
        value = parse_value(path, number, row["value"])
        if math.isfinite(value):
            runs.append(RunValue(number, (config,), value))
        else:
            left_out.append(f"row {number} ({config}, seed {seed}): value {value}")
    if not runs:
        note = f" ({len(left_out)} left out)" if left_out else ""
        raise BadInput(f"--values {path}: no finite values to rank{note}")
    return runs, left_out


def direction_of(metric: str | None, higher_is_better: bool) -> str:
    """Which way is better: a known metric's own direction, else lower unless --higher-is-better."""
    known = METRICS[metric].direction if metric in METRICS else None
    if known == "guard":
        raise BadInput(f"--metric {metric}: a guard shown beside a ranking, never a rank key")
    if known == "lower" and higher_is_better:
        raise BadInput(f"--higher-is-better: {metric} is lower-is-better")
    return known or ("higher" if higher_is_better else "lower")


def rank_values(path: Path, metric: str | None = None, higher_is_better: bool = False) -> ValuesRanking:
    """Rank the configurations in a values file with the sweep's statistics (one row per seed)."""
    direction = direction_of(metric, higher_is_better)
    runs, left_out = checked_runs(path, read_rows(path), metric)
    configs = [c if c.compared else replace(c, ci_method="1 seed: no interval") for c in
               rank_configurations(runs, direction)]
    return ValuesRanking(str(path), metric, direction, configs, left_out)


def values_record(ranking: ValuesRanking) -> dict:
    """A values ranking as plain data (what `rank --values --json` prints)."""
    return {
        "values": ranking.source, "metric": ranking.metric, "direction": ranking.direction,
        "tie_test": ranking.tie_test, "one_seed": ranking.one_seed_note, "left_out": ranking.left_out,
        "rows": [{"configuration": c.config[0], "rows": list(c.run_ids), "seeds": len(c.values),
                  "values": list(c.values), "value": c.interval.value, "ci_low": c.interval.low,
                  "ci_high": c.interval.high, "ci_method": c.ci_method, "compared": c.compared,
                  "tied_with_best": c.tied, "p_worse": c.p_worse} for c in ranking.configs],
    }
