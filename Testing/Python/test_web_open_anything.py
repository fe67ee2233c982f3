"""Open anything: a data folder of images with or without a catalogue, a folder browser that stays inside it,
and a case's saved work loading back when it is opened again.

Without a browser: the catalogue's optional fields (an entry with only ``id`` and ``image``), its bad entries,
the folder scan (NIfTI, NRRD, the shared DICOM series), the modality read from a header or guessed from a name,
the path checks (``..``, absolute paths, links out of the folder), the list of a case's saves. In the browser:
``serve`` on a folder whose catalogue entry has no modality and no mask (it crashed with KeyError), the browser
opens an image the catalogue does not list, three clicks are saved, the tab is closed, and in a new tab (a new
session) opening the image again brings the three points back.

The images are small synthetic volumes written into pytest's temp folder (never data in the checkout).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from test_reliability import read_only
from test_web_app import VIEW, _serve, _state, _view_image_box, _wait_state, browser, browser_needed
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import (
    UNKNOWN,
    guess_modality,
    load_cases,
    modality_from_words,
    open_data_folder,
    scan_images,
)
from WeakAnnotateLib.files.data_folder import list_folder, resolve_inside
from WeakAnnotateWeb.saved_work import saved_work
from WeakAnnotateWeb.workspace import Workspace

__all__ = ["browser"]  # the module-scoped Chromium fixture of test_web_app


def _volume(path: Path, *, metadata: dict[str, str] | None = None) -> Path:
    """A 40 × 48 × 48 volume (1.5 mm) with a bright ball in the middle."""
    k, j, i = np.mgrid[:40, :48, :48]
    ball = ((k - 20) ** 2 + (j - 24) ** 2 + (i - 24) ** 2) < 10**2
    array = (100 + 400 * ball + np.random.default_rng(0).normal(0, 5, ball.shape)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 1.5))
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's data folder: a catalogue with one bare entry, images it does not list, a link out of it."""
    root = tmp_path_factory.mktemp("own_data") / "data"
    _volume(root / "ct" / "plain_ct.nii.gz")
    _volume(root / "mr" / "t1_brain.nii.gz")
    _volume(root / "scans" / "scan1.nrrd", metadata={"modality": "PET"})
    _volume(root / "scans" / "volume7.nii.gz")  # neither header nor name tells its modality
    (root / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("not an image")
    outside = root.parent / "outside"
    _volume(outside / "secret.nii.gz")
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "cases.json").write_text(json.dumps([{"id": "ct_plain", "image": "ct/plain_ct.nii.gz"}]))
    return root


# --- without a browser ----------------------------------------------------------------------------------


def test_catalogue_entry_needs_only_id_and_image(data: Path) -> None:
    (case,) = load_cases(data)
    assert (case.id, case.modality, case.mask, case.labels, case.gt_type) == ("ct_plain", "CT", None, {}, "")
    with pytest.raises(InputError, match=r"^Case 'ct_plain' has no reference mask: Training needs one"):
        case.reference_mask("Training")


@pytest.mark.parametrize(
    ("argv", "purpose"),
    [
        (["dataset", "create", "--from-cases", "ct_plain", "--output"], "simulating extreme points"),
        (["demo", "--case", "ct_plain", "--output"], "the demo (it simulates the marks from it and scores"),
    ],
)
def test_what_needs_a_reference_mask_names_the_case_without_one(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], purpose: str
) -> None:
    """The commands that simulate marks from the reference: one line naming the case, nothing written."""
    from WeakAnnotateLib.cli.main import main

    out = tmp_path / "out"
    code = main([*argv, str(out), "--data", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"Case 'ct_plain' has no reference mask: {purpose}" in err[0]
    assert not out.exists()


def test_surface_point_dataset_names_the_case_without_a_reference(data: Path, tmp_path: Path) -> None:
    from WeakAnnotateLib.methods.surface_template.weak_net import surface_point_dataset

    with pytest.raises(InputError, match=r"^Case 'ct_plain' has no reference mask: simulating surface points needs"):
        surface_point_dataset(tmp_path / "ds", ["ct_plain"], data_dir=data)
    assert not (tmp_path / "ds" / "dataset.json").exists()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"image": "a.nii.gz"}], r"entry 1: 'id' is missing or not text"),
        ([{"id": "a", "image": "a.nii.gz"}, {"id": "b"}], r"entry 2: 'image' is missing or not text"),
        ([{"id": "a", "image": "a.nii.gz", "labels": {"x": "liver"}}], r"'labels' keys must be whole numbers"),
        ([{"id": "a", "image": "a.nii.gz", "modality": 3}], r"'modality' must be text, got 3"),
        ([{"id": "a", "image": "x"}, {"id": "a", "image": "y"}], r"the id 'a' is used twice"),
        ({"id": "a"}, r"expected a JSON list of case entries"),
    ],
)
def test_bad_catalogue_entries_are_named(tmp_path: Path, entries: Any, message: str) -> None:
    (tmp_path / "cases.json").write_text(json.dumps(entries))
    with pytest.raises(InputError, match=message):
        load_cases(tmp_path)


