"""The ExtremePointSeg module's self-tests (desktop Slicer's Test class and pytest both run them; see
:mod:`WeakAnnotateLib.apps.selftests`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from ...core.errors import InputError
from ...evaluation import simulate
from ...evaluation.metrics import dice
from ...evaluation.selftest_support import check, display_nodes, sample
from ...scene.mrml_adapter import add_points_node, add_volume_node, points_of_node, segment_mask
from ...scene.slicer_runtime import SlicerRuntime
from .corrective import Click, correct_from_nodes, stored_clicks
from .segmenter import segment_from_nodes, stored_extreme_points


def test_extreme_points_node(rt: SlicerRuntime) -> None:
    image, mask = sample()
    points, labels = simulate.extreme_points(mask, image.geometry)
    node = add_points_node(rt, points, labels, "extreme points", required=6)
    placed, placed_labels = points_of_node(node)
    check(placed_labels == labels, f"labels changed: {placed_labels}")
    index = image.geometry.ras_to_index(placed)
    coords = np.argwhere(mask)
    for n, axis in enumerate((2, 2, 1, 1, 0, 0)):
        end = coords[:, axis].min() if n % 2 == 0 else coords[:, axis].max()
        check(index[n, axis] == end, f"point {labels[n]} is not at the object's extreme along axis {axis}")
        check(bool(mask[tuple(index[n])]), f"point {labels[n]} is not on the object")


def test_extreme_point_segmentation_on_nodes(rt: SlicerRuntime) -> None:
    image, mask = sample()
    volume = add_volume_node(rt, image, "sample")
    points, labels = simulate.extreme_points(mask, image.geometry)
    node = add_points_node(rt, points, labels, "extreme points")
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "pseudo-label")
    segment_id, result = segment_from_nodes(rt, volume, node, segmentation, "tumour")
    score = dice(mask, segment_mask(segmentation, segment_id, image.geometry))
    # Measured 0.79 on the PET sample and 0.9+ on the phantom (docs/extreme_points.md); 0.6 catches breakage.
    check(score > 0.6, f"extreme-point segmentation Dice {score:.3f} against the reference")
    kept = stored_extreme_points(segmentation, segment_id)
    check(kept is not None and np.abs(kept - points).max() < 1e-6, "the points were not stored with the segment")

    before = rt.scene.GetNumberOfNodes()
    five = add_points_node(rt, points[:5], labels[:5], "five points")
    try:
        segment_from_nodes(rt, volume, five, segmentation, "other")
    except InputError as error:
        check("6" in str(error), f"unclear message for 5 points: {error}")
    else:
        raise AssertionError("5 points were accepted")
    check(not segmentation.GetSegmentation().GetSegmentIdBySegmentName("other"), "a failed run left a segment")
    check(rt.scene.GetNumberOfNodes() == before + 1 + len(display_nodes(five)), "a failed run changed the scene")


def test_corrective_click_is_one_undo_step(rt: SlicerRuntime) -> None:
    """The panel's corrections on nodes: a click at the worst error updates the segment and is stored on it; the
    scene's undo takes back that one click voxel for voxel (the six points' segment stays), redo applies it again."""
    image, mask = sample()
    g = image.geometry
    volume = add_volume_node(rt, image, "sample")
    points, labels = simulate.extreme_points(mask, g)
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "corrected")
    segment_id, _result = segment_from_nodes(rt, volume, add_points_node(rt, points, labels, "six"), segmentation, "t")
    six = segment_mask(segmentation, segment_id, g)
    missed, false = mask & ~six, six & ~mask
    if (missed | false).any():  # the robot user: the larger error, at its deepest voxel
        positive = bool(missed.sum() >= false.sum())
        error = missed if positive else false
    else:  # a perfect segment: a negative click inside it
        positive, error = False, six
    deepest = ndimage.distance_transform_edt(np.pad(error, 1), sampling=g.array_spacing)[1:-1, 1:-1, 1:-1]
    at = np.asarray(np.unravel_index(int(np.argmax(deepest)), deepest.shape))
    click = Click.make(g.index_to_ras(at[None])[0], positive)
    scene = rt.scene
    was_on = scene.GetUndoFlag()
    scene.SetUndoOn()
    segmentation.SetUndoEnabled(True)
    try:
        levels = scene.GetNumberOfUndoLevels()
        _sid, result, _session = correct_from_nodes(rt, volume, segmentation, segment_id, [click])
        check(scene.GetNumberOfUndoLevels() == levels + 1, "a corrective click is not exactly one undo step")
        corrected = segment_mask(segmentation, segment_id, g)
        check(
            np.array_equal(corrected, result.mask) and not np.array_equal(corrected, six), "the click changed nothing"
        )
        check(stored_clicks(segmentation, segment_id) == [click], "the click was not stored on the segment")
        scene.Undo()
        check(np.array_equal(segment_mask(segmentation, segment_id, g), six), "undo did not restore the segment")
        check(stored_clicks(segmentation, segment_id) == [], "undo left the click stored")
        scene.Redo()
        check(np.array_equal(segment_mask(segmentation, segment_id, g), corrected), "redo did not re-apply the click")
    finally:
        segmentation.SetUndoEnabled(False)
        scene.ClearUndoStack()
        scene.ClearRedoStack()
        scene.SetUndoFlag(was_on)


SELFTESTS: list[Callable[[SlicerRuntime], None]] = [
    test_extreme_points_node,
    test_extreme_point_segmentation_on_nodes,
    test_corrective_click_is_one_undo_step,
]
