"""PCam's two labels and their names: the one mapping between them that every module uses.

Label 1 means tumour tissue in the patch's centre 32x32 px region (Veeling et al. 2018)."""

from __future__ import annotations

from core.errors import BadInput

LABEL_NAMES = ("non_cancerous", "cancerous")  # index = PCam label
LABELS = {name: label for label, name in enumerate(LABEL_NAMES)}
CLASSES = ("cancerous", "non_cancerous", "both")  # what a run trains on
CLASS_LABELS = {"cancerous": (1,), "non_cancerous": (0,), "both": (0, 1)}


def label_of(name: str, where: str = "--class") -> int:
    """A class name (or the label's digit) -> its PCam label."""
    text = str(name).strip()
    if text in LABELS:
        return LABELS[text]
    if text in ("0", "1"):
        return int(text)
    raise BadInput(f"{where}: unknown class {name!r} ({' or '.join(reversed(LABEL_NAMES))})")
