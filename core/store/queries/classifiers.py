"""The PCam classifiers that give KID/FID their features and judge class fidelity."""

from __future__ import annotations

from sqlalchemy import delete, update

from core.errors import BadInput
from core.store import entities
from core.store.db import Store, retrying
from core.store.models import Classifier
from core.store.queries.clock import now
from core.store.queries.rows import entities_from, entity_by_id, select_entities, to_entity


@retrying
def add_classifier(store: Store, **fields) -> entities.Classifier:
    with store.session() as s, s.begin():
        row = Classifier(created_at=now(), **fields)
        s.add(row)
        s.flush()
        return to_entity(row, entities.Classifier)


@retrying
def update_classifier(store: Store, classifier_id: int, **fields) -> None:
    with store.session() as s, s.begin():
        s.execute(update(Classifier).where(Classifier.id == classifier_id).values(**fields))


@retrying
def delete_classifier(store: Store, classifier_id: int) -> None:
    with store.session() as s, s.begin():
        s.execute(delete(Classifier).where(Classifier.id == classifier_id))


def classifiers(store: Store) -> list[entities.Classifier]:
    with store.session() as s:
        stmt = select_entities(Classifier, entities.Classifier).order_by(Classifier.id)
        return entities_from(s.execute(stmt), entities.Classifier)


def get_classifier(store: Store, classifier_id: int) -> entities.Classifier:
    return entity_by_id(store, Classifier, entities.Classifier, int(classifier_id),
                        BadInput(f"--classifier: no classifier with id {classifier_id} (ddpm-tui classifier list)"))
