"""The offline demo dataset, in the PCam h5 layout.

DEMO DATA, not PCam: 96x96 crops of the immunohistochemistry (IHC) slide image that scikit-image
ships (`skimage.data.immunohistochemistry`), labelled 1 when the brown DAB stain in the crop's centre
32x32 is denser than in the median crop of the same split (a stand-in for "tumour in the centre", not a
diagnosis), plus the 15 real, truly labelled PCam/Kaggle patches shipped in core/assets (CC0).
Crops for train, valid and test come from disjoint vertical strips of the slide image.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import h5py
import numpy as np
from skimage import data as skdata
from skimage.color import rgb2hed

from core.data.sources import pcam_paths

DEMO_COUNTS = {"train": 1024, "valid": 128, "test": 128}
# column ranges of the 512-px slide image each split crops from (disjoint)
DEMO_STRIPS = {"train": (0, 320), "valid": (320, 416), "test": (416, 512)}
DESCRIPTION = (
    "ddpm-tui DEMO dataset: crops of scikit-image's IHC slide image with a DAB-stain proxy label "
    "(1 = DAB-rich centre), plus 15 real labelled PCam patches in train. Not PCam; for trying the tool."
)


def real_patches() -> tuple[np.ndarray, np.ndarray]:
    """The 15 real labelled patches shipped with the package: x (15,96,96,3), y (15,)."""
    assets = resources.files("core") / "assets"
    with resources.as_file(assets / "pcam_real_x.h5") as xp, resources.as_file(assets / "pcam_real_y.h5") as yp:
        with h5py.File(xp, "r") as fx, h5py.File(yp, "r") as fy:
            return fx["x"][...], fy["y"][...].reshape(-1)


def dab_centre_fraction(crops: np.ndarray) -> np.ndarray:
    """Mean DAB (brown) stain density in each crop's centre 32x32, from colour deconvolution."""
    centre = crops[:, 32:64, 32:64].astype(np.float64) / 255.0
    return np.array([rgb2hed(c)[..., 2].mean() for c in centre])


def demo_crops(split: str, count: int, seed: int) -> np.ndarray:
    slide = skdata.immunohistochemistry()
    lo, hi = DEMO_STRIPS[split]
    rng = np.random.default_rng([seed, list(DEMO_STRIPS).index(split)])
    ys = rng.integers(0, slide.shape[0] - 96 + 1, size=count)
    xs = rng.integers(lo, hi - 96 + 1, size=count)
    return np.stack([slide[y:y + 96, x:x + 96] for y, x in zip(ys, xs)])


def write_demo_dataset(out: str | Path, seed: int = 0) -> dict[str, int]:
    """Write the demo dataset to `out`; returns the number of patches per split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crops = {split: demo_crops(split, n, seed) for split, n in DEMO_COUNTS.items()}
    dab = {split: dab_centre_fraction(c) for split, c in crops.items()}
    real_x, real_y = real_patches()
    counts = {}
    for split in DEMO_COUNTS:
        x = crops[split]
        y = (dab[split] > np.median(dab[split])).astype(np.uint8)
        if split == "train":
            x, y = np.concatenate([x, real_x]), np.concatenate([y, real_y])
        x_path, y_path = pcam_paths(out, split)
        _write_h5(x_path, "x", x, chunks=(1, 96, 96, 3))
        _write_h5(y_path, "y", y.reshape(-1, 1, 1, 1), chunks=None)
        counts[split] = len(x)
    (out / "README.txt").write_text(DESCRIPTION + "\n")
    return counts


def _write_h5(path: Path, key: str, array: np.ndarray, chunks) -> None:
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset(key, data=array, chunks=chunks, compression="gzip" if chunks else None)
        f.attrs["description"] = DESCRIPTION
    tmp.replace(path)


def demo_dataset_path(cache_dir: str | Path) -> Path:
    """The demo dataset under `cache_dir`, built on first use."""
    path = Path(cache_dir) / "demo-pcam"
    if not all(pcam_paths(path, s)[1].exists() for s in DEMO_COUNTS):
        write_demo_dataset(path)
    return path
