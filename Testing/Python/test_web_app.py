"""The browser app (``weakannotate serve``) driven by headless Chromium through playwright.

The server runs in a subprocess on a free loopback port with a real case open. The test clicks the six
extreme points (simulated from the case's reference mask) in the axial slice view: for each point it moves
the view's slice slider to the point's axial position (the same trame state the slider writes), then maps the
point's RAS through the slice node's XY→RAS (published by the page as ``view_geometry``) to a pixel of the
view's image and clicks there. Then Segment, a 7th click (an error in the page), Undo, Save. The surface-points
mode (4 points → the logic's error; 12 points → Fit template; drag, fit again; Save) and the box mode (two
corners → an ROI and its voxels as a segment; Save) are clicked the same way.

Skipped, with the reason, when /usr/bin/chromium, the playwright package or the shared data is missing
(``make setup`` installs both; see the Makefile).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from WeakAnnotateLib.commands.serve import is_loopback
from WeakAnnotateLib.errors import InputError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CASE_ID = "ibsi_STS_001_PET"
VIEW = "Red"  # the axial view
# Dice of the pseudo-label from the exact simulated points, computed in this run, minus this margin: clicks land
# on screen pixels (~0.3 mm here), not on the exact voxel centres.
DICE_MARGIN = 0.05

_missing = []
if not Path(CHROMIUM).is_file():
    _missing.append(f"{CHROMIUM} (Debian package chromium)")
if importlib.util.find_spec("playwright") is None:
    _missing.append("the playwright Python package (pip install -e '.[dev]')")
browser_needed = pytest.mark.skipif(bool(_missing), reason="browser tests need " + " and ".join(_missing))


# --- without a browser ----------------------------------------------------------------------------------


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")


def test_workspace_keeps_names_inside(tmp_path: Path) -> None:
    from WeakAnnotateWeb.workspace import Workspace, safe_name

    ws = Workspace(tmp_path / "work")
    for hostile in ("../../etc/passwd", "..", "/abs/path", "a/../../b", "..\\..\\x", "~root", "name\x00.txt"):
        for p in (ws.path(hostile + "x", hostile + "y", ".mrk.json"), ws.path("case", hostile + "y", ".seg.nrrd")):
            assert p.is_relative_to(ws.root) and p.parent.parent == ws.root, (hostile, p)
    assert safe_name("  my points v2 ") == "my_points_v2"
    with pytest.raises(InputError, match="no usable characters"):
        safe_name("../..")
    # A case folder that is a symbolic link out of the work folder is refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    ws.root.mkdir()
    (ws.root / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="kept inside"):
        ws.path("evil", "points", ".mrk.json")


def test_serve_rejects_missing_catalogue(tmp_path: Path) -> None:
    from WeakAnnotateLib.cli import main

    assert main(["serve", "--data", str(tmp_path), "--port", "0"]) == 2


def test_serve_warns_off_loopback(monkeypatch: pytest.MonkeyPatch, capsys: Any, data_dir: Path) -> None:
    import WeakAnnotateWeb.app as web
    from WeakAnnotateLib.cli import main

    def stop(*_: Any, **__: Any) -> None:
        raise InputError("stopped before listening")

    monkeypatch.setenv("TRAME_ARGS", "")  # serve sets it; restored after the test
    monkeypatch.setattr(web, "create_app", stop)
    assert main(["serve", "--data", str(data_dir), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "WARNING: listening on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--data", str(data_dir), "--port", "0"]) == 2
    assert "WARNING" not in capsys.readouterr().err


# --- in the browser ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``weakannotate serve`` on a free loopback port with the case open; its work folder in a temp dir."""
    base = tmp_path_factory.mktemp("web")
    work = base / "work"
    port = _free_port()
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed after the process ends
    env = {**os.environ, "WEAKANNOTATE_DATA": str(data_dir)}
    cmd = [sys.executable, "-m", "WeakAnnotateLib.cli", "serve", "--data", str(data_dir), "--work", str(work)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--case", CASE_ID], stdout=log, stderr=subprocess.STDOUT, cwd=base, env=env
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"server did not start: {(base / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
    try:
        yield {"url": url, "work": work, "base": base}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 760}, device_scale_factor=1)
        pg.set_default_timeout(30_000)
        pg.goto(server["url"])
        pg.wait_for_selector("#segment")
        _wait_state(pg, "view_geometry", lambda g: bool(g) and g[VIEW]["dimensions"][0] > 50)
        yield pg
        browser.close()


