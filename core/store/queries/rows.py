"""From a session's ORM rows to the store's frozen entities (core.store.entities)."""

from __future__ import annotations

import copy
import functools
from types import MappingProxyType
from typing import Any, Iterable, TypeVar

from sqlalchemy import Select, select

Entity = TypeVar("Entity")


def _read_only(value: Any) -> Any:
    """A column's value as an entity holds it: a JSON object as a read-only view, the rest as it is."""
    return MappingProxyType(value) if isinstance(value, dict) else value


def to_entity(row: Any, entity_type: type[Entity]) -> Entity:
    """The frozen copy of `row`, read while its session is open. The entity takes over the row's
    JSON values: a row read from the database holds values nothing else refers to, and a row made
    here holds copies of its caller's (`own`)."""
    return entity_type(*[_read_only(getattr(row, name)) for name in entity_type.__slots__])


def entity_by_id(store, model: type, entity_type: type[Entity], key: int, missing: Exception) -> Entity:
    """The entity of `model`'s row with primary key `key`; raises `missing` when there is none."""
    with store.session() as s:
        row = s.get(model, key)
        if row is None:
            raise missing
        return to_entity(row, entity_type)


@functools.cache
def _columns(model: type, entity_type: type) -> tuple:
    return tuple(getattr(model, name) for name in entity_type.__slots__)


def select_entities(model: type, entity_type: type) -> Select:
    """A SELECT of `model`'s table's columns in the order of `entity_type`'s fields, for
    `entities_from`: plain rows skip building ORM objects, which halves the time of a list of
    1,000 runs (`runs list --json`, the runs table)."""
    return select(*_columns(model, entity_type))


def entities_from(rows: Iterable[tuple], entity_type: type[Entity]) -> list[Entity]:
    """The entities of the rows of a `select_entities` query (each row's JSON values are fresh)."""
    return [entity_type(*map(_read_only, row)) for row in rows]


def own(value: Any) -> Any:
    """A deep copy of a caller's JSON value for a new row, so the entity made from the row shares
    nothing with the caller, who may change its dict afterwards."""
    return copy.deepcopy(value)
