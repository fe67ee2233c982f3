"""The page's annotation-loop panel (WeakAnnotateWeb/loop_panel.py) in headless Chromium.

A loop dataset of three PET sarcomas (simulated six clicks) whose loop already fine-tuned a tiny model on the
first case; in the page: New dataset (finds it) → Next case (the model's prediction is the starting segment) →
two corrective clicks in the axial view (the robot user: the centre of the largest error, from the reference) →
Accept → the dataset records the mask and the effort (2 corrective clicks, the seconds). The server is started
and the page driven with test_web_app.py's helpers (its Chromium, page and clicks).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_annotation_loop import robot_click
from test_web_app import (  # noqa: F401 (browser: the module's Chromium, a pytest fixture used by name)
    _browser_page,
    _click_ras,
    _serve,
    _state,
    _wait_state,
    browser,
    browser_needed,
)

CASES = ["ibsi_STS_001_PET", "ibsi_STS_002_PET", "ibsi_STS_003_PET"]
DATASET = "pet-3-cases"  # the name the panel's New dataset gives these cases
ENV = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}

pytestmark = browser_needed


@pytest.fixture(scope="module")
def prepared(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder with the loop dataset, one case accepted and a model fine-tuned on it (one epoch)."""
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.files.image_io import read_mask
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    base = tmp_path_factory.mktemp("webloop")
    root = base / "work" / "loop" / DATASET
    root.parent.mkdir(parents=True)
    create_from_cases(root, CASES, data_dir=data_dir)
    loop = AnnotationLoop(root)
    loop.configure(method="extreme_point_network", finetune_every=1, finetune_epochs=1)
    start = loop.next_case()
    loop.accept(start.case, read_mask(start.start), {"corrective": {"clicks": 0, "seconds": 1}}, env=ENV)
    assert loop.wait_for_job(600)["state"] == "done"
    loop.configure(finetune_every=5)  # no second fine-tune during the page's accept
    return base


def test_next_prediction_two_corrections_accept_records_the_effort(
    data_dir: Path,
    prepared: Path,
    browser: Any,  # noqa: F811 (the imported fixture)
) -> None:
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.files.image_io import read_image, read_mask

    root = prepared / "work" / "loop" / DATASET
    with _serve(data_dir, prepared, CASES[0]) as running, _browser_page(browser, running["url"]) as page:
        page.click("#loop-new")
        _wait_state(page, "loop_dataset", lambda v: v == DATASET)
        # Start from: the dataset's setting (default auto, which would start from the marks: no evidence yet);
        # "model" chosen in the page is the dataset's setting at once
        assert _state(page, "loop_start") == "auto" and page.is_visible("#loop-start")
        page.evaluate("() => window.trame.state.set('loop_start', 'model')")
        deadline = time.monotonic() + 30
        while json.loads((root / "loop.json").read_text())["start"] != "model":
            assert time.monotonic() < deadline, "the page's Start from did not reach loop.json"
            time.sleep(0.2)
        page.evaluate("() => window.trame.state.set('loop_every', 7)")  # Fine-tune every: the dataset's too
        while json.loads((root / "loop.json").read_text())["finetune_every"] != 7:
            assert time.monotonic() < deadline, "the page's Fine-tune every did not reach loop.json"
            time.sleep(0.2)
        page.evaluate("() => window.trame.state.set('loop_every', 'x')")
        _wait_state(page, "loop_error", lambda v: v == "Fine-tune every: expected a whole number, got 'x'.")
        assert json.loads((root / "loop.json").read_text())["finetune_every"] == 7
        page.evaluate("() => window.trame.state.set('loop_start', 'best')")
        _wait_state(page, "loop_error", lambda v: v == "start: one of auto, model, marks, got 'best'.")
        assert json.loads((root / "loop.json").read_text())["start"] == "model"
        page.evaluate("() => window.trame.state.set('loop_start', 'model')")
        _wait_state(page, "loop_error", lambda v: v == "")
        page.click("#loop-next")
        _wait_state(page, "loop_case", lambda v: v == CASES[1], 120)
        assert _state(page, "loop_source") == "model finetune-001"
        assert _state(page, "case_id") == CASES[1]
        assert "Opened ibsi_STS_002_PET" in page.inner_text("#loop-text")
        entry = DatasetFolder.load(root).case(CASES[1])
        image = read_image(root / "loop" / "starts" / f"{CASES[1]}.nii.gz")
        reference = read_mask(entry.reference, grid=image.geometry)
        mask = read_mask(root / "loop" / "starts" / f"{CASES[1]}.nii.gz")
        first_dice = dice(reference, mask)
        for n in (1, 2):
            ras, positive = robot_click(mask, reference, image.geometry)
            which = "add" if positive else "remove"
            if _state(page, "loop_correcting") != which:  # the button toggles: pressed only to switch
                page.click(f"#loop-{which}")
                _wait_state(page, "loop_correcting", lambda v, w=which: v == w)
            _click_ras(page, ras)
            _wait_state(page, "loop_clicks", lambda v, k=n: v == k, 60)
            _wait_state(page, "loop_busy", lambda v: v is False, 60)
            mask = read_mask(root / "loop" / "drafts" / f"{CASES[1]}.nii.gz")  # saved after every click
        assert dice(reference, mask) >= first_dice - 0.02  # the robot's clicks do not make it worse
        time.sleep(0.5)
        page.click("#loop-accept")
        _wait_state(page, "loop_case", lambda v: v == "", 60)
        assert "Accepted ibsi_STS_002_PET" in page.inner_text("#loop-text")
    entry = DatasetFolder.load(root).case(CASES[1])
    assert entry.effort["corrective_clicks"] == 2 and entry.effort["clicks"] == 8
    assert 0 < entry.effort["corrective_seconds"] < 600
    accepted = read_mask(root / entry.pseudo_label)
    assert np.array_equal(accepted, mask)
    state = json.loads((root / "loop.json").read_text())
    assert [r["case"] for r in state["accepted"]] == CASES[:2]
    assert state["accepted"][1]["start_source"] == "model finetune-001"