def _state(page: Any, key: str) -> Any:
    return page.evaluate("(k) => window.trame.state.get(k)", key)


def _wait_state(page: Any, key: str, ok: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = _state(page, key)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"state {key!r} = {value!r} did not reach the expected value")
        time.sleep(0.1)


def _view_image_box(page: Any, view: str) -> dict[str, float]:
    """Bounding box of a view's image: axial, coronal, sagittal from left to right."""
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('img.image-display-area'))
             .map(e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })
             .sort((a, b) => a.x - b.x)"""
    )
    assert len(boxes) == 3, boxes
    return boxes[("Red", "Green", "Yellow").index(view)]


def _screen_xy(page: Any, ras: np.ndarray, view: str = VIEW) -> tuple[float, float]:
    """Bring the view's slice to the point (as its slider does); the page pixel where the point is shown."""
    geometry = _state(page, "view_geometry")[view]
    normal = np.array(geometry["xy_to_ras"]).reshape(4, 4)[:3, 2]
    offset = float(np.dot(normal / np.linalg.norm(normal), ras))
    page.evaluate("([k, v]) => window.trame.state.set(k, v)", [f"{view}__SliderState__value", offset])
    geometry = _wait_state(page, "view_geometry", lambda g: abs(g[view]["offset"] - offset) < 1e-3)[view]
    xy_to_ras = np.array(geometry["xy_to_ras"]).reshape(4, 4)
    x, y, z, _ = np.linalg.solve(xy_to_ras, np.append(ras, 1.0))
    assert abs(z) < 1e-3, f"point not on the slice (z = {z})"
    width, height = geometry["dimensions"][:2]
    box = _view_image_box(page, view)
    # VTK's y runs up from the bottom row; pixel (x, y) covers [x, x+1): aim at its centre.
    return box["x"] + (x + 0.5) * box["w"] / width, box["y"] + (height - y - 0.5) * box["h"] / height


def _click_ras(page: Any, ras: np.ndarray) -> None:
    page.mouse.move(*_screen_xy(page, ras))
    page.mouse.down()
    page.mouse.up()


def _drag_ras(page: Any, start: np.ndarray, end: np.ndarray) -> None:
    """Drag the point shown at ``start`` to ``end`` (both on the same axial slice)."""
    x0, y0 = _screen_xy(page, start)
    x1, y1 = _screen_xy(page, end)
    page.mouse.move(x0 - 2, y0)
    page.mouse.move(x0, y0)  # hovering first gives the point's handle the focus, as in Slicer
    time.sleep(0.3)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    time.sleep(0.2)
    page.mouse.up()


@pytest.fixture(scope="module")
def reference(case_by_id: Any) -> dict[str, Any]:
    """The case's reference mask, its six simulated extreme points, and the Dice those give in-process now."""
    from WeakAnnotateLib.extreme_points import segment_extreme_points
    from WeakAnnotateLib.image_io import read_image, read_mask
    from WeakAnnotateLib.metrics import dice
    from WeakAnnotateLib.simulate import extreme_points

    case = case_by_id(CASE_ID)
    image = read_image(case.image)
    mask = read_mask(case.mask, grid=image.geometry)
    points, _ = extreme_points(mask, image.geometry)
    expected = dice(mask, segment_extreme_points(image.array, image.geometry, points).mask)
    return {"image": image, "mask": mask, "points": points, "expected_dice": expected}


