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

The entities are not dataclasses: a dataclass compiles its methods anew each time its module is
imported (about 1 ms per class here, Python 3.11), which made these nine 2% of the instructions
of `runs list --json` (BENCHMARKS.md, issue 19). `Entity`'s methods are compiled once, into the
.pyc, and serve every entity: its fields are its annotations, in order.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from types import MappingProxyType
from typing import Any, Mapping


class _Fields(type):
    """Makes a class's annotated names its `__slots__`: the fields, in the order written."""

    def __new__(mcls, name: str, bases: tuple, namespace: dict):
        namespace["__slots__"] = tuple(namespace.get("__annotations__", {}))
        return super().__new__(mcls, name, bases, namespace)


class Entity(metaclass=_Fields):
    """A frozen record of one stored row, built from its fields' values in order."""

    def __init__(self, *values: Any) -> None:
        if len(values) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values "
                            f"({', '.join(self.__slots__)}), got {len(values)}")
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self, **changes: Any):
        """A copy with some fields changed (dataclasses.replace for entities)."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        return type(self)(*(changes.get(name, getattr(self, name)) for name in self.__slots__))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.values() == other.values()

    def __hash__(self) -> int:
        return hash((type(self), *(v for v in self.values() if not isinstance(v, MappingProxyType))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"

    def __reduce__(self):
        return type(self), self.values()


class Sweep(Entity):
    id: int
    name: str
    spec: Mapping[str, Any]
    created_at: float


class Run(Entity):
    id: int
    name: str
    status: str
    config: Mapping[str, Any]
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
    executor_spec: Mapping[str, Any] | None  # a cluster run's placement, for resubmission
    exit_reason: str | None
    step: int
    total_steps: int
    checkpoint_path: str | None
    sweep_id: int | None
    parent_id: int | None


class Evaluation(Entity):
    id: int
    run_id: int
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int | None
    split: str | None
    seed: int | None
    details: Mapping[str, Any]
    created_at: float
    checkpoint_step: int | None
    sampler: str | None
    steps: int | None
    guidance: float | None
    classifier_id: int | None  # the feature network of kid/fid/class


class Classifier(Entity):
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


class EvalJob(Entity):
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


class Artifact(Entity):
    id: int
    run_id: int
    kind: str
    path: str
    step: int | None
    created_at: float


class Note(Entity):
    id: int
    run_id: int
    text: str
    created_at: float


class StatusEvent(Entity):
    id: int
    run_id: int
    status: str
    reason: str | None
    at: float


class BlindTest(Entity):
    """One person's blind test of a run (mode 'class' or 'real-vs-generated'; `answers` holds the trials)."""

    id: int
    run_id: int
    mode: str
    n: int
    correct: int
    p_value: float
    answers: Mapping[str, Any]
    created_at: float
