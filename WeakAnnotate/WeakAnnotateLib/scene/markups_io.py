"""Annotations as Slicer's own ``.mrk.json`` files: point lists (extreme or surface points) and boxes (ROI).

Files are read and written by Slicer's markups storage nodes (LPS in the file, RAS in the scene, as desktop
Slicer does). The JSON is looked at first only to give a clear message for the wrong kind of file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import full_suffix
from ..core.box import Box
from ..core.errors import InputError
from ..core.geometry import Geometry
from .mrml_adapter import add_points_node, add_roi_node, box_of_node, points_of_node, remove_node, write_node_file
from .slicer_runtime import SlicerRuntime, get_runtime

POINT_TYPES = ("Fiducial",)
KIND_NAMES = {
    "Fiducial": "a point list",
    "ROI": "a box (ROI)",
    "Line": "a line",
    "Angle": "an angle",
    "Curve": "a curve",
    "ClosedCurve": "a closed curve",
    "Plane": "a plane",
}


def markups_type(path: str | Path) -> str:
    """The markups type stored in a ``.mrk.json`` file ("Fiducial", "ROI", ...), checking the file is one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Annotation file {path} does not exist.")
    if full_suffix(path) != ".mrk.json":
        raise InputError(f"Annotation file {path} is not a Slicer markups file; save it as .mrk.json.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        markups = doc["markups"]
        kind = markups[0]["type"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise InputError(f"Annotation file {path} is corrupt or not a Slicer markups file ({e}).") from None
    if not isinstance(markups[0].get("controlPoints", []), list):
        raise InputError(f"Annotation file {path} is corrupt: its control points are not a list.")
    if len(markups) != 1:
        raise InputError(f"Annotation file {path} holds {len(markups)} markups; one per file is expected.")
    return str(kind)


def _load_node(rt: SlicerRuntime, path: Path, kind: str) -> Any:
    node_id = rt.markups_logic.LoadMarkups(str(path), path.name[: -len(".mrk.json")])
    node = rt.scene.GetNodeByID(node_id) if node_id else None
    if node is None:
        raise InputError(f"Slicer could not read the {KIND_NAMES.get(kind, kind)} in {path}; the file is corrupt.")
    return node


def load_points_node(rt: SlicerRuntime, path: str | Path) -> Any:
    """Load a point list file into the scene as a fiducial node."""
    path = Path(path)
    kind = markups_type(path)
    if kind not in POINT_TYPES:
        raise InputError(
            f"{path} holds {KIND_NAMES.get(kind, kind)}, but points are needed here; "
            "place the points as a point list (Markups › Point List)."
        )
    return _load_node(rt, path, kind)


def load_box_node(rt: SlicerRuntime, path: str | Path) -> Any:
    """Load a box file into the scene as an ROI node."""
    path = Path(path)
    kind = markups_type(path)
    if kind != "ROI":
        raise InputError(
            f"{path} holds {KIND_NAMES.get(kind, kind)}, but a box is needed here; "
            "draw the box as an ROI (Markups › ROI)."
        )
    return _load_node(rt, path, kind)


def check_point_count(n: int, *, count: int | None = None, min_count: int | None = None, what: str = "points") -> None:
    if count is not None and n != count:
        raise InputError(f"Exactly {count} {what} are needed, got {n}.")
    if min_count is not None and n < min_count:
        raise InputError(f"At least {min_count} {what} are needed, got {n}.")


def read_points(
    path: str | Path,
    *,
    count: int | None = None,
    min_count: int | None = None,
    geometry: Geometry | None = None,
    what: str = "points",
) -> tuple[np.ndarray, list[str]]:
    """RAS positions (N, 3) and labels of a point list file, checked for number and for lying in the image."""
    rt = get_runtime()
    node = load_points_node(rt, path)
    try:
        points, labels = points_of_node(node)
    finally:
        remove_node(rt.scene, node)
    check_point_count(len(points), count=count, min_count=min_count, what=what)
    if geometry is not None:
        geometry.ras_to_index(points, what=what.rstrip("s"))
    return points, labels


def read_box(path: str | Path, *, geometry: Geometry | None = None) -> Box:
    """The box of an ROI file, checked for a positive size and for overlapping the image."""
    rt = get_runtime()
    node = load_box_node(rt, path)
    try:
        box = box_of_node(node)
    finally:
        remove_node(rt.scene, node)
    check_box(box, geometry)
    return box


def check_box(box: Box, geometry: Geometry | None = None) -> None:
    if np.any(~np.isfinite(box.size)) or np.any(box.size <= 0):
        raise InputError(
            f"The box has zero or negative extent ({' x '.join(f'{s:.1f}' for s in box.size)} mm); "
            "drag its handles so that it encloses the object."
        )
    if geometry is not None:
        ijk = geometry.ras_to_ijk(box.corners())
        lo, hi = ijk.min(axis=0), ijk.max(axis=0)
        size = np.asarray(geometry.size_ijk)
        if np.any(hi < -0.5) or np.any(lo > size - 0.5):
            raise InputError("The box lies entirely outside the image; place it on the image it belongs to.")


def _write_node(node: Any, path: str | Path) -> Path:
    path = Path(path)
    if full_suffix(path) != ".mrk.json":
        raise InputError(f"Cannot write {path}: markups are saved as .mrk.json.")
    return write_node_file(node, path)


def write_points(
    path: str | Path,
    points_ras: np.ndarray,
    labels: Sequence[str] | None = None,
    name: str = "points",
    *,
    required: int | None = None,
) -> Path:
    """Write RAS points as a Slicer point list (``.mrk.json``)."""
    rt = get_runtime()
    node = add_points_node(rt, points_ras, labels, name, required=required)
    try:
        return _write_node(node, path)
    finally:
        remove_node(rt.scene, node)


def write_box(path: str | Path, box: Box, name: str = "box") -> Path:
    """Write a box as a Slicer ROI (``.mrk.json``)."""
    rt = get_runtime()
    node = add_roi_node(rt, box, name)
    try:
        return _write_node(node, path)
    finally:
        remove_node(rt.scene, node)