@browser_needed
def test_page_shows_case_views_and_presets(page: Any) -> None:
    assert page.locator("#current-case").inner_text().strip() == CASE_ID
    assert page.locator("img.image-display-area").count() == 3  # axial, coronal, sagittal; no 3D view
    assert _state(page, "wl_preset") == "PET SUV 0-10"
    presets = _state(page, "wl_presets")
    assert any(p.startswith("CT") for p in presets) and any(p.startswith("MR") for p in presets)


@browser_needed
def test_six_clicks_segment_seventh_undo_save(page: Any, server: dict[str, Any], reference: dict[str, Any]) -> None:
    from WeakAnnotateLib.markups_io import read_points
    from WeakAnnotateLib.metrics import dice
    from WeakAnnotateLib.segmentation_io import labelmap_from_segmentation, read_segmentation
    from WeakAnnotateLib.slicer_runtime import new_headless_runtime

    geometry = reference["image"].geometry
    page.click("#place-points")
    _wait_state(page, "placing", bool)
    for n, ras in enumerate(reference["points"], start=1):
        _click_ras(page, ras)
        _wait_state(page, "n_points", lambda v, n=n: v == n)

    page.click("#segment")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith(\"Segment '\")")
    assert not page.locator("#error").count(), page.locator("#error").inner_text()

    # A 7th point: the page names the problem; Undo removes it.
    _click_ras(page, reference["points"].mean(axis=0))
    _wait_state(page, "n_points", lambda v: v == 7)
    page.wait_for_selector("#error")
    assert "Exactly 6 extreme points are needed, got 7" in page.locator("#error").inner_text()
    page.click("#undo-point")
    _wait_state(page, "n_points", lambda v: v == 6)
    page.wait_for_selector("#error", state="detached")
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)

    # Move a point (drag it 6 mm towards the centre within its slice) and segment again.
    moved = reference["points"].copy()
    inward = moved.mean(axis=0) - moved[0]
    inward[2] = 0.0
    moved[0] = moved[0] + 6.0 * inward / np.linalg.norm(inward)
    before = page.locator("#status").inner_text()
    _drag_ras(page, reference["points"][0], moved[0])
    page.click("#segment")
    page.wait_for_function(
        "(b) => { const s = document.querySelector('#status').innerText; "
        'return s.startsWith("Segment \'") && s != b; }',
        arg=before,
    )

    print("status after the second Segment:", page.locator("#status").inner_text())
    if os.environ.get("WEAKANNOTATE_WEB_SCREENSHOT"):  # docs/images/web_app.png is made this way
        centre = reference["points"].mean(axis=0)
        for view in ("Red", "Green", "Yellow"):
            _screen_xy(page, centre, view)
        page.screenshot(path=os.environ["WEAKANNOTATE_WEB_SCREENSHOT"])

    # Save, with a hostile name: it is sanitised and stays inside the work folder.
    page.fill("#save-name", "../../escape/points")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")
    work: Path = server["work"]
    written = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    assert written == [f"{CASE_ID}/escape_points.mrk.json", f"{CASE_ID}/escape_points.seg.nrrd"], written
    outside = [p for p in server["base"].rglob("*") if p.is_file() and not p.is_relative_to(work)]
    assert [p.name for p in outside] == ["server.log"], outside

    points, _ = read_points(work / CASE_ID / "escape_points.mrk.json", count=6, geometry=geometry)
    assert np.abs(points - moved).max() < 1.0  # clicked (and dragged) within 1 mm of each intended position
    assert json.loads((work / CASE_ID / "escape_points.mrk.json").read_text())["markups"][0]["type"] == "Fiducial"
    rt = new_headless_runtime()
    labelmap, _ = labelmap_from_segmentation(read_segmentation(rt, work / CASE_ID / "escape_points.seg.nrrd"), geometry)
    got = dice(reference["mask"], labelmap > 0)
    print(f"web app Dice {got:.3f}; in-process from the exact points {reference['expected_dice']:.3f}")
    assert got >= reference["expected_dice"] - DICE_MARGIN, (got, reference["expected_dice"])


SURFACE_POINTS = 12
# Measured: 0.932 in the browser (0.935 in-process from the intended points); the floor is that minus 0.05.
SURFACE_DICE_FLOOR = 0.88


