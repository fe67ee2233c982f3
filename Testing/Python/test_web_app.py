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

import contextlib
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
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateWeb.serve_command import is_loopback

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
    from WeakAnnotateLib.cli.main import main

    assert main(["serve", "--data", str(tmp_path), "--port", "0"]) == 2


def test_serve_warns_off_loopback(monkeypatch: pytest.MonkeyPatch, capsys: Any, data_dir: Path) -> None:
    import WeakAnnotateWeb.serve_command as serve
    from WeakAnnotateLib.cli.main import main

    def stop(*_: Any, **__: Any) -> None:
        raise InputError("stopped before listening")

    monkeypatch.setattr(serve, "serve_sessions", stop)  # the launcher: after the warning, before listening
    assert main(["serve", "--data", str(data_dir), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "WARNING: listening on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--data", str(data_dir), "--port", "0"]) == 2
    assert "WARNING" not in capsys.readouterr().err


# --- in the browser ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serve(data_dir: Path, base: Path, case_id: str, *extra: str) -> Iterator[dict[str, Any]]:
    """``weakannotate serve`` on a free loopback port with ``case_id`` open; its work folder in ``base``."""
    work = base / "work"
    port = _free_port()
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed after the process ends
    env = {**os.environ, "WEAKANNOTATE_DATA": str(data_dir)}
    cmd = [sys.executable, "-m", "WeakAnnotateLib.cli.main", "serve", "--data", str(data_dir), "--work", str(work)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--case", case_id, *extra], stdout=log, stderr=subprocess.STDOUT, cwd=base, env=env
    )
    root = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    url = ""
    while True:
        try:
            if not url:  # the page's address with this launch's secret, as serve prints it
                url = next(
                    (w for w in (base / "server.log").read_text().split() if w.startswith(root + "?secret=")), ""
                )
            if url:
                urllib.request.urlopen(root, timeout=2)
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"server did not start: {(base / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield {"url": url, "root": root, "work": work, "base": base}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``weakannotate serve`` on a free loopback port with the case open; its work folder in a temp dir."""
    with _serve(data_dir, tmp_path_factory.mktemp("web"), CASE_ID) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module: playwright's sync API allows one running instance per thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _settle_views(page: Any, timeout_s: float = 30.0) -> None:
    """Return once the views' geometry holds for 1.5 s. Why: the views refit (asynchronously) while the page's
    layout settles; a click aimed with the geometry of before a refit lands millimetres off (seen under load)."""
    settled, last = time.monotonic() + timeout_s, None
    while time.monotonic() < settled:
        now = _state(page, "view_geometry")
        if now == last:
            return
        last = now
        time.sleep(1.5)


@contextlib.contextmanager
def _browser_page(browser: Any, url: str) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1400, "height": 760}, device_scale_factor=1)
    pg.set_default_timeout(30_000)
    pg.goto(url)
    pg.wait_for_selector("#segment")
    _wait_state(pg, "view_geometry", lambda g: bool(g) and g[VIEW]["dimensions"][0] > 50)
    _settle_views(pg)
    try:
        yield pg
    finally:
        pg.close()


