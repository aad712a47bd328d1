"""A run's patches as the run sees them: the splits of its data as it froze them (its split.json),
its classes, at its resolution and preprocessing (no augmentation), as uint8 (n, S, S, 3) images.
What evaluation compares samples with, read through here rather than by each metric."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core.config import TrainConfig
from core.data.locate import resolve_data
from core.data.sources import CLASS_LABELS, open_split
from core.data.transforms import to_model_input, to_uint8
from core.run_dir import RunDir


def run_split_file(run_dir: Path | str | None) -> Path | None:
    """The run's frozen split (split.json in its directory), or None when it has none."""
    path = RunDir(run_dir).split if run_dir else None
    return path if path is not None and path.exists() else None


def open_run_split(cfg: TrainConfig, run_dir: Path | str | None, split: str):
    """One split of the run's data as the run split it; the caller closes it."""
    return open_split(resolve_data(cfg.data), split, split_file=run_split_file(run_dir))


def prepare(images: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Raw uint8 patches as the run sees them: its crop or resize, back to uint8."""
    return to_uint8(to_model_input(images, cfg.image_size, cfg.preprocess, "cpu"))


def split_labels(cfg: TrainConfig, run_dir: Path | str | None, split: str) -> np.ndarray:
    """The labels of every patch of a split (all classes)."""
    source = open_run_split(cfg, run_dir, split)
    try:
        return np.asarray(source.labels)
    finally:
        source.close()


def count_of_classes(cfg: TrainConfig, run_dir: Path | str | None, split: str) -> int:
    """How many patches of the run's classes a split holds."""
    return int(np.isin(split_labels(cfg, run_dir, split), CLASS_LABELS[cfg.classes]).sum())


def read_patches(cfg: TrainConfig, run_dir: Path | str | None, split: str, indices: np.ndarray) -> np.ndarray:
    """The patches at `indices` of a split, prepared."""
    source = open_run_split(cfg, run_dir, split)
    try:
        return prepare(np.stack([source.read(int(i), int(i) + 1)[0] for i in indices]), cfg)
    finally:
        source.close()


def random_patches(cfg: TrainConfig, run_dir: Path | str | None, split: str, n: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n patches of the run's classes from `split` (a seeded random subset), prepared, and their labels."""
    labels = split_labels(cfg, run_dir, split)
    candidates = np.flatnonzero(np.isin(labels, CLASS_LABELS[cfg.classes]))
    idx = np.sort(np.random.default_rng([seed, 7]).choice(candidates, n, replace=False))
    return read_patches(cfg, run_dir, split, idx), labels[idx].astype(np.int64)


def training_batches(cfg: TrainConfig, run_dir: Path | str | None,
                     block: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(training-split indices, prepared images) of the run's classes, block by block (contiguous
    reads: the PCam train split is 7.2 GB and is never loaded whole)."""
    source = open_run_split(cfg, run_dir, "train")
    try:
        wanted = np.isin(source.labels, CLASS_LABELS[cfg.classes])
        for start in range(0, len(source), block):
            end = min(start + block, len(source))
            keep = np.flatnonzero(wanted[start:end])
            if keep.size:
                yield keep + start, prepare(source.read(start, end)[keep], cfg)
    finally:
        source.close()


def training_patch_reader(cfg: TrainConfig, run_dir: Path | str | None) -> tuple[Callable[[int], np.ndarray], object]:
    """(read(i) -> the prepared training patch i, the open source to close when done)."""
    source = open_run_split(cfg, run_dir, "train")

    def read(i: int) -> np.ndarray:
        return prepare(source.read(i, i + 1), cfg)[0]

    return read, source
