"""Ablation grids: any training option given as a list expands into one queued run per combination
and seed, all under one sweep id."""

from __future__ import annotations

import dataclasses
import itertools

from core.config import FIELD_TYPES, TrainConfig, build_config, flag
from core.errors import BadInput

# options whose single value already contains commas: their grid values are separated by ';'
LIST_VALUED = ("dim_mults", "attn_resolutions")
NOT_SWEEPABLE = ("tag", "name", "seed")


def _parse_scalar(name: str, text: str):
    kind = FIELD_TYPES[name]
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
    except (ValueError, KeyError):
        raise BadInput(f"--{flag(name)}: cannot read {text!r} as {kind}") from None
    return text


def split_values(name: str, raw: str) -> list:
    """'linear,cosine' -> ['linear', 'cosine']; for dim_mults and attn_resolutions, ';' separates."""
    sep = ";" if name in LIST_VALUED else ","
    parts = [p.strip() for p in str(raw).split(sep) if p.strip()]
    if not parts:
        raise BadInput(f"--{flag(name)}: no values in {raw!r}")
    return [_parse_scalar(name, p) for p in parts]


def grid_axes(raw_values: dict[str, str | None]) -> list[str]:
    """The options given with more than one value: the axes of the grid."""
    return sorted(name for name, raw in raw_values.items()
                  if raw is not None and name not in NOT_SWEEPABLE and FIELD_TYPES[name] != "list"
                  and len(split_values(name, raw)) > 1)


def expand_grid(raw_values: dict[str, str | None], seeds: int, config_file=None, base_name: str = "") -> list[TrainConfig]:
    """One validated TrainConfig per combination of the listed values and per seed."""
    if seeds < 1:
        raise BadInput(f"--seeds: must be at least 1, got {seeds}")
    fixed, axes = {}, {}
    for name, raw in raw_values.items():
        if raw is None:
            continue
        if name in NOT_SWEEPABLE or FIELD_TYPES[name] == "list":
            fixed[name] = raw if FIELD_TYPES[name] == "list" else _parse_scalar(name, raw)
            continue
        values = split_values(name, raw)
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            axes[name] = values
    base_seed = int(fixed.pop("seed", 0))
    configs = []
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo))
        for i in range(seeds):
            label = "-".join(str(v).replace(",", "x") for v in chosen.values()) or "run"
            name = f"{base_name or 'sweep'}-{label}-s{base_seed + i}"
            configs.append(build_config({**fixed, **chosen, "seed": base_seed + i, "name": name}, config_file))
    return configs


def configuration_key(cfg: TrainConfig | dict, axes: list[str]) -> tuple:
    """The values of the swept options (seed excluded): runs with equal keys are one configuration."""
    values = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    return tuple(values.get(a) for a in axes)
