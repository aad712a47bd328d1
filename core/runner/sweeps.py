"""Ablation grids: any training option given as a list expands into one queued run per combination
and seed, all under one sweep id."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from typing import Mapping

from core.config import (
    FIELD_TYPES,
    INT_LISTS,
    NAME_MAX,
    TrainConfig,
    build_config,
    flag,
    parse_value,
)
from core.errors import BadInput

NOT_SWEEPABLE = ("tag", "name", "seed")
# More runs than this in one sweep is more likely a typo (--seeds 100000) than a plan: --yes-large says it is meant
MAX_SWEEP_RUNS = 512


def split_values(name: str, raw: str) -> list:
    """'linear,cosine' -> ['linear', 'cosine']; for dim_mults and attn_resolutions, ';' separates."""
    sep = ";" if name in INT_LISTS else ","  # their single values hold commas
    parts = [p.strip() for p in str(raw).split(sep) if p.strip()]
    if not parts:
        raise BadInput(f"--{flag(name)}: no values in {raw!r}", field=name)
    return [parse_value(name, p) for p in parts]


def parse_option_list(text: str) -> dict[str, str]:
    """'lr=1e-4,2e-4; image_size=32' -> {'lr': '1e-4,2e-4', 'image_size': '32'}. Options are separated
    by ';'; the values of dim_mults and attn_resolutions (which contain commas) by '|'."""
    options: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise BadInput(f"other options: expected key=value, got {part!r}", field="other")
        key, value = (s.strip() for s in part.split("=", 1))
        name = key.lstrip("-").replace("-", "_")
        if name not in FIELD_TYPES:
            raise BadInput(f"other options: unknown option {key!r}", field="other")
        if name == "name":
            raise BadInput("other options: the runs are named after the sweep; use the sweep name field", field="other")
        if name in options:
            raise BadInput(f"other options: {key!r} is given twice", field="other")
        if not value:
            raise BadInput(f"--{flag(name)}: no values", field=name)
        options[name] = ";".join(v.strip() for v in value.split("|")) if name in INT_LISTS else value
    return options


def grid_axes(raw_values: dict[str, str | None]) -> list[str]:
    """The options given with more than one value: the axes of the grid."""
    return sorted(name for name, raw in raw_values.items()
                  if raw is not None and name not in NOT_SWEEPABLE and FIELD_TYPES[name] is not list
                  and len(split_values(name, raw)) > 1)


def check_grid_size(axes: dict[str, list], seeds: int, allow_large: bool) -> None:
    """BadInput for a grid of more than MAX_SWEEP_RUNS runs, unless `allow_large`."""
    configurations = math.prod(len(values) for values in axes.values())
    if configurations * seeds > MAX_SWEEP_RUNS and not allow_large:
        raise BadInput(f"too many runs: the grid is {configurations * seeds} ({configurations} configurations x "
                       f"--seeds {seeds}), more than {MAX_SWEEP_RUNS}; pass --yes-large to queue them", field="seeds")


def run_name(base_name: str, chosen: dict, seed: int) -> str:
    """The name of a sweep's run: sweep name, the swept values, the seed. BadInput names --sweep-name
    when it makes the run name longer than a run name may be."""
    label = "-".join(str(v).replace(",", "x") for v in chosen.values()) or "run"
    name = f"{base_name or 'sweep'}-{label}-s{seed}"
    if len(name) > NAME_MAX:
        raise BadInput(f"--sweep-name: {len(base_name)} characters make run names of {len(name)} characters "
                       f"(at most {NAME_MAX}); give a shorter one", field="sweep_name")
    return name


def check_seeds(seeds: int | str) -> int:
    """--seeds as given (a number, or the text of a form's field): a whole number of at least 1."""
    try:
        count = int(str(seeds).strip())
    except ValueError:
        raise BadInput(f"--seeds: expected a whole number, got {seeds!r}") from None
    if count < 1:
        raise BadInput(f"--seeds: must be at least 1, got {count}")
    return count


def expand_grid(raw_values: dict[str, str | None], seeds: int, config_file=None, base_name: str = "",
                allow_large: bool = False) -> list[TrainConfig]:
    """One validated TrainConfig per combination of the listed values and per seed (at most
    MAX_SWEEP_RUNS of them unless `allow_large`)."""
    seeds = check_seeds(seeds)
    fixed, axes = {}, {}
    for name, raw in raw_values.items():
        if raw is None:
            continue
        if name in NOT_SWEEPABLE or FIELD_TYPES[name] is list:
            fixed[name] = raw if FIELD_TYPES[name] is list else parse_value(name, raw)
            continue
        values = split_values(name, raw)
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            axes[name] = values
    check_grid_size(axes, seeds, allow_large)
    base_seed = int(fixed.pop("seed", 0))
    configs = []
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo))
        for seed in range(base_seed, base_seed + seeds):
            name = run_name(base_name, chosen, seed)
            configs.append(build_config({**fixed, **chosen, "seed": seed, "name": name}, config_file))
    return configs


def configuration_key(cfg: TrainConfig | Mapping, axes: list[str]) -> tuple:
    """The values of the swept options (seed excluded): runs with equal keys are one configuration."""
    values = dataclasses.asdict(cfg) if isinstance(cfg, TrainConfig) else cfg
    return tuple(values.get(a) for a in axes)


# ---- a sweep's runs, one row per configuration (the TUI's sweep view); records are core.api.RunView -
IGNORED_AXES = ("seed", "name", "tag")


def sweep_axes(spec: dict | None, records: list) -> list[str]:
    """The swept options of a sweep: from its spec, else the config keys whose values differ."""
    axes = [a for a in (spec or {}).get("axes") or [] if a not in IGNORED_AXES]
    if axes or not records:
        return axes
    keys = sorted({k for r in records for k in r.config} - set(IGNORED_AXES))
    return [k for k in keys if len({repr(r.config.get(k)) for r in records}) > 1]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def group_runs(records: list, axes: list[str]) -> list[dict]:
    """One row per configuration (the values of the swept options, seed excluded), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=lambda r: r.id):
        groups.setdefault(configuration_key(r.config, axes), []).append(r)
    rows = []
    for key, runs in groups.items():
        statuses = [r.status for r in runs]
        progress = [min(1.0, r.step / r.total_steps) for r in runs if r.total_steps]
        losses = [r.smooth_loss for r in runs if r.smooth_loss is not None]
        bests = [r.best for r in runs if r.best is not None]
        rows.append({
            "key": key, "values": dict(zip(axes, key)), "run_ids": [r.id for r in runs], "runs": len(runs),
            "finished": statuses.count("finished"), "running": statuses.count("running"),
            "queued": statuses.count("queued"),
            "other": len(statuses) - sum(statuses.count(s) for s in ("finished", "running", "queued")),
            "progress": _mean(progress), "loss": _mean(losses), "best": min(bests) if bests else None,
        })
    return rows


def sweep_progress(records: list) -> tuple[float | None, float | None]:
    """(fraction of all steps done, seconds left at the running runs' current speed)."""
    total = sum(r.total_steps for r in records)
    done = sum(min(r.step, r.total_steps) for r in records)
    running = [r for r in records if r.status == "running" and r.img_per_s]
    rate = sum(r.img_per_s / r.global_batch for r in running)  # steps per second
    left = sum(max(0, r.total_steps - r.step) for r in records if r.status in ("running", "queued"))
    return (done / total if total else None), (left / rate if rate else None)