@pytest.fixture(scope="module")
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    with _browser_page(browser, server["url"]) as pg:
        yield pg


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
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image, read_mask
    from WeakAnnotateLib.methods.extreme_points.segmenter import segment_extreme_points

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
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.scene.markups_io import read_points
    from WeakAnnotateLib.scene.segmentation_io import labelmap_from_segmentation, read_segmentation
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

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
    page.click("#undo")
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
    _wait_state(page, "undo_label", lambda v: v.startswith("move"))  # the server has the move (an undoable action)
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
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import surface_points
    from WeakAnnotateLib.methods.surface_template.active_surface import ActiveSurface
    from WeakAnnotateLib.scene.markups_io import read_points
    from WeakAnnotateLib.scene.segmentation_io import labelmap_from_segmentation, read_segmentation
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

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
    _wait_state(page, "undo_label", lambda v: v.startswith("move"))  # the server has the move (an undoable action)
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
    from WeakAnnotateLib.scene.markups_io import read_box

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
    # without --box-model, 'Correct boxes' is disabled and the page says how to enable it
    assert page.locator("#correct-boxes").is_disabled()
    assert "--box-model" in page.locator("#no-box-model").inner_text()
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
    # Apply again: a second segment of its own name and colour (nothing overwritten), one undoable action
    models = lambda: [r for r in _state(page, "segments") if " model " in r["name"]]  # noqa: E731
    _wait_state(page, "segments", lambda _rows: len(models()) == 1)
    page.click("#train-apply")
    _wait_state(page, "segments", lambda _rows: len(models()) == 2)
    first, second = models()
    assert first["name"] != second["name"] and first["color"] != second["color"]
    _wait_state(page, "undo_label", lambda v: v == f"add '{second['name']}'")
    page.click("#undo")
    _wait_state(page, "segments", lambda _rows: [r["name"] for r in models()] == [first["name"]])
    if os.environ.get("WEAKANNOTATE_WEB_TRAINING_SCREENSHOT"):
        page.locator("#train-curve").scroll_into_view_if_needed()
        page.screenshot(path=os.environ["WEAKANNOTATE_WEB_TRAINING_SCREENSHOT"])
    assert not page.locator("#train-error").count()
    jobs = server["work"] / "training" / "jobs"
    finished = [p for p in jobs.iterdir() if (p / "model.pt").is_file()]
    assert len(finished) == 1 and len([p for p in jobs.iterdir() if p.is_dir()]) == 2
    datasets = list((server["work"] / "training" / "datasets").iterdir())
    assert [p.name for p in datasets] == [f"{CASE_ID}-ibsi_STS_002_PET"]


# --- box correction (serve --box-model) -------------------------------------------------------------------

BOX_CASE = "brats_brats_2013_pat0003_1_Flair"  # held out from the classifier's training crops


