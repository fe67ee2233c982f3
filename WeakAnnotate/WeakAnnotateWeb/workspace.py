"""The one folder the page may write to (and read annotations back from), and safe names inside it.

Names sent by the page (case ids, annotation names) are untrusted: they are reduced to a small character set
and every path is resolved (symbolic links included) and checked to stay inside the work folder before use.
"""

from __future__ import annotations

import re
from pathlib import Path

from WeakAnnotateLib.core.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME = 80


def safe_name(name: str, what: str = "name") -> str:
    """``name`` with anything but letters, digits, ``_ . -`` replaced by ``_``; no ``..``, no leading dot."""
    cleaned = re.sub(r"\.{2,}", "_", _UNSAFE.sub("_", str(name).strip()))
    cleaned = re.sub(r"_+", "_", cleaned).strip("._-")[:MAX_NAME]
    if not cleaned:
        raise InputError(f"The {what} {name!r} has no usable characters; use letters, digits, '_', '-' or '.'.")
    return cleaned


class Workspace:
    """Output folder ``root``: one sub-folder per case, files named ``<annotation name><suffix>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, case_id: str, name: str, suffix: str) -> Path:
        """The file for annotation ``name`` of ``case_id``; an :class:`InputError` if it would leave the folder."""
        candidate = (
            self.root / safe_name(case_id, "case id") / f"{safe_name(name, 'annotation name')}{suffix}"
        ).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise InputError(f"Refusing to use {candidate}: annotations are kept inside {self.root}.")
        return candidate

    def case_folder(self, case_id: str, *, create: bool = False) -> Path:
        """The case's folder inside the work folder (created on request), checked like :meth:`path`."""
        folder = (self.root / safe_name(case_id, "case id")).resolve()
        if not folder.is_relative_to(self.root) or folder == self.root:
            raise InputError(f"Refusing to use {folder}: annotations are kept inside {self.root}.")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def relative(self, path: Path) -> str:
        """``path`` as shown in the page: relative to the work folder, never the absolute server path."""
        return str(path.relative_to(self.root))
