"""Segmentations on disk: Slicer's ``.seg.nrrd``, NIfTI/NRRD label maps and DICOM SEG, through segmentation nodes.

A label map becomes one segment per nonzero value (named from a ``{value: name}`` table when given); a
segmentation node becomes a label map on a chosen grid, segment n → value n (in segment order), or the
values recorded on import. A DICOM SEG becomes one segment per DICOM segment (name, colour and terminology
from its codes, label value = segment number); :func:`coded_segments` gives a node's segments with their codes
on a DICOM series' grid for :func:`~WeakAnnotateLib.files.dicom_seg.write_dicom_seg`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import vtk

from ..core.atomic_files import full_suffix
from ..core.colors import segment_color
from ..core.errors import InputError
from ..core.geometry import Geometry
from ..files.dicom_seg import CodedSegment, DicomSeries, is_dicom_seg, read_dicom_seg
from ..files.image_io import Image, read_image, write_image
from .mrml_adapter import (
    add_segmentation_node,
    remove_node,
    scene_change,
    segment_ids,
    segment_mask,
    set_segment_mask,
    write_node_file,
)
from .slicer_runtime import SlicerRuntime
from .terminology import DICOM_MASTER, Term, segment_terminology

LABEL_TAG = "WeakAnnotate.LabelValue"


def segmentation_from_labelmap(
    rt: SlicerRuntime,
    labelmap: np.ndarray,
    geometry: Geometry,
    *,
    name: str = "segmentation",
    names: Mapping[int, str] | None = None,
) -> Any:
    """A segmentation node with one segment per nonzero value of ``labelmap``."""
    values = [int(v) for v in np.unique(labelmap) if v != 0]
    if not values:
        raise InputError("The label map is empty: it has no nonzero voxel to turn into a segment.")
    with scene_change(rt.scene):
        node = add_segmentation_node(rt, name, geometry)
        for value in values:
            segment_name = (names or {}).get(value, f"label {value}")
            sid = set_segment_mask(
                rt, node, labelmap == value, geometry, segment_name, segment_color(segment_name, value)
            )
            node.GetSegmentation().GetSegment(sid).SetTag(LABEL_TAG, str(value))
    return node


def labelmap_from_segmentation(segmentation_node: Any, geometry: Geometry) -> tuple[np.ndarray, dict[int, str]]:
    """A uint16 label map of every segment on ``geometry`` and its ``{value: segment name}`` table.

    Where segments overlap, the later segment wins (as Slicer's own export does).
    """
    ids = segment_ids(segmentation_node)
    if not ids:
        raise InputError(f"Segmentation {segmentation_node.GetName()} has no segments.")
    labelmap = np.zeros(geometry.shape, dtype=np.uint16)
    table: dict[int, str] = {}
    segmentation = segmentation_node.GetSegmentation()
    for n, sid in enumerate(ids, start=1):
        segment = segmentation.GetSegment(sid)
        tag = vtk.reference("")
        value = int(str(tag)) if segment.GetTag(LABEL_TAG, tag) and str(tag).isdigit() else n
        labelmap[segment_mask(segmentation_node, sid, geometry)] = value
        table[value] = segment.GetName()
    return labelmap, table


def write_segmentation(path: str | Path, segmentation_node: Any, geometry: Geometry | None = None) -> Path:
    """``.seg.nrrd`` through Slicer's segmentation storage; ``.nii.gz``/``.nrrd``/``.mha`` as a label map."""
    path = Path(path)
    if full_suffix(path) == ".seg.nrrd":
        return write_node_file(segmentation_node, path)
    if geometry is None:
        raise InputError(f"Writing {path} as a label map needs the image grid to put it on.")
    labelmap, _ = labelmap_from_segmentation(segmentation_node, geometry)
    return write_image(path, labelmap, geometry)


def coded_segments(rt: SlicerRuntime, segmentation_node: Any, geometry: Geometry) -> list[CodedSegment]:
    """Every segment resampled (nearest neighbour) onto ``geometry``, with its name, colour and terminology codes."""
    ids = segment_ids(segmentation_node)
    if not ids:
        raise InputError(f"Segmentation {segmentation_node.GetName()} has no segments.")
    out = []
    segmentation = segmentation_node.GetSegmentation()
    for sid in ids:
        segment = segmentation.GetSegment(sid)
        term = segment_terminology(rt, segmentation_node, sid)
        color = tuple(float(c) for c in segment.GetColor())
        out.append(CodedSegment(segment.GetName(), segment_mask(segmentation_node, sid, geometry), color, term.codes))
    return out


def segmentation_from_coded(
    rt: SlicerRuntime, segments: list[CodedSegment], geometry: Geometry, *, name: str = "segmentation"
) -> Any:
    """A segmentation node of coded segments (DICOM SEG read back): names, colours, terminology, value = order."""
    with scene_change(rt.scene):
        node = add_segmentation_node(rt, name, geometry)
        for value, s in enumerate(segments, start=1):
            sid = set_segment_mask(rt, node, s.mask, geometry, s.name, s.color, terminology=Term(DICOM_MASTER, s.codes))
            node.GetSegmentation().GetSegment(sid).SetTag(LABEL_TAG, str(value))
    return node


def read_segmentation(
    rt: SlicerRuntime,
    path: str | Path,
    *,
    geometry: Geometry | None = None,
    names: Mapping[int, str] | None = None,
    series: DicomSeries | None = None,
) -> Any:
    """Load ``.seg.nrrd``, a label-map file or a DICOM SEG as a segmentation node (a label map must match
    ``geometry``; a DICOM SEG is placed on ``series`` when given, which must be the series it refers to)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation file {path} does not exist.")
    if is_dicom_seg(path):
        segments, seg_geometry = read_dicom_seg(path, series)
        return segmentation_from_coded(rt, segments, seg_geometry, name=path.stem)
    if full_suffix(path) == ".seg.nrrd":
        # Slicer's reader aborts the whole process (an uncaught C++ exception) on a corrupt header or
        # truncated data; ITK through SimpleITK raises a catchable error for the same files.
        try:
            sitk.ReadImage(str(path))
        except RuntimeError:
            raise InputError(f"Cannot read segmentation {path}: the file is corrupt or truncated.") from None
        node = rt.segmentations_logic.LoadSegmentationFromFile(str(path), False, path.name[: -len(".seg.nrrd")])
        if node is None:
            raise InputError(f"Cannot read segmentation {path}: the file is corrupt or not a .seg.nrrd.")
        if not segment_ids(node):
            remove_node(rt.scene, node)
            raise InputError(f"Segmentation {path} has no segments.")
        return node
    image: Image = read_image(path, what="segmentation")
    if geometry is not None and not image.geometry.same_grid(geometry):
        raise InputError(
            f"Segmentation {path} ({image.geometry.describe()}) is not on the image's grid ({geometry.describe()})."
        )
    return segmentation_from_labelmap(rt, image.array, image.geometry, name=image.name, names=names)
