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
    assert sorted(cases) == ["ct/plain_ct", "mr/t1_brain", "scans/scan1"]  # not notes.txt, not link_out/secret
    assert [cases[k].modality for k in sorted(cases)] == ["CT", "MR", "PET"]  # name, name, NRRD header
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
    context.close()  # the tab is gone; its session ends after the grace period

    context, page = _open_tab(browser, server["url"])  # a new tab: a new session, the --case open
    assert _state(page, "case_id") == "ct_plain" and _state(page, "n_points") == 0
    _open_image(page, "mr", "t1_brain.nii.gz", "mr/t1_brain")
    _wait_state(page, "n_points", lambda v: v == 3)
    status = _state(page, "status")
    assert status.startswith("Loaded your saved work: 3 points (extreme"), status
    assert "from 'mywork'" in status and _state(page, "save_name") == "mywork"
    context.close()
