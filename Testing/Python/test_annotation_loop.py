"""The annotation loop (jobs/annotation_loop.py, ``weakannotate loop``) on real PET sarcomas with simulated six clicks.

next case → starting segment (the marks' pseudo-label, then a model's prediction) → corrective clicks → accept
(the mask and the effort in the dataset) → fine-tuning from the last weights in the background (a tiny network,
one epoch) → the next case starts from the newer model. Bad input: no case left, an empty segment, a model of
another modality or method, a second job on the same dataset, files removed by hand; a process that stops
mid-case loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.evaluation.metrics import dice
from WeakAnnotateLib.files.cases import default_data_dir
from WeakAnnotateLib.files.image_io import read_image, read_mask, write_image

pytestmark = pytest.mark.skipif(default_data_dir() is None, reason="shared/data (cases.json) not found")

CASES = ["ibsi_STS_001_PET", "ibsi_STS_002_PET", "ibsi_STS_003_PET"]
ENV = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}
TINY = {"batch_size": 1, "patch_size": [32, 32, 32], "channels": [4, 8, 16], "spacing_mm": 4.0, "device": "cpu"}


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    from WeakAnnotateLib.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


def make_dataset(root: Path, cases: list[str] = CASES) -> Path:
    from WeakAnnotateLib.data.dataset import create_from_cases

    create_from_cases(root, cases)
    return root


def reference_of(loop, case_id: str) -> np.ndarray:
    entry = loop.dataset.case(case_id)
    image = read_image(loop.dataset.path(entry.image))
    return read_mask(loop.dataset.path(entry.reference), grid=image.geometry)


def robot_click(mask: np.ndarray, reference: np.ndarray, geometry) -> tuple[np.ndarray, bool]:
    """The field's robot user: RAS of the centre of the largest error region, and whether it is a missed one."""
    from scipy import ndimage

    missed, extra = reference & ~mask, mask & ~reference
    errors = missed if missed.sum() >= extra.sum() else extra
    labels, _ = ndimage.label(errors)
    biggest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    inside = ndimage.distance_transform_edt(np.pad(biggest, 1))[1:-1, 1:-1, 1:-1]
    index = np.unravel_index(np.argmax(inside), inside.shape)
    return geometry.index_to_ras(np.asarray([index], float))[0], bool(errors is missed)


def robot_clicks(array, geometry, start: np.ndarray, reference: np.ndarray, n: int):
    """n corrective clicks of the robot user, each on the result of the previous ones."""
    from WeakAnnotateLib.methods.extreme_points.corrective import CorrectionSession

    session = CorrectionSession(array, geometry, start)
    mask = start
    for _ in range(n):
        mask = session.add(*robot_click(mask, reference, geometry)).mask
    return mask


# --- the loop without a model: pseudo-labels, effort, resume, bad input ---------------------------------------


def test_next_correct_accept_records_the_effort_and_nothing_is_lost(tmp_path):
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root = make_dataset(tmp_path / "ds")
    loop = AnnotationLoop(root)
    reference_path = loop.dataset.case(CASES[0]).reference
    start = loop.next_case("order")
    assert start.case == CASES[0] and start.source == "pseudo-label (extreme_points)" and not start.resumed
    reference = reference_of(loop, start.case)
    first = read_mask(start.start)
    assert dice(reference, first) > 0.6  # the six clicks' random walker on a PET sarcoma

    # The face closes mid-case: a new loop object (another process) hands out the same case, then the draft.
    again = AnnotationLoop(root).next_case("random")
    assert (again.case, again.resumed, again.source) == (start.case, True, start.source)
    image = read_image(start.image)
    corrected = robot_clicks(image.array, image.geometry, first, reference, 2)
    AnnotationLoop(root).save_draft(start.case, corrected, {"corrective": {"clicks": 2, "seconds": 7.5}})
    resumed = AnnotationLoop(root).next_case("order")
    assert resumed.source == "draft" and resumed.effort == {"corrective": {"clicks": 2, "seconds": 7.5}}
    assert np.array_equal(read_mask(resumed.start), corrected)

    # Bad input: an empty segment is refused and nothing is written.
    before = (root / "dataset.json").read_text()
    with pytest.raises(InputError, match="is empty: there is nothing to accept"):
        loop.accept(start.case, np.zeros_like(corrected), {"corrective": {"clicks": 2}})
    with pytest.raises(InputError, match="not the one being worked on"):
        loop.accept(CASES[1], corrected)
    with pytest.raises(InputError, match="effort 'corrective' clicks: must be a number ≥ 0"):
        loop.accept(start.case, corrected, {"corrective": {"clicks": -1}})
    assert (root / "dataset.json").read_text() == before and not (root / "loop" / "accepted").exists()

    result = AnnotationLoop(root).accept(start.case, corrected, {"corrective": {"clicks": 2, "seconds": 7.5}})
    assert result["remaining"] == 2 and result["job"] is None and not result["finetune_due"]
    entry = DatasetFolder.load(root).case(start.case)
    assert entry.effort == {"clicks": 8, "seconds": 7.5, "extreme_points_clicks": 6, "extreme_points_seconds": 0.0,
                            "corrective_clicks": 2, "corrective_seconds": 7.5}  # fmt: skip
    assert entry.pseudo_label == f"loop/accepted/{start.case}.nii.gz"
    assert np.array_equal(read_mask(root / entry.pseudo_label), corrected)
    assert entry.reference == reference_path  # the catalogue's reference is never replaced
    assert not (root / "loop" / "drafts" / f"{start.case}.nii.gz").exists()
    assert result["accepted"]["dice_to_start"] == round(dice(first, corrected), 4)


