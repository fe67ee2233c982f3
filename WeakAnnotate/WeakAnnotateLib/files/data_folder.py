"""Browsing a data folder from an untrusted client: paths are relative to the folder and never leave it.

A path from the page is split into parts; ``..``, absolute paths, hidden names and anything that resolves
(symbolic links included) outside the data folder are refused with an InputError. Listings never follow a
symbolic link out of the folder either: such an entry is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..core.errors import InputError
from .cases import is_dicom_folder, is_image_file

MAX_LISTED = 500  # entries a listing shows (folders first); a larger folder says how many were left out


@dataclass(frozen=True)
class FolderEntry:
    name: str
    path: str  # relative to the data folder, "/"-separated
    kind: str  # "folder", "image" (a file) or "dicom" (a DICOM series folder)


@dataclass(frozen=True)
class FolderListing:
    path: str  # the listed folder, relative ("" for the data folder itself)
    entries: list[FolderEntry]
    left_out: int  # entries not listed (over MAX_LISTED)


def resolve_inside(root: str | Path, rel: str) -> Path:
    """``root / rel`` resolved, or an InputError when ``rel`` is not a plain relative path inside ``root``."""
    base = Path(root).resolve()
    if not isinstance(rel, str):
        raise InputError(f"Folder path: expected text, got {type(rel).__name__}.")
    text = rel.replace("\\", "/").strip()
    parts = PurePosixPath(text).parts if text else ()
    if text.startswith("/") or any(p in ("..", ".") or p.startswith(".") or "\x00" in p for p in parts):
        raise InputError(f"{rel!r}: only folders and images inside the data folder can be opened.")
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):  # a symbolic link out of the data folder
        raise InputError(f"{rel!r} leads outside the data folder; it cannot be opened.")
    if not target.exists():
        raise InputError(f"{rel!r} does not exist in the data folder.")
    return target


def relative_path(root: str | Path, path: Path) -> str:
    return path.resolve().relative_to(Path(root).resolve()).as_posix()


def list_folder(root: str | Path, rel: str = "") -> FolderListing:
    """The sub-folders, image files and DICOM series folders of a folder inside ``root``, sorted by name."""
    base = Path(root).resolve()
    folder = resolve_inside(base, rel)
    if not folder.is_dir():
        raise InputError(f"{rel!r} is not a folder.")
    folders: list[FolderEntry] = []
    images: list[FolderEntry] = []
    try:
        children = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError as e:
        raise InputError(f"{rel or 'The data folder'}: cannot be listed ({e.strerror or e}).") from None
    for child in children:
        if child.name.startswith(".") or not child.resolve().is_relative_to(base):
            continue
        path = relative_path(base, child)
        if child.is_dir():
            kind = "dicom" if is_dicom_folder(child) else "folder"
            (images if kind == "dicom" else folders).append(FolderEntry(child.name, path, kind))
        elif is_image_file(child):
            images.append(FolderEntry(child.name, path, "image"))
    entries = folders + images
    return FolderListing(relative_path(base, folder) if folder != base else "", entries[:MAX_LISTED],
                         max(len(entries) - MAX_LISTED, 0))  # fmt: skip
