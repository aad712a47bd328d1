"""`data check`: what a dataset folder holds, split by split, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.sources import (
    PCAM_SPLITS,
    detect_layout,
    open_split,
    pcam_paths,
    read_kaggle_labels,
    verify_kaggle_images,
)
from core.errors import BadInput
from core.labels import LABEL_NAMES


def image_problems(root: Path, cache: Path | None = None) -> list[str]:
    """One line per image that cannot be trained on. Kaggle tifs are decoded one by one (an
    unchanged folder only once, with `cache`); a PCam split's shape and dtype hold for all its
    patches, and reading its first and last patch finds a truncated file."""
    root = Path(root)
    if detect_layout(root) == "kaggle":
        ids, _ = read_kaggle_labels(root)
        return verify_kaggle_images(root, ids, cache)
    problems = []
    for split in PCAM_SPLITS:
        if not pcam_paths(root, split)[0].exists():
            continue
        try:
            source = open_split(root, split)
        except BadInput as exc:
            problems.append(str(exc))
            continue
        try:
            if len(source):
                source.read(0, 1)
                source.read(len(source) - 1, len(source))
        except (OSError, BadInput) as exc:
            problems.append(f"{pcam_paths(root, split)[0]}: cannot read its patches ({str(exc).splitlines()[0]})")
        finally:
            source.close()
    return problems


def check_dataset(path: str | Path, split_seed: int = 0, cache: Path | None = None) -> dict:
    """{'path', 'layout', 'splits': {split: {'n', 'cancerous', 'non_cancerous'}}, 'problems': [...]}.

    Raises BadInput when the path is not a dataset at all; per-split and per-image problems are
    collected.
    """
    root = Path(path)
    layout = detect_layout(root)
    report = {"path": str(root), "layout": layout, "splits": {}, "problems": []}
    for split in PCAM_SPLITS:
        if layout == "pcam" and not pcam_paths(root, split)[0].exists():
            report["problems"].append(f"{pcam_paths(root, split)[0]}: split {split!r} missing")
            continue
        try:
            source = open_split(root, split, split_seed)
        except BadInput as exc:
            if str(exc) not in report["problems"]:  # a labels CSV's problem is every split's
                report["problems"].append(str(exc))
            continue
        report["splits"][split] = {
            "n": len(source),
            **{name: int(np.sum(source.labels == label)) for label, name in enumerate(LABEL_NAMES)},
        }
        source.close()
    if layout == "pcam" or not report["problems"]:
        report["problems"] += [p for p in image_problems(root, cache) if p not in report["problems"]]
    return report
