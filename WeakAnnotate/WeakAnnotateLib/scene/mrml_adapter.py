"""The only place that converts MRML nodes ⇄ numpy arrays and geometry.

Algorithms never see a node; faces never touch an array's memory layout. Every function that adds nodes
does so inside :func:`scene_change`, so a failure half-way removes what was added and the scene is left as
it was, and a successful change is one undo step in desktop Slicer.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from ..core.atomic_files import atomic_output, write_error
from ..core.box import Box
from ..core.errors import InputError
from ..core.geometry import Geometry
from ..files.dicom_seg import SegmentCodes
from ..files.image_io import Image
from .slicer_runtime import SlicerRuntime
from .terminology import Term, resolve_terminology, set_node_default, set_segment_terminology

# --- scene changes ------------------------------------------------------------------------------------


# Open scene_change blocks per thread and scene: only the outermost one saves the state for undo.
_open_changes = threading.local()


@contextlib.contextmanager
def scene_change(scene: Any) -> Iterator[None]:
    """Group node additions: on an exception every node added inside the block is removed again.

    One undo step however the blocks nest (``correct_from_nodes`` writes through ``set_segment_mask``, each a
    block): a nested block saving the state again made Ctrl+Z take back nothing visible the first time.
    """
    before = {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}
    depth = getattr(_open_changes, "depth", None)
    if depth is None:
        depth = _open_changes.depth = {}
    key = id(scene)
    if not depth.get(key) and scene.GetUndoFlag():
        scene.SaveStateForUndo()
    depth[key] = depth.get(key, 0) + 1
    try:
        yield
    except BaseException:
        added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
        for node in added:
            if node is not None and node.GetID() not in before:
                scene.RemoveNode(node)
        raise
    finally:
        depth[key] -= 1
        if not depth[key]:
            del depth[key]


def remove_node(scene: Any, node: Any) -> None:
    """Remove a node with its display and storage nodes (the headless scene does not cascade removal)."""
    if node is None:
        return
    helpers = []
    if node.IsA("vtkMRMLDisplayableNode"):
        helpers += [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    if node.IsA("vtkMRMLStorableNode"):
        helpers += [node.GetNthStorageNode(n) for n in range(node.GetNumberOfStorageNodes())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and scene.IsNodePresent(helper):
            scene.RemoveNode(helper)


def write_node_file(node: Any, path: str | Path) -> Path:
    """Write a node with its default storage node (Slicer's own file format); the file appears only if complete."""
    path = Path(path)
    storage = node.CreateDefaultStorageNode()
    with atomic_output(path) as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(node):
            raise write_error(path, RuntimeError(f"Slicer could not write {node.GetName()}"))
    return path


# --- matrices -----------------------------------------------------------------------------------------


def _to_vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def _from_vtk_matrix(vm: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)])


def _image_data(array: np.ndarray) -> vtk.vtkImageData:
    a = np.ascontiguousarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    data = vtk.vtkImageData()
    data.SetDimensions(a.shape[2], a.shape[1], a.shape[0])
    scalars = numpy_support.numpy_to_vtk(a.ravel(), deep=True)
    data.GetPointData().SetScalars(scalars)
    return data


def _array_of(data: vtk.vtkImageData) -> np.ndarray:
    dims = data.GetDimensions()
    scalars = data.GetPointData().GetScalars()
    if scalars is None:
        return np.zeros(dims[::-1], dtype=np.uint8)
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1]).copy()


# --- volumes ------------------------------------------------------------------------------------------


def geometry_of_node(node: Any) -> Geometry:
    """Geometry of a volume node (scalar or labelmap), ignoring parent transforms."""
    if node is None or node.GetImageData() is None:
        raise InputError("The volume has no image data; load a volume first.")
    vm = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(vm)
    dims = node.GetImageData().GetDimensions()
    return Geometry(_from_vtk_matrix(vm), (dims[2], dims[1], dims[0]))


