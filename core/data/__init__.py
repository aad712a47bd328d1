"""Patch datasets: PCam h5 pairs, the Kaggle folder layout, the offline demo set, and the stream
that feeds the trainer."""

from core.data.sources import (CLASS_LABELS, PCAM_SPLITS, PatchSource, detect_layout, open_split,
                               selected_indices)
from core.data.locate import cache_dir, resolve_data
from core.data.stream import PatchStream
from core.data.transforms import to_model_input

__all__ = ["CLASS_LABELS", "PCAM_SPLITS", "PatchSource", "PatchStream", "cache_dir", "detect_layout", "open_split",
           "resolve_data", "selected_indices", "to_model_input"]
