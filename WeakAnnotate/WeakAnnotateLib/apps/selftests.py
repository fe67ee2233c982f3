"""Module self-tests, written once: each module's ``ScriptedLoadableModuleTest`` in desktop Slicer and
``Testing/Python/test_selftests.py`` under pytest (headless core) both call :func:`run_module_selftests`.

They work on the scene they are given (the application's, or a headless one) through the MRML adapter, as
the panels do. The sample is a real PET sarcoma from ``shared/data`` when present; otherwise (desktop Slicer
without the data) a synthetic ellipsoid on an oblique, anisotropic grid, so the tests never need a network.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.geometry import Geometry
from ..evaluation import simulate
from ..evaluation.metrics import dice, evaluate_masks
from ..files.cases import default_data_dir, find_case
from ..files.image_io import Image, read_image, read_mask
from ..scene.mrml_adapter import (
    add_points_node,
    add_roi_node,
    add_volume_node,
    box_of_node,
    geometry_of_node,
    image_of_node,
    points_of_node,
    segment_ids,
    segment_mask,
    set_segment_mask,
)
from ..scene.segmentation_io import labelmap_from_segmentation, read_segmentation, write_segmentation
from ..scene.slicer_runtime import SlicerRuntime

SAMPLE_CASE = "ibsi_STS_001_PET"


def sample() -> tuple[Image, np.ndarray]:
    """(image, object mask): the real PET sarcoma STS_001 if the data is here, else a synthetic ellipsoid."""
    data = default_data_dir()
    if data is not None:
        case = find_case(SAMPLE_CASE, data)
        image = read_image(case.image)
        return image, read_mask(case.mask, grid=image.geometry)
    shape = (40, 48, 56)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    geometry = Geometry.from_spacing_origin_direction((0.9, 1.1, 2.5), (-30.0, 12.0, 40.0), rotation, shape)
    k, j, i = np.indices(shape, dtype=float)
    mask = ((k - 20) / 8) ** 2 + ((j - 24) / 14) ** 2 + ((i - 28) / 18) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    array = (100.0 * mask + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    return Image(array, geometry, "synthetic"), mask


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- WeakAnnotate (hub) ---------------------------------------------------------------------------------


def test_volume_and_segment_round_trip(rt: SlicerRuntime) -> None:
    image, mask = sample()
    volume = add_volume_node(rt, image, "sample")
    back = image_of_node(volume)
    _check(np.array_equal(back.array, image.array), "volume node changed the voxels")
    _check(
        np.abs(geometry_of_node(volume).ijk_to_ras - image.geometry.ijk_to_ras).max() < 1e-9,
        "volume node changed the IJK→RAS matrix",
    )
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reference")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    sid = set_segment_mask(rt, segmentation, mask, image.geometry, "tumour")
    _check(np.array_equal(segment_mask(segmentation, sid, image.geometry), mask), "segment changed the mask")


def test_evaluate_prediction_segment(rt: SlicerRuntime) -> None:
    image, mask = sample()
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "evaluation")
    eroded = ndimage.binary_erosion(mask)
    ref_id = set_segment_mask(rt, segmentation, mask, image.geometry, "reference")
    pred_id = set_segment_mask(rt, segmentation, eroded, image.geometry, "prediction")
    ref = segment_mask(segmentation, ref_id, image.geometry)
    pred = segment_mask(segmentation, pred_id, image.geometry)
    result = evaluate_masks(ref, pred, image.geometry)
    expected = 2.0 * eroded.sum() / (mask.sum() + eroded.sum())
    _check(abs(result["dice"] - expected) < 1e-9, f"Dice {result['dice']} != {expected}")
    _check(result["hd95_mm"] is not None and result["hd95_mm"] > 0, "HD95 of an eroded mask must be positive")
    same = evaluate_masks(ref, ref, image.geometry)
    _check(same["dice"] == 1.0 and same["hd95_mm"] == 0.0, f"a mask against itself scored {same}")


def test_segmentation_file_round_trip(rt: SlicerRuntime) -> None:
    image, mask = sample()
    labelmap = mask.astype(np.uint8) + ndimage.binary_dilation(mask, iterations=2).astype(np.uint8)
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "two labels")
    set_segment_mask(rt, segmentation, labelmap == 1, image.geometry, "ring")
    set_segment_mask(rt, segmentation, labelmap == 2, image.geometry, "core")
    with tempfile.TemporaryDirectory() as folder:
        path = write_segmentation(Path(folder) / "two.seg.nrrd", segmentation)
        loaded = read_segmentation(rt, path)
    _check(len(segment_ids(loaded)) == 2, "the .seg.nrrd lost a segment")
    back, names = labelmap_from_segmentation(loaded, image.geometry)
    _check(names == {1: "ring", 2: "core"}, f"segment names came back as {names}")
    _check(np.array_equal(back, labelmap), "the .seg.nrrd round trip changed voxels")


# --- ExtremePointSeg ------------------------------------------------------------------------------------


def test_extreme_points_node(rt: SlicerRuntime) -> None:
    image, mask = sample()
    points, labels = simulate.extreme_points(mask, image.geometry)
    node = add_points_node(rt, points, labels, "extreme points", required=6)
    placed, placed_labels = points_of_node(node)
    _check(placed_labels == labels, f"labels changed: {placed_labels}")
    index = image.geometry.ras_to_index(placed)
    coords = np.argwhere(mask)
    for n, axis in enumerate((2, 2, 1, 1, 0, 0)):
        end = coords[:, axis].min() if n % 2 == 0 else coords[:, axis].max()
        _check(index[n, axis] == end, f"point {labels[n]} is not at the object's extreme along axis {axis}")
        _check(bool(mask[tuple(index[n])]), f"point {labels[n]} is not on the object")


def test_extreme_point_segmentation_on_nodes(rt: SlicerRuntime) -> None:
    from ..core.errors import InputError
    from ..methods.extreme_points.segmenter import segment_from_nodes, stored_extreme_points

    image, mask = sample()
    volume = add_volume_node(rt, image, "sample")
    points, labels = simulate.extreme_points(mask, image.geometry)
    node = add_points_node(rt, points, labels, "extreme points")
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "pseudo-label")
    segment_id, result = segment_from_nodes(rt, volume, node, segmentation, "tumour")
    score = dice(mask, segment_mask(segmentation, segment_id, image.geometry))
    # Measured 0.79 on the PET sample and 0.9+ on the phantom (docs/extreme_points.md); 0.6 catches breakage.
    _check(score > 0.6, f"extreme-point segmentation Dice {score:.3f} against the reference")
    kept = stored_extreme_points(segmentation, segment_id)
    _check(kept is not None and np.abs(kept - points).max() < 1e-6, "the points were not stored with the segment")

    before = rt.scene.GetNumberOfNodes()
    five = add_points_node(rt, points[:5], labels[:5], "five points")
    try:
        segment_from_nodes(rt, volume, five, segmentation, "other")
    except InputError as error:
        _check("6" in str(error), f"unclear message for 5 points: {error}")
    else:
        raise AssertionError("5 points were accepted")
    _check(not segmentation.GetSegmentation().GetSegmentIdBySegmentName("other"), "a failed run left a segment")
    _check(rt.scene.GetNumberOfNodes() == before + 1 + len(_display_nodes(five)), "a failed run changed the scene")


def _display_nodes(node) -> list:
    return [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]


# --- BoxCorrection --------------------------------------------------------------------------------------


def test_box_roi_node(rt: SlicerRuntime) -> None:
    image, mask = sample()
    node = add_roi_node(rt, simulate.tight_box(mask, image.geometry, margin_mm=0.0), "box")
    inside = simulate.box_mask(box_of_node(node), image.geometry)
    coords, box_coords = np.argwhere(mask), np.argwhere(inside)
    _check(bool(inside[mask].all()), "the tight box misses object voxels")
    _check(
        np.array_equal(coords.min(0), box_coords.min(0)) and np.array_equal(coords.max(0), box_coords.max(0)),
        "the ROI node's box is not the object's tight box",
    )
    _check(dice(mask, inside) < 1.0, "a box cannot be the object itself")


# --- SurfaceTemplate ------------------------------------------------------------------------------------


def test_surface_points_node(rt: SlicerRuntime) -> None:
    image, mask = sample()
    node = add_points_node(rt, simulate.surface_points(mask, image.geometry, 25), name="surface points")
    placed, _ = points_of_node(node)
    index = image.geometry.ras_to_index(placed)
    surface = simulate.surface_voxels(mask)
    _check(len(placed) == 25, f"{len(placed)} surface points placed, 25 asked")
    _check(bool(surface[tuple(index.T)].all()), "a surface point is not on the object's surface")


def test_surface_template_on_nodes(rt: SlicerRuntime) -> None:
    import vtk

    from ..core.errors import InputError
    from ..methods.surface_template.nodes import EFFORT_CLICKS_TAG, stored_surface_points, surface_template_from_nodes

    image, mask = sample()
    volume = add_volume_node(rt, image, "sample")
    points = simulate.surface_points(mask, image.geometry, 50)
    node = add_points_node(rt, points, name="surface points")
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "templates")
    segment_id, surface = surface_template_from_nodes(rt, volume, node, segmentation, "tumour", effort_seconds=12.0)
    score = dice(mask, segment_mask(segmentation, segment_id, image.geometry))
    # Measured 0.947 on the PET sample with 50 points (docs/surface_template.md); 0.85 catches breakage.
    _check(score > 0.85, f"surface template Dice {score:.3f} against the reference")
    kept = stored_surface_points(segmentation, segment_id)
    _check(kept is not None and np.abs(kept - points).max() < 1e-6, "the points were not stored with the segment")
    clicks = vtk.mutable("")
    segmentation.GetSegmentation().GetSegment(segment_id).GetTag(EFFORT_CLICKS_TAG, clicks)
    _check(str(clicks) == "50", f"effort tag {EFFORT_CLICKS_TAG} is {clicks!s}, 50 expected")

    before = rt.scene.GetNumberOfNodes()
    four = add_points_node(rt, points[:4], name="four points")
    try:
        surface_template_from_nodes(rt, volume, four, segmentation, "other")
    except InputError as error:
        _check("5" in str(error), f"unclear message for 4 points: {error}")
    else:
        raise AssertionError("4 points were accepted")
    _check(not segmentation.GetSegmentation().GetSegmentIdBySegmentName("other"), "a failed run left a segment")
    _check(rt.scene.GetNumberOfNodes() == before + 1 + len(_display_nodes(four)), "a failed run changed the scene")


SELFTESTS: dict[str, list[Callable[[SlicerRuntime], None]]] = {
    "WeakAnnotate": [
        test_volume_and_segment_round_trip,
        test_evaluate_prediction_segment,
        test_segmentation_file_round_trip,
    ],
    "ExtremePointSeg": [test_extreme_points_node, test_extreme_point_segmentation_on_nodes],
    "BoxCorrection": [test_box_roi_node],
    "SurfaceTemplate": [test_surface_points_node, test_surface_template_on_nodes],
}


def run_module_selftests(module: str, rt: SlicerRuntime) -> list[str]:
    """Run a module's self-tests on ``rt``; raises AssertionError on the first failure, returns the names run."""
    if module not in SELFTESTS:
        raise KeyError(f"No self-tests for module {module!r}; known: {', '.join(SELFTESTS)}")
    names = []
    for test in SELFTESTS[module]:
        test(rt)
        names.append(test.__name__)
    return names
