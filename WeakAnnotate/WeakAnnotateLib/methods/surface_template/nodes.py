"""Surface template on MRML nodes: the node-level logic the SurfaceTemplate panel, the web app and tests share.

* :func:`update_model_node` shows an :class:`~.active_surface.ActiveSurface` as a model node
  (3D, and its intersection with every slice view).
* :func:`surface_template_from_nodes` fits the template to a point list on a volume and writes the rasterised
  surface into a segment, with the points (tag ``WeakAnnotate.SurfacePoints``, RAS JSON) kept for later edits
  and the annotation effort (``WeakAnnotate.EffortClicks``, ``WeakAnnotate.EffortSeconds``). Everything is
  computed before the scene is touched, so bad input leaves the scene as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InputError
from ...files.image_io import Image
from ...scene.markups_io import read_points
from ...scene.mrml_adapter import (
    image_of_node,
    points_of_node,
    points_tag_value,
    scene_change,
    set_segment_mask,
    stored_points,
)
from .active_surface import MIN_POINTS, ActiveSurface, SurfaceParams

POINTS_TAG = "WeakAnnotate.SurfacePoints"
EFFORT_CLICKS_TAG = "WeakAnnotate.EffortClicks"
EFFORT_SECONDS_TAG = "WeakAnnotate.EffortSeconds"


def stored_surface_points(segmentation_node: Any, segment_id: str) -> np.ndarray | None:
    """The RAS points a segment's template was fitted to, or None if it has none."""

    return stored_points(segmentation_node, segment_id, POINTS_TAG)


def update_model_node(rt: Any, surface: ActiveSurface, model_node: Any = None, name: str = "Surface template") -> Any:
    """Create (or refresh) a model node showing the surface in 3D and as a contour on the slice views."""

    poly = surface.polydata()
    if model_node is not None and rt.scene.IsNodePresent(model_node):
        model_node.SetAndObservePolyData(poly)
        return model_node
    with scene_change(rt.scene):
        model_node = rt.scene.AddNewNodeByClass("vtkMRMLModelNode", name)
        model_node.SetAndObservePolyData(poly)
        model_node.CreateDefaultDisplayNodes()
        display = model_node.GetDisplayNode()
        if display is not None:
            display.SetColor(0.95, 0.75, 0.2)
            display.SetOpacity(0.5)
            display.SetVisibility2D(True)  # slice intersections
            display.SetSliceIntersectionThickness(2)
    return model_node


def surface_template_from_nodes(
    rt: Any,
    volume_node: Any,
    points_node: Any,
    segmentation_node: Any,
    segment_name: str,
    color: Sequence[float] | None = None,
    params: SurfaceParams | None = None,
    *,
    surface: ActiveSurface | None = None,
    effort_seconds: float | None = None,
) -> tuple[str, ActiveSurface]:
    """Fit the template to the points and write it into ``segment_name``; returns (segment ID, surface).

    ``surface``: a warm surface to update (the panel's), else a new one is fitted. ``effort_seconds``: time
    from the first point placed to Apply, stored with the number of points as the annotation effort.
    """

    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("Select an input volume with image data.")
    if segmentation_node is None:
        raise InputError("Select or create an output segmentation.")
    name = (segment_name or "").strip()
    if not name:
        raise InputError("Give the segment a name.")
    image = image_of_node(volume_node)
    points, _labels = points_of_node(points_node)
    if surface is None or surface.params != (params or surface.params):
        surface = ActiveSurface(geometry=image.geometry, params=params)
    surface.geometry = image.geometry
    surface.set_points(points)
    surface.update()
    mask = surface.rasterize(image.geometry)
    if not mask.any():
        raise InputError("The fitted surface contains no voxel centre of the image; place points on the object.")
    with scene_change(rt.scene):
        segmentation = segmentation_node.GetSegmentation()
        existed = bool(segmentation.GetSegmentIdBySegmentName(name))
        segment_id = set_segment_mask(rt, segmentation_node, mask, image.geometry, name, color)
        try:
            segment = segmentation.GetSegment(segment_id)
            segment.SetTag(POINTS_TAG, points_tag_value(points))
            segment.SetTag(EFFORT_CLICKS_TAG, str(len(points)))
            if effort_seconds is not None:
                segment.SetTag(EFFORT_SECONDS_TAG, f"{float(effort_seconds):.1f}")
        except Exception:
            if not existed:
                segmentation.RemoveSegment(segment_id)
            raise
    return segment_id, surface


def label_case(image: Image, annotation_path: str | Path, params: SurfaceParams | None = None) -> np.ndarray:
    """The pseudo-label of one dataset case: its surface points (a ``.mrk.json``) → the rasterised template."""
    points, _ = read_points(annotation_path, min_count=MIN_POINTS, geometry=image.geometry, what="surface points")
    mask = ActiveSurface(points, geometry=image.geometry, params=params).rasterize(image.geometry)
    if not mask.any():
        raise InputError("The fitted surface contains no voxel centre of the image; place points on the object.")
    return mask
