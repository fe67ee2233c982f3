"""A trained model on disk: a job folder's ``model.pt`` *with* its ``model.json`` (a ``model.pt`` without it is a
job that did not finish). Light on purpose: listing models must not load torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_FILE, MODEL_INFO = "model.pt", "model.json"


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(model.pt, model.json) of a job folder, a model.pt or a model.json."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return folder / MODEL_FILE, folder / MODEL_INFO


def list_models(folder: str | Path) -> list[dict[str, Any]]:
    """Finished models (``model.json``) in a folder of job folders (or the job folder itself), newest first."""
    root = Path(folder)
    found = []
    if not root.is_dir():
        return found
    candidates = [root / MODEL_INFO] + sorted(root.glob(f"*/{MODEL_INFO}"))
    for info_path in candidates:
        if not info_path.is_file() or not (info_path.parent / MODEL_FILE).is_file():
            continue
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        found.append({"path": str(info_path.parent), "mtime": info_path.stat().st_mtime, **info})
    return sorted(found, key=lambda d: -d["mtime"])
