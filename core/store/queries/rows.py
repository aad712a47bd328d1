"""From a session's ORM rows to the store's frozen entities (core.store.entities)."""

from __future__ import annotations

import copy
import functools
from dataclasses import fields
from types import MappingProxyType
from typing import Any, TypeVar

Entity = TypeVar("Entity")


@functools.cache
def _field_names(entity_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(entity_type))


def _read_only(value: Any) -> Any:
    """A column's value as an entity holds it: a JSON object as a read-only view, the rest as it is."""
    return MappingProxyType(value) if isinstance(value, dict) else value


def to_entity(row: Any, entity_type: type[Entity]) -> Entity:
    """The frozen copy of `row`, read while its session is open. The entity takes over the row's
    JSON values: a row read from the database holds values nothing else refers to, and a row made
    here holds copies of its caller's (`own`)."""
    return entity_type(*[_read_only(getattr(row, name)) for name in _field_names(entity_type)])


def own(value: Any) -> Any:
    """A deep copy of a caller's JSON value for a new row, so the entity made from the row shares
    nothing with the caller, who may change its dict afterwards."""
    return copy.deepcopy(value)
