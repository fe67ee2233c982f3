"""The catalogue of cases (``cases.json`` in a data folder), or a plain folder of images without one.

The catalogue format is documented in ``docs/catalogue.md``: a JSON list of entries, each with an ``id`` and an
``image`` (a path relative to the folder: a NIfTI / NRRD / MHA file or a DICOM series folder); ``modality``,
``mask``, ``labels`` and ``gt_type`` are optional. A missing modality is read from the image's header (DICOM
Modality, an NRRD/MHA ``modality`` field, the NIfTI description) or guessed from the path's words (``ct``,
``pet``, ``t1``, ``flair`` …), else it is :data:`UNKNOWN`. A folder without ``cases.json`` is scanned for images
(:func:`scan_images`): every image file and every DICOM series folder becomes a case without a reference mask.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from ..core.atomic_files import full_suffix
from ..core.errors import InputError
from .image_io import IMAGE_SUFFIXES, is_dicom_file

_REPO = Path(__file__).resolve().parents[3]  # files/ → WeakAnnotateLib/ → WeakAnnotate/ → the checkout

CATALOGUE = "cases.json"
UNKNOWN = "unknown"  # a modality neither the catalogue, the header nor the name tells
# Image files a folder scan lists (a DICOM series is listed as its folder); segmentations are not images to open.
SCAN_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s != ".dcm")
NOT_IMAGES = (".seg.nrrd",)
MAX_SCAN_ENTRIES = 20_000  # a scan stops after looking at this many files and folders (a home folder by mistake)
# Words in a path that name a modality (lower case, whole words between non-letters/digits).
_MODALITY_WORDS = {
    "CT": ("ct", "cta", "cect", "ncct"),
    "PET": ("pet", "pt", "suv", "fdg"),
    "MR": ("mr", "mri", "t1", "t1w", "t1c", "t1ce", "t1gd", "t2", "t2w", "flair", "dwi", "adc", "pd", "swi"),
}
MODALITIES = tuple(_MODALITY_WORDS)  # what a header or a name can tell, and what a user can choose
_DICOM_MODALITY = {"CT": "CT", "PT": "PET", "MR": "MR"}
_HEADER_KEYS = ("0008|0060", "modality", "Modality", "descrip")


def default_data_dir() -> Path | None:
    """``$WEAKANNOTATE_DATA``, else ``shared/data`` beside the checkout, else ``../shared/data`` from here."""
    candidates = []
    if os.environ.get("WEAKANNOTATE_DATA"):
        candidates.append(Path(os.environ["WEAKANNOTATE_DATA"]))
    candidates += [_REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / CATALOGUE).is_file():
            return c.resolve()
    return None


@dataclass(frozen=True)
class Case:
    id: str
    modality: str
    image: Path
    mask: Path | None = None  # the reference mask, when the catalogue has one
    labels: dict[int, str] = field(default_factory=dict)
    gt_type: str = ""

    @property
    def manual(self) -> bool:
        return self.gt_type.startswith("manual")

    def reference_mask(self, purpose: str) -> Path:
        """The reference mask, or an InputError saying that ``purpose`` needs one and this case has none."""
        if self.mask is None:
            raise InputError(
                f"Case {self.id!r} has no reference mask: {purpose} needs one (a 'mask' in its {CATALOGUE} entry)."
            )
        return self.mask


def modality_from_words(text: str) -> str | None:
    """CT / PET / MR when a word of ``text`` (a path, a header field) names it, else None."""
    words = set(re.split(r"[^a-z0-9]+", text.lower()))
    for modality, names in _MODALITY_WORDS.items():
        if words & set(names):
            return modality
    return None


def modality_from_header(path: Path) -> str | None:
    """The modality the image's header states (DICOM Modality; an NRRD/MHA ``modality`` field; the NIfTI
    description), reading the header only; None when it states none or cannot be read."""
    target = path
    if path.is_dir():
        target = next((p for p in sorted(path.iterdir()) if p.is_file() and is_dicom_file(p)), path)
        if target == path:
            return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(target))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    for key in _HEADER_KEYS:
        if reader.HasMetaDataKey(key):
            value = reader.GetMetaData(key).strip()
            found = _DICOM_MODALITY.get(value.upper()) if key == "0008|0060" else modality_from_words(value)
            if found:
                return found
    return None


def guess_modality(path: Path, root: Path | None = None) -> str:
    """The header's modality, else the one the path's words name (relative to ``root``), else UNKNOWN."""
    found = modality_from_header(path)
    if found is None:
        words = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
        found = modality_from_words(words)
    return found or UNKNOWN


def _entry_case(root: Path, n: int, e: object) -> Case:
    """One catalogue entry; only ``id`` and ``image`` are required. An InputError names the entry."""
    where = f"{root / CATALOGUE}, entry {n + 1}"
    if not isinstance(e, dict):
        raise InputError(f"{where}: expected an object with 'id' and 'image', got {type(e).__name__}.")
    for key in ("id", "image"):
        if not isinstance(e.get(key), str) or not e[key].strip():
            raise InputError(f"{where}: '{key}' is missing or not text; every entry needs an 'id' and an 'image'.")
    for key in ("modality", "mask", "gt_type"):
        if e.get(key) is not None and not isinstance(e[key], str):
            raise InputError(f"{where} ({e['id']}): '{key}' must be text, got {json.dumps(e[key])}.")
    labels = e.get("labels") or {}
    if not isinstance(labels, dict):
        raise InputError(f"{where} ({e['id']}): 'labels' must be an object of label value to name.")
    try:
        labels = {int(k): str(v) for k, v in labels.items()}
    except ValueError:
        raise InputError(f"{where} ({e['id']}): 'labels' keys must be whole numbers (label values).") from None
    image = root / e["image"]
    modality = e.get("modality") or (guess_modality(image, root) if image.exists() else UNKNOWN)
    return Case(
        id=e["id"],
        modality=modality,
        image=image,
        mask=root / e["mask"] if e.get("mask") else None,
        labels=labels,
        gt_type=e.get("gt_type") or "",
    )


def load_cases(data_dir: str | Path | None = None) -> list[Case]:
    """The catalogue's cases (``cases.json`` of ``data_dir``, else of :func:`default_data_dir`)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not (root / CATALOGUE).is_file():
        raise InputError(
            f"No case catalogue found: pass --data DIR pointing at a folder with {CATALOGUE} "
            "(e.g. ../shared/data), or set WEAKANNOTATE_DATA."
        )
    try:
        entries = json.loads((root / CATALOGUE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{root / CATALOGUE} is not a readable case catalogue ({e}).") from None
    if not isinstance(entries, list):
        raise InputError(f"{root / CATALOGUE}: expected a JSON list of case entries.")
    cases = [_entry_case(root, n, e) for n, e in enumerate(entries)]
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise InputError(f"{root / CATALOGUE}: the id {c.id!r} is used twice; ids must be unique.")
        seen.add(c.id)
    return cases


def find_case(case_id: str, data_dir: str | Path | None = None) -> Case:
    cases = load_cases(data_dir)
    for c in cases:
        if c.id == case_id:
            return c
    close = [c.id for c in cases if case_id.lower() in c.id.lower()][:5]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"No case {case_id!r} in the catalogue.{hint}")


# --- a folder of images ---------------------------------------------------------------------------------------


def is_image_file(path: Path) -> bool:
    suffix = full_suffix(path)
    return suffix in SCAN_SUFFIXES and not path.name.lower().endswith(NOT_IMAGES)


def is_dicom_folder(path: Path) -> bool:
    """A folder that directly holds DICOM files (``.dcm``, or the DICM marker in one of its first few files)."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file())
    except OSError:
        return False
    if any(full_suffix(p) == ".dcm" for p in files):
        return True
    return any(is_dicom_file(p) for p in [p for p in files if not is_image_file(p)][:3])


def image_case_id(root: Path, image: Path) -> str:
    """The id of an image found in ``root``: its relative path, without the image suffix (``a/b.nii.gz`` → ``a/b``)."""
    rel = image.relative_to(root).as_posix()
    suffix = full_suffix(image)
    return rel[: -len(suffix)] if image.is_file() and suffix and rel.lower().endswith(suffix) else rel


def image_case(root: Path, image: Path) -> Case:
    """A case for an image file or DICOM folder inside ``root`` (no reference mask; modality guessed)."""
    return Case(id=image_case_id(root, image), modality=guess_modality(image, root), image=image)


def scan_images(root: str | Path) -> list[Case]:
    """Every image file and DICOM series folder under ``root`` (sorted; symbolic links are not followed, so
    nothing outside ``root`` is listed), as cases without a reference mask."""
    root = Path(root).resolve()
    found: list[Path] = []
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        seen += len(dirs) + len(files)
        here = Path(folder)
        if here != root and is_dicom_folder(here):
            found.append(here)
        found += [here / f for f in sorted(files) if not f.startswith(".") and is_image_file(here / f)]
        if seen > MAX_SCAN_ENTRIES:
            break
    return [image_case(root, p) for p in found if not p.is_symlink()]


def open_data_folder(data_dir: str | Path) -> list[Case]:
    """The cases of a data folder: its ``cases.json`` when it has one, else the images found in it. An
    InputError when it is not a folder or holds neither."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise InputError(f"--data {data_dir}: not a folder; point it at a folder of images or with a {CATALOGUE}.")
    if (root / CATALOGUE).is_file():
        return load_cases(root)
    cases = scan_images(root)
    if not cases:
        raise InputError(
            f"--data {data_dir}: no {CATALOGUE} and no images (NIfTI, NRRD, MHA or DICOM series) in that folder."
        )
    return cases
