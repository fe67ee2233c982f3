"""Module self-tests, written once: each module's ``ScriptedLoadableModuleTest`` in desktop Slicer and
``Testing/Python/test_selftests.py`` under pytest (headless core) both call :func:`run_module_selftests`.

The hub's own tests are here; every other module's come from the registry (the descriptors' ``selftests`` of
the methods whose panel that module is). They work on the scene they are given (the application's, or a
headless one) through the MRML adapter, as the panels do; the sample is
:func:`~WeakAnnotateLib.evaluation.selftest_support.sample`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..evaluation.metrics import evaluate_masks
from ..evaluation.selftest_support import check, sample
from ..methods import registry
from ..methods.base import load_object
from ..scene.mrml_adapter import (
    add_volume_node,
    geometry_of_node,
    image_of_node,
    segment_ids,
    segment_mask,
    set_segment_mask,
)
from ..scene.segmentation_io import labelmap_from_segmentation, read_segmentation, write_segmentation
from ..scene.slicer_runtime import SlicerRuntime

HUB = "WeakAnnotate"

# --- WeakAnnotate (hub) ---------------------------------------------------------------------------------


def test_volume_and_segment_round_trip(rt: SlicerRuntime) -> None:
    image, mask = sample()
    volume = add_volume_node(rt, image, "sample")
    back = image_of_node(volume)
    check(np.array_equal(back.array, image.array), "volume node changed the voxels")
    check(
        np.abs(geometry_of_node(volume).ijk_to_ras - image.geometry.ijk_to_ras).max() < 1e-9,
        "volume node changed the IJK→RAS matrix",
    )
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reference")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    sid = set_segment_mask(rt, segmentation, mask, image.geometry, "tumour")
    check(np.array_equal(segment_mask(segmentation, sid, image.geometry), mask), "segment changed the mask")


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
    check(abs(result["dice"] - expected) < 1e-9, f"Dice {result['dice']} != {expected}")
    check(result["hd95_mm"] is not None and result["hd95_mm"] > 0, "HD95 of an eroded mask must be positive")
    same = evaluate_masks(ref, ref, image.geometry)
    check(same["dice"] == 1.0 and same["hd95_mm"] == 0.0, f"a mask against itself scored {same}")


def test_segmentation_file_round_trip(rt: SlicerRuntime) -> None:
    image, mask = sample()
    labelmap = mask.astype(np.uint8) + ndimage.binary_dilation(mask, iterations=2).astype(np.uint8)
    segmentation = rt.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "two labels")
    set_segment_mask(rt, segmentation, labelmap == 1, image.geometry, "ring")
    set_segment_mask(rt, segmentation, labelmap == 2, image.geometry, "core")
    with tempfile.TemporaryDirectory() as folder:
        path = write_segmentation(Path(folder) / "two.seg.nrrd", segmentation)
        loaded = read_segmentation(rt, path)
    check(len(segment_ids(loaded)) == 2, "the .seg.nrrd lost a segment")
    back, names = labelmap_from_segmentation(loaded, image.geometry)
    check(names == {1: "ring", 2: "core"}, f"segment names came back as {names}")
    check(np.array_equal(back, labelmap), "the .seg.nrrd round trip changed voxels")


HUB_SELFTESTS: list[Callable[[SlicerRuntime], None]] = [
    test_volume_and_segment_round_trip,
    test_evaluate_prediction_segment,
    test_segmentation_file_round_trip,
]


def module_selftests() -> dict[str, list[Callable[[SlicerRuntime], None]]]:
    """Slicer module → its self-test bodies: the hub's, then each method's (by its descriptor's module)."""
    tests: dict[str, list[Callable[[SlicerRuntime], None]]] = {HUB: list(HUB_SELFTESTS)}
    for method in registry.annotation_methods():
        if method.selftests:
            tests.setdefault(method.module or HUB, []).extend(load_object(method.selftests))
    return tests


def run_module_selftests(module: str, rt: SlicerRuntime) -> list[str]:
    """Run a module's self-tests on ``rt``; raises AssertionError on the first failure, returns the names run."""
    tests = module_selftests()
    if module not in tests:
        raise KeyError(f"No self-tests for module {module!r}; known: {', '.join(tests)}")
    names = []
    for test in tests[module]:
        test(rt)
        names.append(test.__name__)
    return names
