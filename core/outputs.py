"""Files and folders written where the user says (--out, --gif, --figures, `data demo OUT`): checked
before the work that makes them starts, so minutes of sampling never end in an OSError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.errors import BadInput


def check_writable(path: str | Path, option: str, folder: bool = False) -> None:
    """BadInput naming `option` and `path` unless the file (or, with `folder`, the folder) at `path`
    can be written: the folder it goes in, or the nearest existing one above it (missing folders
    are made), must be a directory this process can create files in. That is probed by creating
    and removing a nameless file: permission bits say nothing for root or a read-only filesystem."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path}: is a file, not a directory")
    target = path if folder else path.parent
    existing = next(p for p in (target.absolute(), *target.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise BadInput(f"{option} {path}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot write in {existing} ({exc.strerror})") from None