def test_serve_box_model_missing_exits_2_with_one_line(data_dir: Path, tmp_path: Path) -> None:
    """A missing folder: the real process exits 2 with one line naming the option and the path, before listening."""
    cmd = [sys.executable, "-m", "WeakAnnotateLib.cli.main", "serve", "--data", str(data_dir), "--port", "0"]
    done = subprocess.run(
        [*cmd, "--box-model", "/nonexistent", "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    assert done.stderr.startswith("weakannotate serve: error: --box-model: ") and "/nonexistent" in done.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("kind", ["weights_only", "other_method"])
def test_serve_box_model_invalid_exits_2(capsys: Any, data_dir: Path, tmp_path: Path, kind: str) -> None:
    from WeakAnnotateLib.cli.main import main

    (tmp_path / "model.pt").write_bytes(b"")
    if kind == "other_method":
        (tmp_path / "model.json").write_text(json.dumps({"method": "full_supervision"}), encoding="utf-8")
    assert main(["serve", "--data", str(data_dir), "--port", "0", "--box-model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("weakannotate serve: error: --box-model: "), err
    assert ("no model.json" in err) if kind == "weights_only" else ("not a box-correction" in err)


@pytest.fixture(scope="module")
def box_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny box-correction classifier, trained as test_box_correction's ``trained`` (three BraTS crops, p = 16)
    but for 2 epochs on fewer patches."""
    from test_box_correction import TRAIN, _crop, _dataset, _job
    from WeakAnnotateLib.cli.main import main

    tmp = tmp_path_factory.mktemp("web_box_model")
    crops = {f"{p}_{s}": _crop(data_dir, p, s, tmp) for p, s in TRAIN}
    dataset = _dataset(tmp / "ds", crops, list(crops))
    t0 = time.perf_counter()
    job = _job(tmp, dataset, epochs=2, width=8, max_patches_per_volume=1500, patch_size=16)
    assert main(["train", "--job", str(job)]) == 0
    print(f"box classifier trained in {time.perf_counter() - t0:.1f} s")
    return tmp / "job"


@pytest.fixture(scope="module")
def box_server(data_dir: Path, box_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _serve(data_dir, tmp_path_factory.mktemp("web_box"), BOX_CASE, "--box-model", str(box_model)) as running:
        yield running


@pytest.fixture(scope="module")
def box_page(browser: Any, box_server: dict[str, Any]) -> Iterator[Any]:
    with _browser_page(browser, box_server["url"]) as pg:
        yield pg


def _box_corners(mask: np.ndarray, geometry: Any, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """RAS of two opposite corners at voxel centres ``margin`` voxels outside the object."""
    index = np.argwhere(mask)
    shape = np.array(mask.shape)
    lo_index, hi_index = np.maximum(index.min(axis=0) - margin, 0), np.minimum(index.max(axis=0) + margin, shape - 1)
    lo, hi = geometry.index_to_ras(np.array([lo_index, hi_index]))
    return lo, hi


def _status(page: Any) -> str:
    return page.locator("#status").inner_text()


@browser_needed
def test_box_correction_raw_and_corrected_segments_save_json(
    box_page: Any, box_server: dict[str, Any], case_by_id: Any
) -> None:
    """Box mode with --box-model: 'Correct boxes' without a box is refused; after two corners and Make box it
    adds '<name> raw boxes' and '<name> corrected'; Save also writes <name>_slice_boxes.json."""
    from WeakAnnotateLib.evaluation.simulate import box_index_bounds
    from WeakAnnotateLib.files.image_io import read_image, read_mask
    from WeakAnnotateLib.methods.box_correction.classifier import read_slice_boxes
    from WeakAnnotateLib.scene.markups_io import read_box
    from WeakAnnotateLib.scene.mrml_adapter import segment_mask
    from WeakAnnotateLib.scene.segmentation_io import read_segmentation
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    page = box_page
    case = case_by_id(BOX_CASE)
    geometry = read_image(case.image).geometry
    lo, hi = _box_corners(read_mask(case.mask, grid=geometry), geometry)
    page.click("#mode-box")
    _wait_state(page, "mode", lambda v: v == "box")
    assert page.locator("#correct-boxes").is_enabled() and not page.locator("#no-box-model").count()

    page.click("#correct-boxes")  # no box yet: a message, nothing else
    page.wait_for_selector("#error")
    assert "No box yet" in page.locator("#error").inner_text()

    page.click("#place-points")
    _wait_state(page, "placing", bool)
    for n, ras in enumerate((lo, hi), start=1):
        _click_ras(page, ras)
        _wait_state(page, "n_points", lambda v, n=n: v == n)
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)
    page.click("#make-box")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Box ')")
    page.click("#correct-boxes")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Corrected ')")
    assert not page.locator("#error").count(), page.locator("#error").inner_text()
    status = _status(page)
    print("status after Correct boxes:", status)
    assert " slice boxes in " in status and "Warning" not in status  # the model was trained on MR, this is MR

    # three segments in the list (the box, its raw and its corrected slice boxes); the corrected one is active
    name = _state(page, "segment_name")
    segments = {s["name"]: s for s in _state(page, "segments")}
    assert set(segments) == {f"{name} — box", f"{name} — raw boxes", f"{name} — corrected"}, segments
    assert len({s["color"] for s in segments.values()}) == 3
    assert _state(page, "active_segment") == segments[f"{name} — corrected"]["id"]

    # Save writes the active segment with its box and its slice boxes, nothing else
    page.fill("#save-name", "tumour")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")
    folder: Path = box_server["work"] / BOX_CASE
    assert sorted(p.name for p in folder.iterdir()) == ["tumour.mrk.json", "tumour.seg.nrrd", "tumour_slice_boxes.json"]
    # the raw boxes, picked in the list, saved under another name: their box, no slice boxes document
    page.evaluate("(s) => window.trame.state.set('active_segment', s)", segments[f"{name} — raw boxes"]["id"])
    _wait_state(page, "active_name", lambda v: v == f"{name} — raw boxes")
    page.fill("#save-name", "tumour_raw")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('tumour_raw.seg.nrrd')")
    assert sorted(p.name for p in folder.glob("tumour_raw*")) == ["tumour_raw.mrk.json", "tumour_raw.seg.nrrd"]

    def only(path: Path) -> tuple[str, np.ndarray]:
        seg = read_segmentation(new_headless_runtime(), path)
        segmentation = seg.GetSegmentation()
        assert segmentation.GetNumberOfSegments() == 1
        return segmentation.GetNthSegment(0).GetName(), segment_mask(seg, segmentation.GetNthSegmentID(0), geometry)

    raw_name, raw = only(folder / "tumour_raw.seg.nrrd")
    corrected_name, corrected = only(folder / "tumour.seg.nrrd")
    assert (raw_name, corrected_name) == (f"{name} — raw boxes", f"{name} — corrected")
    print(f"raw boxes {int(raw.sum())} voxels, corrected {int(corrected.sum())} voxels")
    assert 0 < corrected.sum() < raw.sum() and not (corrected & ~raw).any()

    doc = json.loads((folder / "tumour_slice_boxes.json").read_text())
    box_lo, box_hi = box_index_bounds(read_box(folder / "tumour.mrk.json", geometry=geometry), geometry)
    axis = doc["axis"]
    assert [s["slice_index"] for s in doc["slices"]] == list(range(int(box_lo[axis]), int(box_hi[axis]) + 1))
    assert status.startswith(f"Corrected {len(doc['slices'])} slice boxes in ")
    assert doc["image"] == BOX_CASE and doc["patch_size"] == 16
    # the file is the corrected segment: it reads back (as box_prior's slice_boxes annotation does) as that mask
    assert np.array_equal(read_slice_boxes(folder / "tumour_slice_boxes.json", geometry), corrected)
    assert not list(folder.glob(".*partial*"))


# --- only the app's own page drives the server -------------------------------------------------------------


def test_access_guard_checks_origin_and_secret() -> None:
    from types import SimpleNamespace

    from WeakAnnotateWeb.access import AccessGuard, same_origin

    guard = AccessGuard("s3cret")

    def hello(client: str, origin: str, token: Any) -> bool:
        guard.onConnect(SimpleNamespace(headers={"Origin": origin, "Host": "127.0.0.1:8080"}), client)
        coroutine = guard.validateToken(token, client)  # awaits nothing: run it to its end without a loop
        try:
            coroutine.send(None)
        except StopIteration as done:
            return bool(done.value)
        raise AssertionError("validateToken awaited something")

    assert hello("a", "http://127.0.0.1:8080", "s3cret")
    assert not hello("b", "http://127.0.0.1:8080", "wslink-secret")  # the library's public default
    assert not hello("c", "https://evil.example", "s3cret")  # another site's page, even with the secret
    assert not hello("d", "", "s3cret")  # no Origin: not a browser page of ours
    assert not hello("e", "http://127.0.0.1:8080", ["s3cret"])
    assert same_origin("http://localhost:9", "LOCALHOST:9") and not same_origin("file://", "127.0.0.1:9")


def test_page_without_the_secret_gets_nothing(browser: Any, server: dict[str, Any]) -> None:
    """The page served without this launch's secret (or from another site) is not answered: no state."""
    pg = browser.new_page()
    try:
        pg.goto(server["root"])  # no ?secret=
        time.sleep(5)
        assert pg.query_selector("#segment") is None
        assert (
            pg.evaluate("() => window.trame && window.trame.state ? window.trame.state.get('case_id') : null") is None
        )
    finally:
        pg.close()


def test_client_values_are_type_checked(page: Any, server: dict[str, Any]) -> None:
    """A client that sends the wrong type of value gets a message; the server keeps working."""
    before = _state(page, "case_id")
    page.evaluate("() => window.trame.state.set('case_id', ['a', 'b'])")
    _wait_state(page, "error", lambda e: bool(e) and "case_id: expected a case id" in e)
    _wait_state(page, "case_id", lambda c: c == before)
    page.evaluate("() => window.trame.state.set('mode', {'x': 1})")
    _wait_state(page, "mode", lambda m: isinstance(m, str))
    page.evaluate("() => window.trame.state.set('error', '')")
    page.click("#place-points")  # still answering
    _wait_state(page, "placing", lambda p: p is True)
    page.click("#place-points")
    _wait_state(page, "placing", lambda p: p is False)