def test_order_random_and_none_left(tmp_path):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root = make_dataset(tmp_path / "ds")
    loop = AnnotationLoop(root)
    assert [r["case"] for r in loop.ranking("order")] == CASES
    loop.configure(seed=3)
    shuffled = [r["case"] for r in loop.ranking("random")]
    assert sorted(shuffled) == CASES and shuffled == [r["case"] for r in AnnotationLoop(root).ranking("random")]
    with pytest.raises(InputError, match="strategy: use one of order, random, disagreement"):
        loop.ranking("smallest")
    for _ in CASES:
        start = loop.next_case("random")
        loop.accept(start.case, read_mask(start.start), {"corrective": {"clicks": 0, "seconds": 1}})
    assert [r["case"] for r in loop.state["accepted"]] == shuffled
    with pytest.raises(InputError, match=r"No case is left in .*: all 3 are accepted"):
        loop.next_case()


def test_disagreement_scores_the_marks_a_segment_breaks(tmp_path):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop, mark_disagreement

    root = make_dataset(tmp_path / "ds")
    loop = AnnotationLoop(root)
    entry = loop.dataset.case(CASES[0])
    image = read_image(loop.dataset.path(entry.image))
    reference = reference_of(loop, CASES[0])
    agree = mark_disagreement(loop.dataset, entry, image, reference)
    # The clicks are the reference's own extreme voxels: nothing outside their box, every click on its boundary.
    assert agree["outside_box"] == 0.0 and agree["points_off_mm"] == 0.0 and agree["score"] == 0.0
    spill = reference | np.roll(reference, 5, axis=2)  # the object and a copy 5 voxels along i
    coords = np.argwhere(reference)
    inside = np.zeros_like(reference)
    inside[tuple(slice(a - 1, b + 2) for a, b in zip(coords.min(0), coords.max(0), strict=True))] = True
    broken = mark_disagreement(loop.dataset, entry, image, spill)
    assert broken["outside_box"] == round((spill & ~inside).sum() / spill.sum(), 4) > 0.02
    assert broken["score"] > agree["score"]
    assert mark_disagreement(loop.dataset, entry, image, np.zeros_like(reference))["score"] == 1.0
    rows = loop.ranking("disagreement")
    assert [r["rank"] for r in rows] == [1, 2, 3] and sorted(r["case"] for r in rows) == CASES
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(0.0 <= r["score"] <= 1.0 and "outside_box" in r for r in rows)
    cached = json.loads((root / "loop.json").read_text())["scores"]["pseudo-label"]
    assert set(cached) == set(CASES)


def test_a_dataset_edited_by_hand_names_the_missing_files(tmp_path):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root = make_dataset(tmp_path / "ds")
    loop = AnnotationLoop(root)
    start = loop.next_case()
    loop.accept(start.case, read_mask(start.start), {})
    (root / "loop" / "accepted" / f"{start.case}.nii.gz").unlink()
    (root / "annotations" / f"{CASES[2]}.extreme_points.mrk.json").unlink()
    with pytest.raises(InputError) as e:
        AnnotationLoop(root).next_case()
    text = str(e.value)
    assert "was changed outside the loop" in text
    assert f"accepted mask of '{CASES[0]}'" in text and f"extreme_points of '{CASES[2]}'" in text
    assert f"{CASES[2]}.extreme_points.mrk.json" in text


