"""The PCam classifier as a use case: check a `classifier train` request, train it
(core.evaluate.classifier), store its row and its weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.config import IMAGE_SIZES, INT_MAX, PREPROCESS, SEED_MAX
from core.data import resolve_data
from core.device import pick_device
from core.errors import BadInput
from core.evaluate.classifier import check_classifier_fits, save_classifier, train_classifier
from core.store import queries
from core.store.db import Store


@dataclass(frozen=True)
class ClassifierRequest:
    data: str
    data_root: Path
    image_size: int
    preprocess: str
    steps: int
    batch_size: int
    seed: int


def plan_classifier(data: str, image_size: int = 32, preprocess: str = "center-crop", steps: int = 600,
                    batch_size: int = 64, seed: int = 0, device: str = "auto") -> ClassifierRequest:
    """Check a `classifier train` request before anything is computed or stored, its memory on
    `device` included."""
    if image_size not in IMAGE_SIZES:
        raise BadInput(f"--image-size: unknown value {image_size} (choose from {', '.join(map(str, IMAGE_SIZES))})")
    if preprocess not in PREPROCESS:
        raise BadInput(f"--preprocess: unknown value {preprocess!r} (choose from {', '.join(PREPROCESS)})")
    for name, value in (("max-steps", steps), ("batch-size", batch_size)):
        if not 1 <= value <= INT_MAX:
            raise BadInput(f"--{name}: must be between 1 and {INT_MAX}, got {value}")
    if not 0 <= seed <= SEED_MAX:
        raise BadInput(f"--seed: must be in 0..{SEED_MAX}, got {seed}")
    check_classifier_fits(image_size, batch_size, pick_device(device))
    return ClassifierRequest(data, resolve_data(data), image_size, preprocess, steps, batch_size, seed)


def train_and_store_classifier(store: Store, runs_dir: Path, request: ClassifierRequest, device: str = "auto",
                               on_step: Callable[[int, float], None] | None = None) -> queries.Classifier:
    """Train a classifier (core.evaluate.classifier), store its row and its weights under
    <runs dir>/classifiers/<id>/classifier.pt."""
    from core.runner.run import prepare_runs_dir  # the runs dir's own checks; the trainer's module, loaded when used

    root = prepare_runs_dir(runs_dir)
    model, report = train_classifier(request.data_root, request.image_size, request.preprocess, request.steps,
                                     request.batch_size, seed=request.seed, device=pick_device(device), on_step=on_step)
    row = queries.add_classifier(store, data=request.data, image_size=request.image_size, preprocess=request.preprocess,
                                 steps=request.steps, accuracy=report.accuracy,
                                 auc=None if math.isnan(report.auc) else report.auc, n_eval=report.n,
                                 split=report.split, path="")
    path = root / "classifiers" / str(row.id) / "classifier.pt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        save_classifier(model.cpu(), path, {"id": row.id, "data": request.data, "image_size": request.image_size,
                                            "preprocess": request.preprocess}, report.trained_on)
    except BaseException:
        queries.delete_classifier(store, row.id)
        raise
    queries.update_classifier(store, row.id, path=str(path))
    return queries.get_classifier(store, row.id)
