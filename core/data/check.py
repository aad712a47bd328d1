"""`data check`: what a dataset folder holds, split by split, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.sources import (
    PCAM_SPLITS,
    PatchSource,
    UnreadablePatches,
    detect_layout,
    open_split,
    pcam_paths,
    read_kaggle_labels,
    verified_once,
    verify_kaggle_images,
)
from core.errors import BadInput
from core.labels import LABEL_NAMES


READ_BLOCK = 1024  # patches per read while checking a PCam split: about 28 MB at a time


def image_problems(root: Path, cache: Path | None = None) -> list[str]:
    """One line per image that cannot be trained on. Kaggle tifs are decoded one by one; a PCam
    split's shape and dtype hold for all its patches, and every chunk of its images is read (a
    file corrupted in the middle reads fine at both ends). With `cache`, files unchanged since
    they last passed are not read again."""
    root = Path(root)
    if detect_layout(root) == "kaggle":
        ids, _ = read_kaggle_labels(root)
        return verify_kaggle_images(root, ids, cache)
    problems = []
    for split in PCAM_SPLITS:
        x_path = pcam_paths(root, split)[0]
        if not x_path.exists():
            continue
        try:
            source = open_split(root, split)
        except BadInput as exc:
            problems.append(str(exc))
            continue
        try:
            problems += verified_once(cache, f"pcam-{split}", root, [x_path], lambda: unreadable_patches(source))
        finally:
            source.close()
    return problems


def unreadable_patches(source: PatchSource) -> list[str]:
    """The problem line of the first patch the split's file cannot give back (naming the file and
    the index), reading it a block at a time (memory bounded by one block); [] when all read."""
    for start in range(0, len(source), READ_BLOCK):
        end = min(start + READ_BLOCK, len(source))
        try:
            source.read(start, end)
        except UnreadablePatches as block_error:
            for index in range(start, end):  # which patch: a read of a single one names it
                try:
                    source.read(index, index + 1)
                except UnreadablePatches as exc:
                    return [str(exc)]
            return [str(block_error)]
    return []


def check_dataset(path: str | Path, split_seed: int = 0, cache: Path | None = None) -> dict:
    """{'path', 'layout', 'splits': {split: {'n', 'cancerous', 'non_cancerous'}}, 'problems': [...]},
    and 'synthetic' (core.synthetic.synthetic_summary) for a set a run drew.

    Raises BadInput when the path is not a dataset at all; per-split and per-image problems are
    collected.
    """
    from core.synthetic import read_manifest, synthetic_summary

    root = Path(path)
    layout = detect_layout(root)
    report = {"path": str(root), "layout": layout, "splits": {}, "problems": []}
    manifest = read_manifest(root) if layout == "pcam" else None
    if manifest is not None:  # a synthetic set has a train split only: it is scored on its run's real data
        report["synthetic"] = synthetic_summary(manifest)
        if not manifest.get("complete"):
            report["problems"].append(f"{root}: an unfinished synthetic set (run `ddpm-tui synth` again to finish it)")
    for split in PCAM_SPLITS:
        if layout == "pcam" and not pcam_paths(root, split)[0].exists():
            if manifest is None or split == "train":
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
    if report["splits"] and not any(counts["n"] for counts in report["splits"].values()):
        report["problems"].append(f"{root}: every split is empty (no patches to train or evaluate on)")
    if layout == "pcam" or not report["problems"]:
        report["problems"] += [p for p in image_problems(root, cache) if p not in report["problems"]]
    return report