# --- with models: fine-tuning, the newer model, warnings, a busy dataset, the CLI --------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset whose loop fine-tuned once (one case accepted, one epoch): (root, loop)."""
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root = make_dataset(tmp_path_factory.mktemp("loop") / "ds")
    loop = AnnotationLoop(root)
    loop.configure(method="extreme_point_network", finetune_every=1, finetune_epochs=1, start="model")
    start = loop.next_case()
    result = loop.accept(start.case, read_mask(start.start), {"corrective": {"clicks": 1, "seconds": 3}}, env=ENV)
    assert result["finetune_due"] and result["job"]["init_weights"] == "" and result["job"]["cases"] == [CASES[0]]
    assert loop.wait_for_job(600)["state"] == "done"
    return root, loop


def test_finetune_every_n_and_the_next_prediction_uses_the_newer_model(trained):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root, _ = trained
    loop = AnnotationLoop(root)
    assert loop.state["model"] == "loop/jobs/finetune-001"
    start = loop.next_case("order")
    assert start.case == CASES[1] and start.source == "model finetune-001" and start.warnings == []
    assert start.voxels == int(read_mask(start.start).sum())
    rows = loop.ranking("disagreement", tta=True)  # the model's prediction against the marks, plus flip TTA
    assert [r["case"] for r in rows] == [CASES[1], CASES[2]] or [r["case"] for r in rows] == [CASES[2], CASES[1]]
    assert all(0.0 <= r["uncertainty"] <= 1.0 for r in rows)
    result = loop.accept(start.case, read_mask(start.start), {"corrective": {"clicks": 0, "seconds": 2}}, env=ENV)
    job = result["job"]
    assert job["init_weights"] == str((root / "loop/jobs/finetune-001").resolve())
    assert job["cases"] == CASES[:2]
    spec = json.loads((root / "loop/jobs/finetune-002.json").read_text())
    assert spec["init_weights"] == job["init_weights"] and spec["extreme_point_network"]["rounds"] == 1
    assert loop.wait_for_job(600)["state"] == "done"
    assert loop.state["accepted"][-1]["start_dice"] == {}  # start "model": one candidate, nothing to compare
    assert AnnotationLoop(root).next_case().source == "model finetune-002"


def test_start_auto_takes_the_model_only_once_it_started_as_close_and_the_settings(trained, tmp_path, capsys):
    """start "auto": both candidates are written and Accept records each one's Dice to the accepted mask; the
    marks' pseudo-label starts until the model's prediction started at least as close on the latest accepted
    cases, and the source says why. "model" / "marks" make one candidate only; a bad value is refused."""
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root, _ = trained
    ds = make_dataset(tmp_path / "ds")
    loop = AnnotationLoop(ds)
    assert loop.settings()["start"] == "auto"
    loop.configure(model=root / "loop/jobs/finetune-001", finetune_every=100)
    starts = ds / "loop" / "starts"

    def candidates(case: str) -> dict[str, np.ndarray]:
        return {n: read_mask(starts / f"{case}.{n}.nii.gz") for n in ("model", "marks")}

    first = loop.next_case()
    assert first.source == "pseudo-label (extreme_points): no accepted case compares it with model finetune-001 yet"
    made = candidates(first.case)
    assert np.array_equal(read_mask(first.start), made["marks"])
    # accepted as the pseudo-label: the marks started closer
    record = loop.accept(first.case, made["marks"], {"corrective": {"clicks": 0, "seconds": 1}})["accepted"]
    model_dice = dice(made["marks"], made["model"])
    assert record["start_dice"] == {"model": round(model_dice, 4), "marks": 1.0} and model_dice < 0.99
    second = loop.next_case()
    assert second.source == (f"pseudo-label (extreme_points): the model started farther from the accepted masks "
                             f"(Dice {model_dice:.2f} vs 1.00 on the last 1 case)")  # fmt: skip
    made = candidates(second.case)
    assert np.array_equal(read_mask(second.start), made["marks"])
    # accepted as the model predicted it: the mean over both cases decides
    record = loop.accept(second.case, made["model"], {"corrective": {"clicks": 0, "seconds": 1}})["accepted"]
    assert record["start_dice"]["model"] == 1.0
    evidence = loop.start_evidence()
    assert evidence["cases"] == 2 and evidence["model"] == pytest.approx((round(model_dice, 4) + 1.0) / 2)
    third = loop.next_case()
    model_first = evidence["model"] >= evidence["marks"]
    assert third.source.startswith("model finetune-001 (started at least as close" if model_first else "pseudo-")
    assert np.array_equal(read_mask(third.start), candidates(third.case)["model" if model_first else "marks"])
    # the other settings: one candidate each
    entry = loop.dataset.case(third.case)
    image = read_image(loop.dataset.path(entry.image))
    code, out = run_cli(capsys, "loop", "config", ds, "--start", "marks")
    assert code == 0 and json.loads(out)["start"] == "marks"
    mask, source, _, made = AnnotationLoop(ds).start_segment(entry, image)
    assert source == "pseudo-label (extreme_points)" and set(made) == {"marks"}
    loop = AnnotationLoop(ds)
    loop.configure(start="model")
    mask, source, _, made = loop.start_segment(entry, image)
    assert source == "model finetune-001" and set(made) == {"model"}
    before = (ds / "loop.json").read_text()
    with pytest.raises(InputError, match=r"start: one of auto, model, marks, got 'best'\."):
        loop.configure(start="best", finetune_every=3)
    assert (ds / "loop.json").read_text() == before


