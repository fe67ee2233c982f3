"""The BoxCorrection module's self-tests (desktop Slicer's Test class and pytest both run them; see
:mod:`WeakAnnotateLib.apps.selftests`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...evaluation import simulate
from ...evaluation.metrics import dice
from ...evaluation.selftest_support import check, sample
from ...scene.mrml_adapter import add_roi_node, box_of_node
from ...scene.slicer_runtime import SlicerRuntime


def test_box_roi_node(rt: SlicerRuntime) -> None:
    image, mask = sample()
    node = add_roi_node(rt, simulate.tight_box(mask, image.geometry, margin_mm=0.0), "box")
    inside = simulate.box_mask(box_of_node(node), image.geometry)
    coords, box_coords = np.argwhere(mask), np.argwhere(inside)
    check(bool(inside[mask].all()), "the tight box misses object voxels")
    check(
        np.array_equal(coords.min(0), box_coords.min(0)) and np.array_equal(coords.max(0), box_coords.max(0)),
        "the ROI node's box is not the object's tight box",
    )
    check(dice(mask, inside) < 1.0, "a box cannot be the object itself")


SELFTESTS: list[Callable[[SlicerRuntime], None]] = [test_box_roi_node]