def add_volume_node(rt: SlicerRuntime, image: Image, name: str | None = None, *, labelmap: bool = False) -> Any:
    """A scalar (or labelmap) volume node holding ``image`` with its exact IJK→RAS, with display nodes."""
    if image.array.ndim != 3:
        raise InputError(f"A 3D array is needed, got {image.array.ndim}D.")
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    with scene_change(rt.scene):
        node = rt.scene.AddNewNodeByClass(cls, name or image.name)
        node.SetIJKToRASMatrix(_to_vtk_matrix(image.geometry.ijk_to_ras))
        node.SetAndObserveImageData(_image_data(image.array))
        node.CreateDefaultDisplayNodes()
        if not labelmap:
            display = node.GetDisplayNode()
            if display is not None:
                display.AutoWindowLevelOn()
    return node


def image_of_node(node: Any) -> Image:
    """Copy of a volume node's voxels with its geometry."""
    geometry = geometry_of_node(node)  # (an InputError first when the node has no voxels)
    return Image(_array_of(node.GetImageData()), geometry, node.GetName())


# --- segmentations ------------------------------------------------------------------------------------


def _oriented(mask: np.ndarray, geometry: Geometry) -> Any:
    import slicer

    data = slicer.vtkOrientedImageData()
    data.ShallowCopy(_image_data(mask.astype(np.uint8)))
    data.SetImageToWorldMatrix(_to_vtk_matrix(geometry.ijk_to_ras))
    return data


def add_segmentation_node(
    rt: SlicerRuntime,
    name: str,
    reference: Geometry | Any | None = None,
    *,
    terminology: str | SegmentCodes | Term | None = None,
) -> Any:
    """An empty segmentation node, its master geometry taken from a volume node or a :class:`Geometry`.

    ``terminology`` (see :func:`.terminology.resolve_terminology`) becomes the node's default term: the one its
    segments get when their name names no structure.
    """
    with scene_change(rt.scene):
        node = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        if terminology is not None:
            set_node_default(rt, node, terminology)
        if isinstance(reference, Geometry):
            import slicer

            converter = slicer.vtkSegmentationConverter
            node.GetSegmentation().SetConversionParameter(
                converter.GetReferenceImageGeometryParameterName(),
                converter.SerializeImageGeometry(_oriented(np.zeros(reference.shape, np.uint8), reference)),
            )
        elif reference is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    return node


def set_segment_mask(
    rt: SlicerRuntime,
    segmentation_node: Any,
    mask: np.ndarray,
    geometry: Geometry,
    name: str,
    color: Sequence[float] | None = None,
    *,
    terminology: str | SegmentCodes | Term | None = None,
) -> str:
    """Create the segment ``name`` or replace its voxels with ``mask``; returns the segment ID.

    A new segment carries a standard term (its ``TerminologyEntry`` tag): ``terminology`` when given (a type such
    as "Neoplasm" or "Kidney/Left", codes, or a serialized entry), else the one its name stands for
    (:func:`.terminology.codes_for_name`). An existing segment keeps its term unless ``terminology`` is given.
    """
    import slicer

    if mask.shape != geometry.shape:
        raise InputError(f"Mask shape {mask.shape} does not match the grid {geometry.shape}.")
    chosen = resolve_terminology(rt, terminology) if terminology is not None else None  # may fail: before changes
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(name)
    with scene_change(rt.scene):
        if not segment_id:
            segment_id = segmentation.AddEmptySegment("", name, list(color) if color is not None else None)
            set_segment_terminology(rt, segmentation_node, segment_id, chosen)
        else:
            if color is not None:
                segmentation.GetSegment(segment_id).SetColor(*color)
            if chosen is not None:
                set_segment_terminology(rt, segmentation_node, segment_id, chosen)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            _oriented(mask, geometry),
            segmentation_node,
            segment_id,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
        )
        if not ok:
            raise InputError(f"Could not write segment {name!r} into {segmentation_node.GetName()}.")
    return segment_id


