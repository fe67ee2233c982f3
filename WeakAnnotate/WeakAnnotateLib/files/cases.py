"""The catalogue of real cases (``shared/data/cases.json``): images, reference masks, and what they are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError

_REPO = Path(__file__).resolve().parents[3]  # files/ → WeakAnnotateLib/ → WeakAnnotate/ → the checkout


def default_data_dir() -> Path | None:
    """``$WEAKANNOTATE_DATA``, else ``shared/data`` beside the checkout, else ``../shared/data`` from here."""
    candidates = []
    if os.environ.get("WEAKANNOTATE_DATA"):
        candidates.append(Path(os.environ["WEAKANNOTATE_DATA"]))
    candidates += [_REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "cases.json").is_file():
            return c.resolve()
    return None


@dataclass(frozen=True)
class Case:
    id: str
    modality: str
    image: Path
    mask: Path
    labels: dict[int, str]
    gt_type: str

    @property
    def manual(self) -> bool:
        return self.gt_type.startswith("manual")


def load_cases(data_dir: str | Path | None = None) -> list[Case]:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not (root / "cases.json").is_file():
        raise InputError(
            "No case catalogue found: pass --data DIR pointing at a folder with cases.json "
            "(e.g. ../shared/data), or set WEAKANNOTATE_DATA."
        )
    try:
        entries = json.loads((root / "cases.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{root / 'cases.json'} is not a readable case catalogue ({e}).") from None
    return [
        Case(
            id=e["id"],
            modality=e["modality"],
            image=root / e["image"],
            mask=root / e["mask"],
            labels={int(k): v for k, v in e.get("labels", {}).items()},
            gt_type=e.get("gt_type", ""),
        )
        for e in entries
    ]


def find_case(case_id: str, data_dir: str | Path | None = None) -> Case:
    cases = load_cases(data_dir)
    for c in cases:
        if c.id == case_id:
            return c
    close = [c.id for c in cases if case_id.lower() in c.id.lower()][:5]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"No case {case_id!r} in the catalogue.{hint}")