@browser_needed
def test_surface_points_fit_move_refit_save(page: Any, server: dict[str, Any], reference: dict[str, Any]) -> None:
    """Surface mode: 4 points → the logic's error; 12 points → Fit template; drag one, fit again; save."""
    from WeakAnnotateLib.active_surface import ActiveSurface
    from WeakAnnotateLib.markups_io import read_points
    from WeakAnnotateLib.metrics import dice
    from WeakAnnotateLib.segmentation_io import labelmap_from_segmentation, read_segmentation
    from WeakAnnotateLib.simulate import surface_points
    from WeakAnnotateLib.slicer_runtime import new_headless_runtime

    geometry = reference["image"].geometry
    points = surface_points(reference["mask"], geometry, SURFACE_POINTS)
    if _state(page, "placing"):
        page.click("#place-points")
        _wait_state(page, "placing", lambda v: not v)
    page.click("#mode-surface")
    _wait_state(page, "mode", lambda v: v == "surface")
    _wait_state(page, "n_points", lambda v: v == 0)  # its own point list; the extreme points stay in theirs
    page.click("#place-points")
    _wait_state(page, "placing", bool)
    for n, ras in enumerate(points[:4], start=1):
        _click_ras(page, ras)
        _wait_state(page, "n_points", lambda v, n=n: v == n)
    page.click("#fit-template")
    page.wait_for_selector("#error")
    assert "At least 5 surface points are needed" in page.locator("#error").inner_text()
    for n, ras in enumerate(points[4:], start=5):
        _click_ras(page, ras)
        _wait_state(page, "n_points", lambda v, n=n: v == n)
    page.wait_for_selector("#error", state="detached")
    page.click("#fit-template")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith(\"Template '\")")
    assert not page.locator("#error").count(), page.locator("#error").inner_text()
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)
    if os.environ.get("WEAKANNOTATE_WEB_SURFACE_SCREENSHOT"):
        page.fill("#save-name", "surface")
        for view, ras in (("Red", points[0]), ("Green", points[0]), ("Yellow", points.mean(axis=0))):
            _screen_xy(page, ras, view)  # a point is shown in the axial and coronal views
        page.screenshot(path=os.environ["WEAKANNOTATE_WEB_SURFACE_SCREENSHOT"])

    # Drag one point 4 mm outwards within its slice, fit again: the segment is replaced.
    moved = points.copy()
    outward = moved[0] - moved.mean(axis=0)
    outward[2] = 0.0
    moved[0] = moved[0] + 4.0 * outward / np.linalg.norm(outward)
    before = page.locator("#status").inner_text()
    _drag_ras(page, points[0], moved[0])
    page.click("#fit-template")
    page.wait_for_function(
        "(b) => { const s = document.querySelector('#status').innerText; "
        'return s.startsWith("Template \'") && s != b; }',
        arg=before,
    )
    print("status after the second fit:", page.locator("#status").inner_text())

    page.fill("#save-name", "surface")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")
    folder: Path = server["work"] / CASE_ID
    saved, _ = read_points(folder / "surface.mrk.json", min_count=5, geometry=geometry)
    assert len(saved) == SURFACE_POINTS and np.abs(saved - moved).max() < 1.0
    rt = new_headless_runtime()
    labelmap, _ = labelmap_from_segmentation(read_segmentation(rt, folder / "surface.seg.nrrd"), geometry)
    got = dice(reference["mask"], labelmap > 0)
    surface = ActiveSurface(geometry=geometry)
    surface.set_points(moved)
    surface.update()
    expected = dice(reference["mask"], surface.rasterize(geometry))
    print(f"surface mode Dice {got:.3f} in the browser; in-process from the intended points {expected:.3f}")
    assert got >= expected - DICE_MARGIN and got >= SURFACE_DICE_FLOOR, (got, expected)