def segment_mask(segmentation_node: Any, segment_id: str, geometry: Geometry) -> np.ndarray:
    """A segment's voxels resampled (nearest neighbour) onto ``geometry``, as a boolean array."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(segment_id) is None:
        raise InputError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.")
    labelmap = slicer.vtkOrientedImageData()
    segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
    reference = _oriented(np.zeros(geometry.shape, np.uint8), geometry)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled, False, True
    )
    # GetBinaryLabelmapRepresentation extracts this one segment as 0/1, even from a shared labelmap.
    return _array_of(resampled) != 0


def points_tag_value(points_ras: np.ndarray, **extra: Any) -> str:
    """JSON that keeps the RAS points an annotation was made from on its segment, to re-open and edit it."""
    doc: dict[str, Any] = {"version": 1, "coordinateSystem": "RAS", "points": np.asarray(points_ras).tolist(), **extra}
    return json.dumps(doc)


def points_from_tag(value: str, tag: str = "points") -> np.ndarray:
    """The (N, 3) RAS points in a value written by :func:`points_tag_value`."""
    try:
        return np.asarray(json.loads(value)["points"], dtype=float).reshape(-1, 3)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"The segment's {tag} tag does not hold valid JSON points ({e}).") from None


def stored_points(segmentation_node: Any, segment_id: str, tag: str) -> np.ndarray | None:
    """The RAS points kept on a segment under ``tag``, or None if it has none."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    value = vtk.mutable("")
    if segment is None or not segment.GetTag(tag, value):
        return None
    return points_from_tag(str(value), tag)


def segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


# --- markups ------------------------------------------------------------------------------------------


def add_points_node(
    rt: SlicerRuntime,
    points_ras: np.ndarray,
    labels: Sequence[str] | None = None,
    name: str = "points",
    *,
    required: int | None = None,
) -> Any:
    """A fiducial node with one control point per row of ``points_ras``."""
    points = np.atleast_2d(np.asarray(points_ras, dtype=float))
    with scene_change(rt.scene):
        node = rt.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
        for n, p in enumerate(points):
            label = labels[n] if labels is not None else f"{name}-{n + 1}"
            node.AddControlPoint(vtk.vtkVector3d(*p.tolist()), label)
        if required is not None:
            node.SetRequiredNumberOfControlPoints(required)
            node.SetFixedNumberOfControlPoints(True)
    return node


def points_of_node(node: Any) -> tuple[np.ndarray, list[str]]:
    """(N, 3) RAS positions and labels of a markups node's defined control points."""
    if node is None or not node.IsA("vtkMRMLMarkupsNode"):
        raise InputError("A markups point list is needed.")
    points, labels = [], []
    for n in range(node.GetNumberOfControlPoints()):
        if not node.GetNthControlPointPositionStatus(n) == node.PositionDefined:
            continue
        p = np.zeros(3)
        node.GetNthControlPointPosition(n, p)
        points.append(p)
        labels.append(node.GetNthControlPointLabel(n))
    return np.array(points, dtype=float).reshape(-1, 3), labels


def add_roi_node(rt: SlicerRuntime, box: Box, name: str = "box") -> Any:
    """A box-shaped ROI node."""
    with scene_change(rt.scene):
        node = rt.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        node.CreateDefaultDisplayNodes()
        m = np.eye(4)
        m[:3, :3] = box.axes
        m[:3, 3] = box.center
        node.SetAndObserveObjectToNodeMatrix(_to_vtk_matrix(m))
        node.SetSize(*np.asarray(box.size, dtype=float).tolist())
    return node


def box_of_node(node: Any) -> Box:
    """The box of an ROI node in RAS."""
    if node is None or not node.IsA("vtkMRMLMarkupsROINode"):
        raise InputError("A box (ROI) is needed.")
    m = _from_vtk_matrix(node.GetObjectToWorldMatrix())
    center = np.zeros(3)
    node.GetCenterWorld(center)
    return Box(center=center, size=np.array(node.GetSize(), dtype=float), axes=m[:3, :3].copy())