def test_start_auto_a_model_that_cannot_predict_the_case_leaves_it_to_the_marks(trained, tmp_path):
    """The extreme-point network on a case with surface points only: "auto" starts from the surface template and
    says why; "model" refuses with the model's message."""
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop
    from WeakAnnotateLib.methods.surface_template.weak_net import surface_point_dataset

    root, _ = trained
    ds = tmp_path / "surface"
    surface_point_dataset(ds, CASES[:1], points=30)
    loop = AnnotationLoop(ds)
    loop.configure(model=root / "loop/jobs/finetune-001", start="model")
    before = (ds / "loop.json").read_text()
    with pytest.raises(InputError, match=r"needs the six extreme points of case 'ibsi_STS_001_PET'; it has none\."):
        loop.next_case()
    assert (ds / "loop.json").read_text() == before and not (ds / "loop" / "starts").exists()
    loop.configure(start="auto")
    start = loop.next_case()
    assert start.source.startswith("pseudo-label (") and "surface" in start.source and start.voxels > 0
    assert start.warnings[-1] == (
        "Model 'finetune-001 (extreme point network)' needs the six extreme points of case 'ibsi_STS_001_PET'; it "
        "has none. Starting from the case's marks instead."
    )


def test_another_job_of_the_dataset_running_refuses_finetuning(trained, tmp_path):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop
    from WeakAnnotateLib.jobs.runner import TrainingJob

    root, _ = trained
    spec = {"dataset": str(root), "output": str(root / "jobs" / "busy"), "method": "full_supervision", "epochs": 50,
            "steps_per_epoch": 1000, "step_delay_s": 0.5, **TINY}  # fmt: skip
    job = TrainingJob(TrainingJob.write_spec(spec, tmp_path / "busy.json"), env=ENV)
    job.start()
    try:
        t0 = time.monotonic()
        while not any(e.get("event") == "step" for e in job.events) and time.monotonic() - t0 < 120:
            job.poll()
            time.sleep(0.2)
        loop = AnnotationLoop(root)
        before = json.loads((root / "loop.json").read_text())
        with pytest.raises(InputError, match=rf"A training job of this dataset is running: {root / 'jobs' / 'busy'} "
                                             rf"\(PID {job.process.pid}\)"):  # fmt: skip
            loop.finetune()
        assert json.loads((root / "loop.json").read_text()) == before
    finally:
        job.cancel()
        job.wait(60)


def test_a_model_of_another_modality_or_method_is_named(trained, tmp_path):
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    root, _ = trained
    ct = make_dataset(tmp_path / "ct", ["ibsi_STS_001_CT"])
    loop = AnnotationLoop(ct)
    loop.configure(model=root / "loop/jobs/finetune-001")
    start = loop.next_case()  # (start "auto": the pseudo-label until the model has started a case as close)
    assert start.source.startswith("pseudo-label (extreme_points): no accepted case compares it with model")
    assert start.warnings == [
        "Model 'finetune-001 (extreme point network)' was trained on PET images; case 'ibsi_STS_001_CT' is CT."
    ]
    entry = loop.dataset.case("ibsi_STS_001_CT")
    assert loop.model_warnings({"name": "w", "method": "weak_net"}, entry) == [
        "Model 'w' was trained with weak_net (marks: surface_points); case 'ibsi_STS_001_CT' has extreme_points."
    ]
    with pytest.raises(InputError, match="model: .* is not a finished job"):
        loop.configure(model=tmp_path)