def test_folder_scan_finds_images_not_links_out(data: Path, tmp_path: Path) -> None:
    cases = {c.id: c for c in scan_images(data)}
    # not notes.txt, not link_out/secret
    assert sorted(cases) == ["ct/plain_ct", "mr/t1_brain", "scans/scan1", "scans/volume7"]
    assert [cases[k].modality for k in sorted(cases)] == ["CT", "MR", "PET", UNKNOWN]  # name, name, header, none
    assert all(c.mask is None for c in cases.values())
    with pytest.raises(InputError, match="no cases.json and no images"):
        open_data_folder(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        open_data_folder(tmp_path / "missing")


def test_dicom_series_folder_is_one_case(data_dir: Path) -> None:
    dicom = {c.id: c for c in scan_images(data_dir) if c.image.is_dir()}
    assert list(dicom) == ["totalseg/example_ct_dicom"] and dicom["totalseg/example_ct_dicom"].modality == "CT"
    listing = list_folder(data_dir, "totalseg")
    assert {e.name: e.kind for e in listing.entries}["example_ct_dicom"] == "dicom"


def test_modality_from_header_then_name(data: Path, tmp_path: Path) -> None:
    assert modality_from_words("sub-01_T1w") == "MR" and modality_from_words("FDG_pet_suv") == "PET"
    assert modality_from_words("abdomen_ct_0001") == "CT" and modality_from_words("scan1") is None
    assert modality_from_words("contact") is None  # words, not letters inside a word
    assert guess_modality(data / "scans" / "scan1.nrrd") == "PET"  # the header's field beats the name
    assert guess_modality(_volume(tmp_path / "volume7.nii.gz")) == UNKNOWN


def test_the_chosen_modality_is_remembered_and_bad_choices_change_nothing(data: Path, tmp_path: Path) -> None:
    from WeakAnnotateWeb.case_modality import SETTINGS_FILE, remember_modality, with_chosen_modality

    work = Workspace(tmp_path / "work")
    case = next(c for c in scan_images(data) if c.id == "scans/volume7")
    assert with_chosen_modality(work, case) == case  # nothing chosen yet: the guess ("unknown")
    chosen, path = remember_modality(work, case, "PET")
    assert chosen.modality == "PET" and path == work.case_folder(case.id) / SETTINGS_FILE
    assert json.loads(path.read_text()) == {"modality": "PET"} and with_chosen_modality(work, case) == chosen
    with pytest.raises(InputError, match=r"^Modality: one of CT, PET, MR, unknown, got 'XR'\.$"):
        remember_modality(work, case, "XR")
    path.write_text("{not json")  # a damaged file: the guess again, nothing raised
    assert with_chosen_modality(work, case) == case
    remember_modality(work, case, "PET")
    with read_only(path.parent), pytest.raises(InputError, match=r"^Cannot write .*case\.json: read-only file system"):
        remember_modality(work, case, "CT")  # loud, and the earlier choice stays
    assert json.loads(path.read_text()) == {"modality": "PET"}


def test_paths_stay_inside_the_data_folder(data: Path) -> None:
    assert resolve_inside(data, "mr/t1_brain.nii.gz") == (data / "mr" / "t1_brain.nii.gz").resolve()
    for hostile in ("..", "../outside", "/etc/passwd", "mr/../../outside", "link_out", "link_out/secret.nii.gz",
                    ".hidden", "..\\outside"):  # fmt: skip
        with pytest.raises(InputError, match="data folder|cannot be opened"):
            resolve_inside(data, hostile)
    with pytest.raises(InputError, match="expected text"):
        resolve_inside(data, ["mr"])  # type: ignore[arg-type]
    listing = list_folder(data, "")
    assert [(e.name, e.kind) for e in listing.entries] == [("ct", "folder"), ("mr", "folder"), ("scans", "folder")]
    assert [(e.path, e.kind) for e in list_folder(data, "mr").entries] == [("mr/t1_brain.nii.gz", "image")]


def test_saves_of_a_case_oldest_first(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "work")
    folder = ws.case_folder("mr/t1_brain", create=True)
    assert folder.name == "mr_t1_brain"
    for n, name in enumerate(("b.mrk.json", "a.mrk.json", "a.seg.nrrd", "a_add.mrk.json", "c.seg.nrrd")):
        (folder / name).write_text("{}")
        os.utime(folder / name, (1000 + n, 1000 + n))
    works = saved_work(ws, "mr/t1_brain")
    assert [(w.name, bool(w.points), bool(w.segmentation)) for w in works] == [
        ("b", True, False),
        ("a", True, True),
        ("c", False, True),
    ]
    assert saved_work(ws, "never-opened") == []


# --- in the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _serve(data, tmp_path_factory.mktemp("web_own"), "ct_plain", "--session-grace", "2") as running:
        yield running


def _open_tab(browser: Any, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 760}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url, timeout=180_000)
    page.wait_for_selector("#browse-list")
    _wait_state(page, "view_geometry", lambda g: bool(g) and g[VIEW]["dimensions"][0] > 50, timeout_s=60)
    return context, page


