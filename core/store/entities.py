"""What the store hands out: frozen copies of its rows, never SQLAlchemy objects.

A query builds these inside its session (core.store.queries), so a caller can keep one as long as
it likes, pass it between threads and compare it, without a session, lazy loads or a flush that
writes back an attribute set by mistake (assignment raises FrozenInstanceError). The attribute
names are those of the tables' columns (core.store.models).

JSON columns (a run's config and executor_spec, a sweep's spec, an evaluation's details, a blind
test's answers) come as read-only mappings (types.MappingProxyType) over the entity's own copy of
the stored value: `entity.config["lr"] = 1` raises TypeError, and nothing done to an entity reaches
the store or another entity. What lies inside (a list of per-image values, say) is plain JSON data,
so equality with lists and dicts keeps working; `dict(run.config)` gives a mutable copy, which is
what json.dumps needs (run_record and evaluation_record already give plain dicts). Those fields are
left out of the hash, so an entity can still be a set member or a dict key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class Sweep:
    id: int
    name: str
    spec: Mapping[str, Any] = field(hash=False)
    created_at: float


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    name: str
    status: str
    config: Mapping[str, Any] = field(hash=False)
    run_dir: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    host: str | None
    pid: int | None
    pgid: int | None
    pid_started: float | None  # with host and pid it names one process (see models.Run)
    heartbeat_at: float | None
    executor: str
    external_id: str | None
    executor_spec: Mapping[str, Any] | None = field(hash=False)  # a cluster run's placement, for resubmission
    exit_reason: str | None
    step: int
    total_steps: int
    checkpoint_path: str | None
    sweep_id: int | None
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    id: int
    run_id: int
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int | None
    split: str | None
    seed: int | None
    details: Mapping[str, Any] = field(hash=False)
    created_at: float
    checkpoint_step: int | None
    sampler: str | None
    steps: int | None
    guidance: float | None
    classifier_id: int | None  # the feature network of kid/fid/class


@dataclass(frozen=True, slots=True)
class Classifier:
    """A PCam classifier trained by `ddpm-tui classifier train`: KID/FID features and class fidelity."""

    id: int
    data: str  # the --data value it was trained on
    image_size: int
    preprocess: str
    steps: int
    accuracy: float
    auc: float | None
    n_eval: int
    split: str
    path: str
    created_at: float


@dataclass(frozen=True, slots=True)
class EvalJob:
    """An evaluation waiting for (or run by) the worker: queued -> running -> finished | failed."""

    id: int
    run_id: int
    metrics: str
    n: int
    nll_timesteps: str
    status: str
    reason: str | None
    host: str | None
    pid: int | None
    created_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class Artifact:
    id: int
    run_id: int
    kind: str
    path: str
    step: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    run_id: int
    text: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StatusEvent:
    id: int
    run_id: int
    status: str
    reason: str | None
    at: float


@dataclass(frozen=True, slots=True)
class BlindTest:
    """One person's blind test of a run (mode 'class' or 'real-vs-generated'; `answers` holds the trials)."""

    id: int
    run_id: int
    mode: str
    n: int
    correct: int
    p_value: float
    answers: Mapping[str, Any] = field(hash=False)
    created_at: float