def test_cli_next_accept_status_and_bad_input(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    code, text = run_cli(capsys, "loop", "next", root, "--output", tmp_path / "start.nii.gz")
    start = json.loads(text)
    assert code == 0 and start["case"] == CASES[0] and (tmp_path / "start.nii.gz").is_file()
    image = read_image(start["image"])
    empty = tmp_path / "empty.nii.gz"
    write_image(empty, np.zeros(image.geometry.shape, np.uint8), image.geometry)
    code, text = run_cli(capsys, "loop", "accept", root, "--case", CASES[0], "--mask", empty)
    assert code == 2 and text.strip().endswith("or leave the case for later.") and text.count("\n") == 1
    assert "is empty: there is nothing to accept" in text and not (root / "loop" / "accepted").exists()
    code, text = run_cli(capsys, "loop", "accept", root, "--case", CASES[0], "--mask", tmp_path / "start.nii.gz",
                         "--clicks", 3, "--seconds", 12, "--no-finetune")  # fmt: skip
    assert code == 0 and json.loads(text)["accepted"]["effort"]["corrective_clicks"] == 3
    code, text = run_cli(capsys, "loop", "status", root)
    status = json.loads(text)
    assert (status["accepted"], status["remaining"]) == (1, 2)
    assert status["cases"][0] == {"case": CASES[0], "modality": "PET", "state": "accepted", "clicks": 9,
                                  "seconds": 12.0, "start": "pseudo-label (extreme_points)"}  # fmt: skip
    with pytest.raises(SystemExit) as e:  # argparse's own answer, before anything is read
        run_cli(capsys, "loop", "config", root, "--finetune-every", 0)
    assert e.value.code == 2 and "--finetune-every: must be ≥ 1 and ≤ 10000, got 0" in capsys.readouterr().err
    code, text = run_cli(capsys, "loop", "config", root, "--method", "box_patch_classifier")
    assert code == 2 and "does not segment" in text
    shutil.rmtree(root / "loop" / "accepted")
    code, text = run_cli(capsys, "loop", "rank", root)
    assert code == 2 and f"accepted mask of '{CASES[0]}'" in text


# --- the hub panel's logic (WeakAnnotate.py), headless ----------------------------------------------------------

from test_training import panel_logic  # noqa: E402, F401 - the hub panel's Logic with Slicer's Qt side stubbed


def test_hub_panel_next_correct_accept(tmp_path, panel_logic):  # noqa: F811
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop
    from WeakAnnotateLib.methods.extreme_points.corrective import Click, correct_from_nodes
    from WeakAnnotateLib.scene.mrml_adapter import image_of_node, segment_mask

    logic, rt = panel_logic
    root = make_dataset(tmp_path / "ds")
    logic.startLoopNext(str(root), "order", False, 3)
    t0 = time.monotonic()
    while (text := logic.finishLoopNext()) is None and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    assert text.startswith(f"{CASES[0]}: ") and "from pseudo-label (extreme_points)" in text, text
    case = logic.loopCase
    assert rt.scene.GetNodeByID(case["volume"].GetID()) is not None
    image = image_of_node(case["volume"])
    start = segment_mask(case["segmentation"], case["segment"], image.geometry)
    assert np.array_equal(start, read_mask(root / "loop" / "starts" / f"{CASES[0]}.nii.gz"))
    # One corrective click on the segment, as ExtremePointSeg's corrective mode makes it (clicks on the segment).
    reference = reference_of(AnnotationLoop(root), CASES[0])
    missed = reference & ~start
    index = np.argwhere(missed)[len(np.argwhere(missed)) // 2] if missed.any() else np.argwhere(reference)[0]
    click = Click.make(image.geometry.index_to_ras(index[None].astype(float))[0], True)
    correct_from_nodes(rt, case["volume"], case["segmentation"], case["segment"], [click])
    logic.loopSaveDraft()  # what closing the scene does
    assert (root / "loop" / "drafts" / f"{CASES[0]}.nii.gz").is_file()
    final = segment_mask(case["segmentation"], case["segment"], image.geometry)
    text = logic.loopAccept(3)
    assert text.startswith(f"Accepted {CASES[0]}: 7 clicks") and "2 cases left" in text
    entry = DatasetFolder.load(root).case(CASES[0])
    assert entry.effort["corrective_clicks"] == 1 and np.array_equal(read_mask(root / entry.pseudo_label), final)
    assert json.loads((root / "loop.json").read_text())["finetune_every"] == 3  # the panel's setting, persisted
    assert logic.loopCase is None
    with pytest.raises(InputError, match="No case of the annotation loop is open"):
        logic.loopAccept()