def _browse_click(page: Any, name: str) -> None:
    page.locator("#browse-list .v-list-item").filter(has_text=name).click()


def _open_image(page: Any, folder: str, name: str, case_id: str) -> None:
    _browse_click(page, folder)
    _wait_state(page, "browse_path", lambda v: v == folder)
    assert page.locator("#browse-path").inner_text().strip() == f"data/{folder}"
    _browse_click(page, name)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the app may ask before leaving unsaved work
        if _state(page, "confirm_open"):
            page.click("#confirm-yes")
            break
        time.sleep(0.1)
    _wait_state(page, "case_id", lambda v: v == case_id)
    page.wait_for_function(
        "(c) => document.querySelector('#current-case').innerText.trim() == c", arg=case_id, timeout=30_000
    )


@browser_needed
def test_open_own_image_save_close_reopen_continue(browser: Any, server: dict[str, Any]) -> None:
    context, page = _open_tab(browser, server["url"])
    # the catalogue entry without modality or mask opened (--case): modality from its name
    assert page.locator("#current-case").inner_text().strip() == "ct_plain"
    assert "(CT)" in _state(page, "status") and _state(page, "wl_preset").startswith("CT soft tissue")
    names = [e["name"] for e in _state(page, "browse_entries")]
    assert names == ["ct", "mr", "scans"]  # no link out of the folder, no text file
    assert page.locator("#browse-up").is_disabled()  # nothing above the data folder

    _open_image(page, "mr", "t1_brain.nii.gz", "mr/t1_brain")
    assert "(MR)" in _state(page, "status")
    page.click("#place-points")
    _wait_state(page, "placing", bool)
    box = _view_image_box(page, VIEW)
    for n, (dx, dy) in enumerate(((0, -30), (30, 0), (0, 30)), start=1):
        page.mouse.click(box["x"] + box["w"] / 2 + dx, box["y"] + box["h"] / 2 + dy)
        _wait_state(page, "n_points", lambda v, n=n: v == n)
    page.click("#place-points")
    _wait_state(page, "placing", lambda v: not v)
    page.fill("#save-name", "mywork")
    _wait_state(page, "save_name", lambda v: v == "mywork")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")
    saved = server["work"] / "mr_t1_brain" / "mywork.mrk.json"
    assert saved.is_file()
    # an image neither header nor name tells: "unknown" until the user says; the window follows, remembered
    page.click("#browse-up")
    _wait_state(page, "browse_path", lambda v: v == "")
    _open_image(page, "scans", "volume7.nii.gz", "scans/volume7")
    assert _state(page, "case_modality") == "unknown" and "(unknown)" in _state(page, "status")
    page.evaluate("() => window.trame.state.set('case_modality', 'PET')")
    _wait_state(page, "wl_preset", lambda v: v == "PET SUV 0-10")
    assert "remembered in scans_volume7/case.json" in _state(page, "status")
    context.close()  # the tab is gone; its session ends after the grace period

    context, page = _open_tab(browser, server["url"])  # a new tab: a new session, the --case open
    assert _state(page, "case_id") == "ct_plain" and _state(page, "n_points") == 0
    _open_image(page, "mr", "t1_brain.nii.gz", "mr/t1_brain")
    _wait_state(page, "n_points", lambda v: v == 3)
    status = _state(page, "status")
    assert status.startswith("Loaded your saved work: 3 points (extreme"), status
    assert "from 'mywork'" in status and _state(page, "save_name") == "mywork"
    page.click("#browse-up")
    _wait_state(page, "browse_path", lambda v: v == "")
    _open_image(page, "scans", "volume7.nii.gz", "scans/volume7")  # in another session: the choice came back
    assert _state(page, "case_modality") == "PET" and "(PET)" in _state(page, "status")
    assert _state(page, "wl_preset") == "PET SUV 0-10"
    context.close()


