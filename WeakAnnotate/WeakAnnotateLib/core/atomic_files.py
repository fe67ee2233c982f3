"""Writing files so that a failure never leaves a partial one behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

# Multi-part suffixes that writers recognise by the full ending.
_COMPOUND = (".nii.gz", ".seg.nrrd", ".mrk.json", ".seg.nii.gz")


def full_suffix(path: str | Path) -> str:
    name = Path(path).name.lower()
    for s in _COMPOUND:
        if name.endswith(s):
            return s
    return Path(path).suffix.lower()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it into place only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"Output {path} is a folder; give a file name.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Output folder {parent} does not exist; create it first.")
    tmp = parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial{full_suffix(path)}"
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"writer produced no file for {path}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
