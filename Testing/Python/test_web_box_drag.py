"""Box mode in headless Chromium: dragging a corner of a made box moves that corner of the box, as one undoable
action (one server and one page for the module; the helpers of ``test_web_app``).

The box's handles are its two corner points (C1, C2, drawn at the box's corners). The test places them on two
axial slices, makes the box, drags C2 within its slice and reads the box the server shows (``box_bounds``, the
ROI's lowest and highest RAS corner in mm): the dragged corner's in-slice coordinates land on the pixel under
the mouse (within one screen pixel in mm, computed from the view's geometry), the other corner and the
slice-normal extent stay as they were (to 1e-4 mm), and Ctrl+Z puts the box back (to 1e-4 mm), Ctrl+Y moves it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_web_app import (
    VIEW,
    _browser_page,
    _click_ras,
    _screen_xy,
    _serve,
    _state,
    _wait_state,
    browser,  # noqa: F401 (the module's Chromium: a pytest fixture, used by name)
    browser_needed,
)

CASE_ID = "ibsi_STS_001_PET"
DRAG_MM = np.array([6.0, -5.0, 0.0])  # where C2 is dragged, in its axial slice (RAS mm)
EXACT_MM = 1e-4  # "unchanged": the ROI node keeps centre and size, so a corner comes back to ~1e-6 mm


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _serve(data_dir, tmp_path_factory.mktemp("web_box_drag"), CASE_ID) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:  # noqa: F811 (the imported fixture)
    with _browser_page(browser, server["url"]) as pg:
        yield pg


def _bounds(page: Any) -> np.ndarray:
    return np.array(_state(page, "box_bounds"), float)


def _pixel_mm(page: Any) -> float:
    """The largest in-plane size of one screen pixel of the axial view, in mm."""
    geometry = _state(page, "view_geometry")[VIEW]
    m = np.array(geometry["xy_to_ras"]).reshape(4, 4)
    box = page.evaluate(
        """() => Array.from(document.querySelectorAll('img.image-display-area'))
             .map(e => e.getBoundingClientRect().width).sort((a, b) => a - b)"""
    )
    width = geometry["dimensions"][0]
    scale = width / min(box)  # render pixels per page pixel (≥ 1 when the image is shown smaller)
    return float(max(np.linalg.norm(m[:3, 0]), np.linalg.norm(m[:3, 1])) * max(scale, 1.0))


@browser_needed
def test_drag_a_box_corner_moves_it_undo_redo(page: Any, case_by_id: Any) -> None:
    from WeakAnnotateLib.files.image_io import read_image, read_mask

    case = case_by_id(CASE_ID)
    image = read_image(case.image)
    mask = read_mask(case.mask, grid=image.geometry)
    index = np.argwhere(mask)  # corners at voxel centres 2 voxels outside the object
    lo_index = np.maximum(index.min(axis=0) - 2, 0)
    hi_index = np.minimum(index.max(axis=0) + 2, np.array(mask.shape) - 1)
    lo, hi = image.geometry.index_to_ras(np.array([lo_index, hi_index]))

    page.click("#mode-box")
    _wait_state(page, "mode", lambda v: v == "box")
    page.click("#place-points")
    _wait_state(page, "placing", bool)
    _click_ras(page, lo)
    _wait_state(page, "n_points", lambda v: v == 1)
    _click_ras(page, hi)
    _wait_state(page, "n_points", lambda v: v == 2)
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)
    page.click("#make-box")
    made = np.array(_wait_state(page, "box_bounds", lambda b: len(b) == 2), float)
    assert not page.locator("#error").count(), page.locator("#error").inner_text()

    # Drag C2 (shown at the box's corner on hi's axial slice) by DRAG_MM.
    target = hi + DRAG_MM
    x0, y0 = _screen_xy(page, hi)
    x1, y1 = _screen_xy(page, target)
    page.mouse.move(x0 - 2, y0)
    page.mouse.move(x0, y0)  # hovering first gives the handle the focus, as in Slicer
    time.sleep(0.3)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    time.sleep(0.2)
    page.mouse.up()
    undo_label = _wait_state(page, "undo_label", lambda v: v.startswith("move"))  # the drag's action is recorded
    moved = np.array(_wait_state(page, "box_bounds", lambda b: len(b) == 2 and not np.allclose(b, made)), float)
    print("history:", _state(page, "undo_label"), "| status:", _state(page, "status"))
    print("made", made.round(2).tolist(), "moved", moved.round(2).tolist(), "undo:", undo_label)

    # The box is the one spanned by C1 (unchanged) and the dragged C2: exact extent in mm.
    expected = np.sort(np.array([lo, target]), axis=0)
    tolerance = _pixel_mm(page)
    assert tolerance < 1.0, tolerance
    moved_axes = DRAG_MM != 0
    assert np.abs(moved - expected)[:, moved_axes].max() <= tolerance, (moved, expected, tolerance)
    assert np.allclose(moved[:, ~moved_axes], made[:, ~moved_axes], rtol=0, atol=EXACT_MM), (moved, made)
    # the corner not dragged (C1's side of each moved axis) stays exactly where it was
    c1_side = np.where(lo < hi, 0, 1)
    for axis in np.flatnonzero(moved_axes):
        assert abs(moved[c1_side[axis], axis] - made[c1_side[axis], axis]) <= EXACT_MM, (axis, moved, made)
    if os.environ.get("WEAKANNOTATE_WEB_BOX_SCREENSHOT"):  # docs/images/web_box_drag.png is made this way
        for view in ("Green", "Yellow"):
            _screen_xy(page, target, view)
        page.screenshot(path=os.environ["WEAKANNOTATE_WEB_BOX_SCREENSHOT"])
    size = moved[1] - moved[0]
    assert "Box " + " x ".join(f"{v:.1f}" for v in size) in _state(page, "status"), _state(page, "status")

    # One undoable action: Ctrl+Z puts box and corner back exactly, Ctrl+Y moves them again.
    page.mouse.move(1, 1)  # the mouse off the view: the keys are the page's shortcuts
    page.keyboard.press("Control+z")
    undone = np.array(_wait_state(page, "box_bounds", lambda b: len(b) == 2 and np.allclose(b, made)), float)
    assert np.allclose(undone, made, rtol=0, atol=EXACT_MM), (undone, made)
    _wait_state(page, "undo_label", lambda v: v == "Make box")  # the drag was one action: next comes Make box
    page.keyboard.press("Control+y")
    redone = np.array(_wait_state(page, "box_bounds", lambda b: len(b) == 2 and not np.allclose(b, made)), float)
    assert np.allclose(redone, moved, rtol=0, atol=EXACT_MM), (redone, moved)