def test_restore_puts_saved_segments_and_points_back(tmp_path: Path) -> None:
    """restore_saved_work on real MRML nodes (no browser): two saves of a case — an older one with a segment
    and 2 surface points, a newer one with a segment, 3 extreme points — plus a box save (an ROI). All three
    segments come back; each mode's list gets its newest points; the ROI gives box mode its two corners."""
    from types import SimpleNamespace

    from WeakAnnotateLib.core.box import Box
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.scene.mrml_adapter import (
        add_points_node,
        add_roi_node,
        add_segmentation_node,
        add_volume_node,
        points_of_node,
        segment_ids,
        set_segment_mask,
        write_node_file,
    )
    from WeakAnnotateLib.scene.segmentation_io import write_segmentation
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime
    from WeakAnnotateWeb.saved_work import restore_saved_work

    rt = new_headless_runtime()
    image = read_image(_volume(tmp_path / "img.nii.gz"))
    ws = Workspace(tmp_path / "work")
    folder = ws.case_folder("c1", create=True)
    centre = image.geometry.index_to_ras(np.array([[20, 24, 24]]))[0]

    def save(name: str, segment: str, points: Any, labels: list[str], when: int) -> None:
        volume = add_volume_node(rt, image, "v")
        seg = add_segmentation_node(rt, "s", volume)
        mask = np.zeros(image.array.shape, bool)
        mask[15:25, 20:28, 20:28] = True
        set_segment_mask(rt, seg, mask, image.geometry, segment, (1.0, 0.0, 0.0))
        write_segmentation(folder / f"{name}.seg.nrrd", seg)
        node = add_points_node(rt, points, labels) if labels else add_roi_node(rt, points)
        write_node_file(node, folder / f"{name}.mrk.json")
        for p in folder.glob(f"{name}.*"):
            os.utime(p, (when, when))

    offsets = np.array([[-6.0, 0, 0], [6, 0, 0], [0, 6, 0]])
    save("old", "GTV first", centre + offsets[:2], ["S1", "S2"], 1000)
    save("new", "GTV second", centre + offsets, ["P1", "P2", "P3"], 2000)
    save("box", "GTV box", Box(center=centre, size=np.array([8.0, 10, 12]), axes=np.eye(3)), [], 3000)

    volume = add_volume_node(rt, image, "c1")
    modes = {key: SimpleNamespace(key=key, label_format=fmt) for key, fmt in
             (("extreme", "P%d"), ("surface", "S%d"), ("box", "C%d"))}  # fmt: skip
    points_nodes = {}
    for key in modes:
        node = rt.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{key} points")
        points_nodes[key] = node

    class State(SimpleNamespace):
        def __enter__(self) -> State:
            return self

        def __exit__(self, *_: Any) -> None:
            pass

    app = SimpleNamespace(
        rt=rt,
        case=SimpleNamespace(id="c1"),
        workspace=ws,
        segmentation_node=add_segmentation_node(rt, "c1 segmentation", volume),
        modes=modes,
        points_nodes=points_nodes,
        state=State(status="Opened c1.", save_name="extreme_points"),
    )
    restored = restore_saved_work(app)
    names = [
        app.segmentation_node.GetSegmentation().GetSegment(s).GetName() for s in segment_ids(app.segmentation_node)
    ]
    assert names == ["GTV first", "GTV second", "GTV box"]  # oldest save first
    extreme, _ = points_of_node(points_nodes["extreme"])
    surface, _ = points_of_node(points_nodes["surface"])
    corners, _ = points_of_node(points_nodes["box"])
    assert np.abs(extreme - (centre + offsets)).max() < 1e-3 and np.abs(surface - (centre + offsets[:2])).max() < 1e-3
    assert np.abs(corners - (centre + np.array([[-4.0, -5, -6], [4, 5, 6]]))).max() < 1e-3
    assert app.state.save_name == "box" and restored.problems == []
    assert app.state.status == (
        "Loaded your saved work: 3 segments, 2 points (surface, from 'old'), 3 points (extreme, from 'new'), "
        "2 points (box, from 'box')."
    )
