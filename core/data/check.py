"""`data check`: what a dataset folder holds, split by split, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.sources import PCAM_SPLITS, detect_layout, open_split, pcam_paths
from core.errors import BadInput


def check_dataset(path: str | Path, split_seed: int = 0) -> dict:
    """{'path', 'layout', 'splits': {split: {'n', 'cancerous', 'non_cancerous'}}, 'problems': [...]}.

    Raises BadInput when the path is not a dataset at all; per-split problems are collected.
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
            report["problems"].append(str(exc))
            continue
        try:
            if len(source):
                source.read(0, 1)  # shape and dtype of the pixels themselves
            report["splits"][split] = {
                "n": len(source),
                "cancerous": int(np.sum(source.labels == 1)),
                "non_cancerous": int(np.sum(source.labels == 0)),
            }
        except BadInput as exc:
            report["problems"].append(str(exc))
        finally:
            source.close()
    return report
