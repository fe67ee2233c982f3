"""Saved work comes back: when a case opens, what was saved for it in the work folder is loaded into the scene.

A save (``<name>.mrk.json`` with its ``<name>.seg.nrrd``; box mode's ROI in the ``.mrk.json``) is one piece of
work. On opening the case every saved segmentation's segments are added to the segment list (oldest save first,
so the newest is the active one), and each mode's point list gets the points of its newest save: a point list
belongs to the mode whose labels it carries (``P1…`` extreme points, ``S1…`` surface points), an ROI to box mode
(its two corners). Files another mode adds beside a save (``_add``/``_remove`` corrective clicks, box mode's
``_slice_boxes.json``) are not pieces of their own. A file that cannot be read is named in the status line and
the rest still loads; nothing is written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.scene.markups_io import load_box_node, load_points_node
from WeakAnnotateLib.scene.mrml_adapter import points_of_node, remove_node
from WeakAnnotateLib.scene.segmentation_io import read_segmentation

from .workspace import Workspace

log = logging.getLogger(__name__)

POINTS_SUFFIX, SEGMENTATION_SUFFIX = ".mrk.json", ".seg.nrrd"
COMPANION_ENDINGS = ("_add.mrk.json", "_remove.mrk.json")  # files that belong to another save


@dataclass
class SavedWork:
    """One save of a case: its name, its files and when it was last written."""

    name: str
    points: Path | None = None
    segmentation: Path | None = None
    mtime: float = 0.0

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.segmentation, self.points) if p is not None]


@dataclass
class Restored:
    """What was loaded back (for the status line) and what could not be."""

    segments: int = 0
    points: dict[str, tuple[str, int]] = field(default_factory=dict)  # mode key -> (save name, points)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = [f"{n} point{'s' if n != 1 else ''} ({key}, from '{name}')" for key, (name, n) in self.points.items()]
        if self.segments:
            parts.insert(0, f"{self.segments} segment{'s' if self.segments != 1 else ''}")
        said = f"Loaded your saved work: {', '.join(parts)}." if parts else ""
        if self.problems:
            said += (" " if said else "") + "Not loaded: " + "; ".join(self.problems)
        return said


def saved_work(workspace: Workspace, case_id: str) -> list[SavedWork]:
    """The saves of a case in the work folder, oldest first (none when its folder does not exist)."""
    try:
        folder = workspace.case_folder(case_id)
    except InputError:
        return []
    if not folder.is_dir():
        return []
    saves: dict[str, SavedWork] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith(".") or name.endswith(COMPANION_ENDINGS):
            continue
        if not path.resolve().is_relative_to(workspace.root):  # a link out of the work folder: not ours
            continue
        for suffix, attribute in ((POINTS_SUFFIX, "points"), (SEGMENTATION_SUFFIX, "segmentation")):
            if name.endswith(suffix) and len(name) > len(suffix):
                work = saves.setdefault(name[: -len(suffix)], SavedWork(name[: -len(suffix)]))
                setattr(work, attribute, path)
                work.mtime = max(work.mtime, path.stat().st_mtime)
    return sorted(saves.values(), key=lambda w: (w.mtime, w.name))


def _markups_kind(path: Path) -> tuple[str, str]:
    """(markups type, label of its first control point) of a Slicer markups file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    markup = (document.get("markups") or [{}])[0]
    points = markup.get("controlPoints") or [{}]
    return str(markup.get("type", "")), str(points[0].get("label", ""))


def _mode_for(app: Any, kind: str, label: str) -> Any:
    """The mode a saved markups file belongs to: an ROI to box mode, points by their label's prefix."""
    for mode in app.modes.values():
        if kind == "ROI" and mode.label_format.startswith("C"):
            return mode
        if kind != "ROI" and label and label.startswith(mode.label_format.split("%", 1)[0]):
            return mode
    return None


def _positions(app: Any, path: Path, kind: str) -> np.ndarray:
    """The RAS positions a markups file holds (an ROI: its two opposite corners), read through the scene."""
    if kind == "ROI":
        node = load_box_node(app.rt, path)
        try:
            center, size = [0.0] * 3, [0.0] * 3
            node.GetCenterWorld(center)
            node.GetSizeWorld(size)
        finally:
            remove_node(app.rt.scene, node)
        c, half = np.array(center), np.array(size) / 2
        return np.array([c - half, c + half])
    node = load_points_node(app.rt, path)
    try:
        return points_of_node(node)[0]
    finally:
        remove_node(app.rt.scene, node)


def _add_segments(app: Any, path: Path) -> int:
    """Copy every segment of a saved segmentation into the case's segmentation node."""
    source = read_segmentation(app.rt, path)
    try:
        from_segmentation = source.GetSegmentation()
        target = app.segmentation_node.GetSegmentation()
        ids = [from_segmentation.GetNthSegmentID(i) for i in range(from_segmentation.GetNumberOfSegments())]
        for sid in ids:
            target.CopySegmentFromSegmentation(from_segmentation, sid)
        return len(ids)
    finally:
        remove_node(app.rt.scene, source)


def restore_saved_work(app: Any) -> Restored:
    """Load the open case's saves into the scene (see the module's docstring) and say so in the status line."""
    restored = Restored()
    case = app.case
    if case is None or app.segmentation_node is None:
        return restored
    saves = saved_work(app.workspace, case.id)
    if not saves:
        return restored
    was_restoring = getattr(app, "restoring", False)
    app.restoring = True  # the app's undo history does not record loading (nothing to undo)
    newest_points: dict[str, tuple[SavedWork, np.ndarray]] = {}
    try:
        for work in saves:
            if work.segmentation is not None:
                try:
                    restored.segments += _add_segments(app, work.segmentation)
                except (InputError, OSError, RuntimeError) as e:
                    restored.problems.append(f"{work.segmentation.name} ({e})")
            if work.points is not None:
                try:
                    kind, label = _markups_kind(work.points)
                    mode = _mode_for(app, kind, label)
                    if mode is None:
                        raise InputError(f"{kind or 'unknown'} markups that no mode uses")
                    newest_points[mode.key] = (work, _positions(app, work.points, kind))
                except (InputError, OSError, RuntimeError, ValueError) as e:
                    restored.problems.append(f"{work.points.name} ({e})")
        for key, (work, positions) in newest_points.items():
            node = app.points_nodes.get(key)
            if node is None:
                continue
            node.RemoveAllControlPoints()
            for p in positions:
                node.AddControlPoint(*[float(v) for v in p])
            restored.points[key] = (work.name, len(positions))
        segments = getattr(app, "segments", None)
        if segments is not None and hasattr(segments, "adopt_unknown"):
            segments.adopt_unknown()  # the segment list gives each its record and colour
    finally:
        app.restoring = was_restoring
    if hasattr(app, "_on_points_changed"):
        app._on_points_changed()  # the count and the mode's message for the current mode's list
    with app.state:
        if restored.points or restored.segments:
            app.state.save_name = saves[-1].name  # saving again continues the newest save
        app.state.status = restored.text() or app.state.status
    return restored