@browser_needed
def test_box_two_corners_make_box_save(page: Any, server: dict[str, Any], reference: dict[str, Any]) -> None:
    """Box mode: two corner clicks on different axial slices → an ROI and its voxels as a segment; save."""
    from WeakAnnotateLib.markups_io import read_box

    geometry = reference["image"].geometry
    index = np.argwhere(reference["mask"])  # corners at voxel centres 2 voxels outside the object
    shape = np.array(reference["mask"].shape)
    lo_index, hi_index = np.maximum(index.min(axis=0) - 2, 0), np.minimum(index.max(axis=0) + 2, shape - 1)
    lo, hi = geometry.index_to_ras(np.array([lo_index, hi_index]))
    if _state(page, "placing"):
        page.click("#place-points")
        _wait_state(page, "placing", lambda v: not v)
    page.click("#mode-box")
    _wait_state(page, "mode", lambda v: v == "box")
    _wait_state(page, "n_points", lambda v: v == 0)
    page.click("#place-points")
    _wait_state(page, "placing", bool)
    _click_ras(page, lo)
    _wait_state(page, "n_points", lambda v: v == 1)
    page.click("#make-box")
    page.wait_for_selector("#error")
    assert "A box needs 2 corners, got 1" in page.locator("#error").inner_text()
    _click_ras(page, hi)
    _wait_state(page, "n_points", lambda v: v == 2)
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)
    page.click("#make-box")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Box ')")
    assert not page.locator("#error").count(), page.locator("#error").inner_text()
    page.fill("#save-name", "box")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")
    folder: Path = server["work"] / CASE_ID
    assert (folder / "box.seg.nrrd").is_file()
    box = read_box(folder / "box.mrk.json", geometry=geometry)
    assert np.abs(box.center - (lo + hi) / 2).max() < 1.0 and np.abs(box.size - np.abs(hi - lo)).max() < 1.5, box


def _text(page: Any, selector: str) -> str:
    return page.locator(selector).inner_text()


@browser_needed
def test_training_panel_start_watch_cancel_then_train_and_apply(page: Any, server: dict[str, Any]) -> None:
    """A tiny job on this case + one other PET case: progress and a curve in the page, Cancel → "cancelled";
    a 1-epoch job that finishes; *Apply model to this case* adds the model's segment. All files in OUT/training."""
    page.evaluate("() => window.trame.state.update({train_method: 'full_supervision', train_epochs: 40})")
    _wait_state(page, "train_epochs", lambda v: int(v) == 40)
    page.click("#train-start")
    _wait_state(page, "train_state", lambda v: v == "running", timeout_s=60)
    _wait_state(page, "train_progress", lambda v: v > 0, timeout_s=60)  # steps arrive through progress.jsonl
    assert "polyline" in page.locator("#train-curve").inner_html()
    assert "running" in _text(page, "#train-state")
    page.click("#train-cancel")
    page.wait_for_function("() => document.querySelector('#train-state').innerText.includes('cancelled')")
    assert _state(page, "train_progress") < 100 and not _state(page, "train_model")

    page.evaluate("() => window.trame.state.update({train_epochs: 1})")
    _wait_state(page, "train_epochs", lambda v: int(v) == 1)
    page.click("#train-start")
    _wait_state(page, "train_state", lambda v: v == "done", timeout_s=60)
    assert _state(page, "train_progress") == 100 and _state(page, "train_model")
    page.click("#train-apply")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Model applied')")
    if os.environ.get("WEAKANNOTATE_WEB_TRAINING_SCREENSHOT"):
        page.locator("#train-curve").scroll_into_view_if_needed()
        page.screenshot(path=os.environ["WEAKANNOTATE_WEB_TRAINING_SCREENSHOT"])
    assert not page.locator("#train-error").count()
    jobs = server["work"] / "training" / "jobs"
    finished = [p for p in jobs.iterdir() if (p / "model.pt").is_file()]
    assert len(finished) == 1 and len([p for p in jobs.iterdir() if p.is_dir()]) == 2
    datasets = list((server["work"] / "training" / "datasets").iterdir())
    assert [p.name for p in datasets] == [f"{CASE_ID}-ibsi_STS_002_PET"]
