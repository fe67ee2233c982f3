"""The modality the user chose for a case, kept in the work folder (``<work>/<case>/case.json``).

Why: an image the catalogue does not describe gets its modality from its header or its name, else "unknown"
(``files/cases.py``); the page lets the user say what it is. The choice sets the window preset and the SUV
read-out, counts in the training panel's and the loop's "cases of the same modality", and comes back the next
time the case is opened, in any session.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from WeakAnnotateLib.core.atomic_files import atomic_output
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import MODALITIES, UNKNOWN, Case

from .workspace import Workspace

SETTINGS_FILE = "case.json"
CHOICES = (*MODALITIES, UNKNOWN)


def with_chosen_modality(workspace: Workspace, case: Case) -> Case:
    """``case`` with the modality chosen for it earlier, if any (an unreadable file is ignored: the guess stays)."""
    try:
        path = workspace.case_folder(case.id) / SETTINGS_FILE
        chosen = json.loads(path.read_text(encoding="utf-8")).get("modality")
    except (OSError, ValueError, AttributeError):  # (InputError is a ValueError: an id no folder can be named by)
        return case
    return replace(case, modality=chosen) if chosen in CHOICES else case


def remember_modality(workspace: Workspace, case: Case, modality: object) -> tuple[Case, Path]:
    """The case with ``modality``, written to its settings file first (atomically: a failed write changes
    nothing and raises a WriteError); an :class:`InputError` names a value that is not one of :data:`CHOICES`."""
    if modality not in CHOICES:
        raise InputError(f"Modality: one of {', '.join(CHOICES)}, got {modality!r}.")
    try:
        path = workspace.case_folder(case.id, create=True) / SETTINGS_FILE
    except OSError as e:
        raise InputError(f"Could not remember the modality: the case's folder cannot be made ({e.strerror}).") from None
    with atomic_output(path) as tmp:  # a WriteError names the file and the cause
        tmp.write_text(json.dumps({"modality": modality}), encoding="utf-8")
    return replace(case, modality=str(modality)), path
