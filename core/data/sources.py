"""Readers for the two real layouts. A source is one split: labels in memory, pixels read on demand
in contiguous index ranges (a PCam train file is 7.2 GB and is never loaded whole)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import h5py
import imageio.v3 as iio
import numpy as np

from core.errors import BadInput, WorkFailed
from core.labels import CLASS_LABELS

PCAM_SPLITS = ("train", "valid", "test")
PATCH_SHAPE = (96, 96, 3)
SYNTHETIC_MANIFEST = "synthetic.json"  # beside the h5 files of a set a run drew (core.synthetic)
PATCH_SIDES = (32, 64, 96)  # PCam's 96 px, or a synthetic set's at a training resolution (core.synthetic)
# PCam label 1 = tumour tissue in the centre 32x32 region
KAGGLE_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def pcam_paths(root: Path, split: str) -> tuple[Path, Path]:
    stem = f"camelyonpatch_level_2_split_{split}"
    return root / f"{stem}_x.h5", root / f"{stem}_y.h5"


def detect_layout(path: str | Path) -> str:
    """'pcam' for a folder of camelyonpatch_*.h5 files (or a synthetic set being drawn), 'kaggle' for
    train/ + labels CSV."""
    root = Path(path)
    if not root.exists():
        raise BadInput(f"{root}: data path does not exist")
    if not root.is_dir():
        raise BadInput(f"{root}: data path is not a directory")
    if any(root.glob("camelyonpatch_level_2_split_*_x.h5")) or (root / SYNTHETIC_MANIFEST).exists():
        return "pcam"
    if (root / "train").is_dir() and find_labels_csv(root) is not None:
        return "kaggle"
    raise BadInput(
        f"{root}: no dataset found (expected camelyonpatch_level_2_split_*_x.h5 files, "
        "or train/ with a labels CSV)"
    )


class PatchSource:
    """One split of a dataset: `labels` (N,) uint8 and `read(start, end)` -> (n, S, S, 3) uint8, S
    being `patch_size` (96 but for synthetic sets)."""

    name: str
    labels: np.ndarray
    patch_size: int = 96

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, start: int, end: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ArraySource(PatchSource):
    """Patches held in memory (a run's samples, a chosen subset of real patches) as a source."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str):
        self.images, self.labels, self.name = images, np.asarray(labels, np.uint8), name
        self.patch_size = images.shape[1]

    def read(self, start: int, end: int) -> np.ndarray:
        return self.images[start:end]


class UnreadablePatches(WorkFailed):
    """A split's image file cannot give back some of its patches (a corrupt or truncated h5)."""


class PCamSplit(PatchSource):
    """`camelyonpatch_level_2_split_{split}_{x,y}.h5`: dataset x (N,96,96,3) uint8, y (N,1,1,1) uint8
    (x (N,S,S,3) in a synthetic set drawn at a smaller resolution S)."""

    def __init__(self, root: Path, split: str):
        x_path, y_path = pcam_paths(root, split)
        self.x_path = x_path
        self.name = f"{root}:{split}"
        for p in (x_path, y_path):
            if not p.exists():
                raise BadInput(f"{p}: missing file for split {split!r}")
        self._xf = _open_h5(x_path)
        with _open_h5(y_path) as yf:
            y = _dataset(yf, "y", y_path)
            if y.dtype != np.uint8 or y.ndim not in (1, 4) or (y.ndim == 4 and y.shape[1:] != (1, 1, 1)):
                raise BadInput(f"{y_path}: dataset 'y' must be (N,1,1,1) uint8, got {y.shape} {y.dtype}")
            self.labels = np.asarray(y[...]).reshape(-1)
        self._x = _dataset(self._xf, "x", x_path)
        shape = self._x.shape[1:]
        if self._x.dtype != np.uint8 or len(shape) != 3 or shape[0] != shape[1] or shape[0] not in PATCH_SIDES \
                or shape[2] != 3:
            raise BadInput(f"{x_path}: dataset 'x' must be (N,96,96,3) uint8, got {self._x.shape} {self._x.dtype}")
        self.patch_size = shape[0]
        if len(self._x) != len(self.labels):
            raise BadInput(f"{x_path}: {len(self._x)} images but {y_path.name} has {len(self.labels)} labels")
        bad = np.setdiff1d(np.unique(self.labels), [0, 1])
        if bad.size:
            raise BadInput(f"{y_path}: labels must be 0 or 1, found {int(bad[0])}")

    def read(self, start: int, end: int) -> np.ndarray:
        try:
            return self._x[start:end]
        except OSError as exc:  # HDF5 says only "Can't read data": name the file and the patches
            where = f"patch {start}" if end - start == 1 else f"patches {start}..{end - 1}"
            raise UnreadablePatches(f"{self.x_path}: cannot read {where} ({str(exc).splitlines()[0]})") from None

    def close(self) -> None:
        self._xf.close()


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise BadInput(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None


def _dataset(f: h5py.File, key: str, path: Path):
    if key not in f:
        raise BadInput(f"{path}: no dataset {key!r} (found: {', '.join(f.keys()) or 'none'})")
    return f[key]


def find_labels_csv(root: Path) -> Path | None:
    preferred = root / "train_labels.csv"
    if preferred.exists():
        return preferred
    candidates = sorted(root.glob("*.csv"))
    return candidates[0] if candidates else None


def read_kaggle_labels(root: Path) -> tuple[list[str], np.ndarray]:
    """(ids, labels) from the labels CSV; an extra leading index column is tolerated."""
    path = find_labels_csv(root)
    if path is None:
        raise BadInput(f"{root}: no labels CSV (expected train_labels.csv)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM is not part of the header
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                       "save it as UTF-8") from None
    except csv.Error as exc:
        raise BadInput(f"{path}: not a readable CSV ({exc})") from None
    if not rows:
        raise BadInput(f"{path}: empty labels CSV")
    header = [h.strip().lower() for h in rows[0]]
    if "id" not in header or "label" not in header:
        raise BadInput(f"{path}: header must name columns 'id' and 'label', got {rows[0]}")
    id_col, label_col = header.index("id"), header.index("label")
    ids, labels, seen = [], [], set()
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            pid, label = row[id_col].strip(), row[label_col].strip()
        except IndexError:
            raise BadInput(f"{path}:{line_no}: expected {len(header)} columns, got {len(row)}") from None
        if not is_plain_file_name(pid):
            raise BadInput(f"{path}:{line_no}: id {pid!r} is not a plain file name")
        if label not in ("0", "1"):
            raise BadInput(f"{path}:{line_no}: label must be 0 or 1, got {label!r} for id {pid}")
        if pid in seen:
            raise BadInput(f"{path}:{line_no}: duplicate id {pid}")
        seen.add(pid)
        ids.append(pid)
        labels.append(int(label))
    if not ids:
        raise BadInput(f"{path}: no rows")
    missing = [pid for pid in ids if not (root / "train" / f"{pid}.tif").exists()]
    if missing:
        raise BadInput(
            f"{path}: {len(missing)} ids have no image in {root / 'train'}, e.g. {missing[0]}.tif"
        )
    return ids, np.asarray(labels, dtype=np.uint8)


def is_plain_file_name(name: str) -> bool:
    """A name that stays inside its folder: no separators, not '.' or '..', no control characters."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and all(ch.isprintable() for ch in name))


def check_patch(image: np.ndarray, path: Path) -> np.ndarray:
    if image.shape != PATCH_SHAPE or image.dtype != np.uint8:
        raise BadInput(f"{path}: expected a 96x96 RGB uint8 image, got {image.shape} {image.dtype}")
    return image


def read_patch(path: Path) -> np.ndarray:
    """One Kaggle tif as (96, 96, 3) uint8; BadInput naming the file when it is anything else."""
    try:
        image = np.asarray(iio.imread(path))
    except Exception as exc:  # the image plugins raise many kinds for junk bytes
        raise BadInput(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    if image.size == 0:  # tifffile reads some junk as an empty array
        raise BadInput(f"{path}: not a readable image (no pixels)")
    return check_patch(image, path)


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha1()
    for p in paths:
        st = p.stat()
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def verify_kaggle_images(root: Path, ids: list[str], cache: Path | None = None) -> list[str]:
    """Decode every image of `ids` and return one problem line per bad file (empty when all are
    96x96 RGB uint8). With `cache`, a folder whose files are unchanged since they last passed
    (same names, sizes and modification times) is not decoded again."""
    paths = [root / "train" / f"{pid}.tif" for pid in ids]

    def problem(path: Path) -> str | None:
        try:
            read_patch(path)
        except BadInput as exc:
            return str(exc)
        return None

    def decode_all() -> list[str]:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return [p for p in pool.map(problem, paths, chunksize=256) if p]

    return verified_once(cache, "kaggle", root, paths, decode_all)


def verified_once(cache: Path | None, kind: str, root: Path, paths: list[Path],
                  verify: Callable[[], list[str]]) -> list[str]:
    """`verify()`'s problem lines, except that with `cache` files unchanged since they last passed
    (same names, sizes and modification times) are not verified again."""
    stamp = cache / (f"{kind}-verified-" + hashlib.sha1(str(root.resolve()).encode()).hexdigest()) if cache else None
    fingerprint = _fingerprint(paths)
    if stamp is not None and stamp.exists() and stamp.read_text() == fingerprint:
        return []
    problems = verify()
    if not problems and stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
    return problems


def kaggle_split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """A seeded train/valid/test partition by id. It depends on the set of ids only (never on
    CSV order), and each id lands in exactly one split."""
    ordered = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n = len(ordered)
    n_train = int(round(n * KAGGLE_FRACTIONS["train"]))
    n_valid = int(round(n * KAGGLE_FRACTIONS["valid"]))
    cuts = {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid], "test": perm[n_train + n_valid:]}
    return {name: sorted(ordered[i] for i in idx) for name, idx in cuts.items()}


class KaggleSplit(PatchSource):
    """The Kaggle layout: train/<id>.tif (96x96 RGB) with an id,label CSV, split by seeded id hash."""

    def __init__(self, root: Path, split: str, split_seed: int = 0, split_file: Path | None = None):
        ids, labels = read_kaggle_labels(root)
        label_of = dict(zip(ids, labels.tolist()))
        if split_file is not None and split_file.exists():
            chosen = json.loads(split_file.read_text())[split]
            unknown = [i for i in chosen if i not in label_of]
            if unknown:
                raise BadInput(f"{split_file}: id {unknown[0]} is not in the labels CSV")
        else:
            chosen = kaggle_split_ids(ids, split_seed)[split]
        self.root, self.name, self.ids = root, f"{root}:{split}", chosen
        self.labels = np.asarray([label_of[i] for i in chosen], dtype=np.uint8)

    def read(self, start: int, end: int) -> np.ndarray:
        images = [read_patch(self.root / "train" / f"{pid}.tif") for pid in self.ids[start:end]]
        return np.stack(images) if images else np.zeros((0, *PATCH_SHAPE), np.uint8)


def open_split(path: str | Path, split: str, split_seed: int = 0, split_file: Path | None = None) -> PatchSource:
    """The split `split` of the dataset at `path`, whichever layout it is in."""
    root = Path(path)
    if detect_layout(root) == "pcam":
        return PCamSplit(root, split)
    return KaggleSplit(root, split, split_seed, split_file)


def check_resolution(source: PatchSource, image_size: int) -> None:
    """BadInput when the split's patches are smaller than the resolution asked for: a synthetic
    set is never upsampled into detail it does not have."""
    if image_size > source.patch_size:
        raise BadInput(f"{source.name}: its patches are {source.patch_size} px, smaller than --image-size "
                       f"{image_size}; train at {source.patch_size} px or less")


def selected_indices(source: PatchSource, classes: str) -> np.ndarray:
    """Indices of the patches whose label belongs to `classes`; empty selections are an error."""
    idx = np.flatnonzero(np.isin(source.labels, CLASS_LABELS[classes]))
    if idx.size == 0:
        raise BadInput(f"{source.name}: no patches of class {classes!r}")
    return idx
