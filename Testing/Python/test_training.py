"""Training jobs end to end on small real crops (PET sarcomas of the IBSI set, resampled to 4 mm).

Lifecycle: spec validation naming the field, start → progress lines, cancel (SIGTERM) → "cancelled" and no
model.json, resume from the last checkpoint epoch, a crashed/killed worker reported with its log tail, DDP
with 2 CPU processes (gloo) through torchrun, and prediction on the image grid. Tiny networks (channels
4, 8, 16), 32³ windows, 1–3 epochs: the whole file runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import default_data_dir

torch.set_num_threads(1)

pytestmark = pytest.mark.skipif(default_data_dir() is None, reason="shared/data (cases.json) not found")

CASES = ["ibsi_STS_001_PET", "ibsi_STS_002_PET", "ibsi_STS_003_PET"]
ENV = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}
EPOCH_KEYS = {"event", "time", "epoch", "epochs", "round", "step", "loss", "val_dice", "seconds_per_epoch", "eta_s"}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from WeakAnnotateLib.data.dataset import create_from_cases

    root = tmp_path_factory.mktemp("training") / "ds"
    create_from_cases(root, CASES)
    return root


def write_job(folder: Path, name: str, ds: Path, **fields) -> Path:
    spec = {
        "dataset": str(ds),
        "output": str(folder / name),
        "method": "full_supervision",
        "epochs": 1,
        "batch_size": 1,
        "patch_size": [32, 32, 32],
        "channels": [4, 8, 16],
        "spacing_mm": 4.0,
        "device": "cpu",
        **fields,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def make_job(path: Path, nproc: int = 1):
    from WeakAnnotateLib.jobs.runner import TrainingJob

    return TrainingJob(path, nproc=nproc, env=ENV)


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field_name, words",
    [
        ({"dataset": "/nonexistent/ds"}, "dataset", "does not exist"),
        ({"epochs": "two"}, "epochs", "integer"),
        ({"learning_rate": [1]}, "learning_rate", "number"),
        ({"method": "magic"}, "method", "unknown method"),
        ({"device": "tpu"}, "device", "unknown device"),
        ({"patch_size": [30, 32, 32]}, "patch_size", "multiple of 8"),
        ({"colour": 1}, "colour", "unknown job spec field"),
    ],
)
def test_bad_spec_is_rejected_naming_the_field(tmp_path, dataset_dir, change, field_name, words):
    from WeakAnnotateLib.jobs.spec import load_spec, validate

    path = write_job(tmp_path, "bad", dataset_dir, **change)
    with pytest.raises(InputError) as err:
        validate(load_spec(path))
    assert str(err.value).startswith(f"{field_name}:"), err.value
    assert words in str(err.value)


def test_missing_required_field_empty_dataset_and_case_without_annotations(tmp_path, dataset_dir):
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.jobs.spec import load_spec, spec_from_dict, validate

    with pytest.raises(InputError, match=r"^output: required"):
        spec_from_dict({"dataset": str(dataset_dir)})

    empty = tmp_path / "empty"
    DatasetFolder(empty, "empty", []).save()
    with pytest.raises(InputError, match=r"^dataset: .*no cases"):
        validate(load_spec(write_job(tmp_path, "e", empty)))

    gone = DatasetFolder.load(dataset_dir)
    gone.root = tmp_path / "gone"
    for c in gone.cases:
        c.image, c.annotations, c.reference = "missing.nii.gz", {}, str(Path(c.reference).resolve())
    gone.save()
    with pytest.raises(InputError, match=r"^dataset: case .*image .*missing.nii.gz does not exist"):
        validate(load_spec(write_job(tmp_path, "g", gone.root)))

    bare = DatasetFolder.load(dataset_dir)
    bare.root = tmp_path / "bare"
    for c in bare.cases:
        c.annotations = {}
        c.image = str(dataset_dir / c.image) if not Path(c.image).is_absolute() else c.image
        c.reference = str(Path(c.reference).resolve())
    bare.save()
    with pytest.raises(InputError, match=r"^dataset: case .* has no extreme-point annotation"):
        validate(load_spec(write_job(tmp_path, "b", bare.root, method="extreme_point_network")))


def test_cli_rejects_a_bad_spec_before_starting(tmp_path, dataset_dir, capsys):
    from WeakAnnotateLib.cli.main import main

    path = write_job(tmp_path, "cli", dataset_dir, epochs=0)
    assert main(["train", "--job", str(path)]) == 2
    assert "epochs: must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists(), "a rejected job must leave nothing behind"


# --- lifecycle ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset_dir) -> tuple[Path, list[dict]]:
    """One finished full-supervision job (2 epochs), shared by the tests that need a model."""
    folder = tmp_path_factory.mktemp("jobs")
    job = make_job(write_job(folder, "full", dataset_dir, epochs=2))
    job.start()
    assert job.wait(timeout=180) == "done", job.log_tail()
    return job.output, job.events


def test_start_writes_progress_lines_checkpoints_and_a_documented_model(trained):
    output, events = trained
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert EPOCH_KEYS <= set(e), EPOCH_KEYS - set(e)
        assert 0.0 <= e["val_dice"] <= 1.0 and e["loss"] is not None
    assert (output / "checkpoints" / "last.pt").is_file()
    info = json.loads((output / "model.json").read_text())
    assert info["hyper_parameters"]["epochs"] == 2 and info["hyper_parameters"]["channels"] == [4, 8, 16]
    assert [c["id"] for c in info["data"]["train_cases"]] == CASES[:2]
    assert info["data"]["validation_cases"] == CASES[2:]
    assert info["validation"]["dice_native"] is not None
    # The progress file holds the same lines as the events the job handed out.
    lines = [json.loads(x) for x in (output / "progress.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == kinds


def test_cancel_stops_cleanly_and_resume_continues_from_the_last_checkpoint(tmp_path, dataset_dir):
    path = write_job(tmp_path, "cancel", dataset_dir, epochs=3, step_delay_s=0.4)
    job = make_job(path)
    job.start()
    t0 = time.monotonic()
    while not any(e["event"] == "epoch" for e in job.events):
        job.poll()
        assert job.running and time.monotonic() - t0 < 120, job.log_tail()
        time.sleep(0.1)
    job.cancel()
    assert job.wait(timeout=60) == "cancelled"
    assert job.events[-1]["event"] == "cancelled"
    assert not (job.output / "model.json").exists(), "a cancelled job must not look finished"
    checkpoint = torch.load(job.output / "checkpoints" / "last.pt", weights_only=False)
    done_epochs = checkpoint["state"]["epoch"]
    assert done_epochs >= 1

    with pytest.raises(InputError, match="^output: .*already holds a job"):
        job.start()
    job.resume()
    assert job.wait(timeout=120) == "done", job.log_tail()
    resumed = job.events[job.events.index(next(e for e in job.events if e.get("resumed_from_epoch") is not None)) :]
    assert resumed[0]["resumed_from_epoch"] == done_epochs
    assert [e["epoch"] for e in resumed if e["event"] == "epoch"] == list(range(done_epochs + 1, 4))
    assert json.loads((job.output / "model.json").read_text())["training"]["epochs_completed"] == 3


def test_a_crashing_worker_is_reported_with_its_log_tail(tmp_path, dataset_dir):
    job = make_job(write_job(tmp_path, "crash", dataset_dir, fail_at_step=1))
    job.start()
    assert job.wait(timeout=120) == "failed"
    failed = [e for e in job.events if e["event"] == "failed"][-1]
    assert "injected failure" in failed["error"] and "injected failure" in failed["log_tail"]
    assert not (job.output / "model.json").exists()


def test_a_killed_worker_leaves_no_finished_model(tmp_path, dataset_dir):
    job = make_job(write_job(tmp_path, "killed", dataset_dir, epochs=3, step_delay_s=0.5))
    job.start()
    t0 = time.monotonic()
    while not any(e["event"] == "step" for e in job.events):
        job.poll()
        assert time.monotonic() - t0 < 120, job.log_tail()
        time.sleep(0.1)
    job.process.send_signal(signal.SIGKILL)
    assert job.wait(timeout=30) == "failed"
    assert "signal 9" in job.error
    assert not (job.output / "model.json").exists()


def test_ddp_with_two_cpu_processes(tmp_path, dataset_dir):
    job = make_job(write_job(tmp_path, "ddp", dataset_dir, epochs=1), nproc=2)
    job.start()
    assert job.wait(timeout=240) == "done", job.log_tail()
    start = next(e for e in job.events if e["event"] == "start")
    assert start["world_size"] == 2 and start["backend"] == "gloo"
    assert sum(e["event"] == "done" for e in job.events) == 1, "only rank 0 reports"
    assert len(list(job.output.glob("model.json"))) == 1
    assert json.loads((job.output / "model.json").read_text())["training"]["world_size"] == 2


# --- prediction ---------------------------------------------------------------------------------------


def test_predict_cli_writes_a_mask_on_the_image_grid(tmp_path, trained, capsys):
    from WeakAnnotateLib.cli.main import main
    from WeakAnnotateLib.files.cases import find_case
    from WeakAnnotateLib.files.image_io import read_image

    case = find_case(CASES[2])
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", "--model", str(trained[0]), "--image", str(case.image), "--output", str(out)]) == 0
    pred, image = read_image(out), read_image(case.image)
    assert pred.geometry.same_grid(image.geometry)
    assert set(np.unique(pred.array)) <= {0, 1}
    assert json.loads(capsys.readouterr().out)["voxels"] == int(pred.array.sum())


def test_an_unfinished_model_is_refused(tmp_path, trained):
    from WeakAnnotateLib.networks.prediction import load_model

    shutil.copy(trained[0] / "model.pt", tmp_path / "model.pt")
    with pytest.raises(InputError, match="did not finish"):
        load_model(tmp_path)


# --- extreme-point network, dataset -------------------------------------------------------------------


def test_extreme_point_network_runs_rounds_with_random_walker(tmp_path, dataset_dir, capsys):
    from WeakAnnotateLib.cli.main import main
    from WeakAnnotateLib.data.dataset import DatasetFolder

    path = write_job(tmp_path, "epn", dataset_dir, method="extreme_point_network", rounds=2, convergence=0.0)
    assert main(["train", "--job", str(path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    rounds = [e for e in lines if e["event"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["random_walker"] for r in rounds)
    for r in range(3):
        assert len(list((tmp_path / "epn" / "targets" / f"round_{r}").glob("*.npy"))) == 2
    info = json.loads((tmp_path / "epn" / "model.json").read_text())
    assert info["network"]["points_channel"] is True and info["network"]["in_channels"] == 2

    ds = DatasetFolder.load(dataset_dir)
    points = ds.path(ds.case(CASES[2]).annotations["extreme_points"])
    image = ds.path(ds.case(CASES[2]).image)
    out = tmp_path / "epn.nii.gz"
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "epn"),
                "--image",
                str(image),
                "--points",
                str(points),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file()
    assert (
        main(
            ["predict", "--model", str(tmp_path / "epn"), "--image", str(image), "--output", str(tmp_path / "x.nii.gz")]
        )
        == 2
    )
    assert "--points" in capsys.readouterr().err


def test_refinement_fills_the_uncertain_band_with_the_random_walker():
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.methods.extreme_points.training import refine_with_random_walker

    g = np.mgrid[:40, :40, :40]
    sphere = ((g - 20) ** 2).sum(axis=0) <= 10**2
    image = sphere.astype(np.float32) + np.random.default_rng(0).normal(0, 0.05, sphere.shape).astype(np.float32)
    too_big = ((g - 20) ** 2).sum(axis=0) <= 12**2  # a prediction that leaks 2 voxels outwards
    refined = refine_with_random_walker(too_big.astype(np.float32), image, erosion_vox=4) >= 0.5
    assert dice(sphere, refined) > dice(sphere, too_big)


def test_batch_pseudo_labelling_reports_progress_and_updates_the_manifest(tmp_path, dataset_dir):
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.jobs.pseudo_labels import pseudo_label_dataset

    ds = DatasetFolder.load(dataset_dir)
    ds.root = tmp_path / "copy"
    (ds.root / "annotations").mkdir(parents=True)
    for c in ds.cases[:2]:
        src = dataset_dir / c.annotations["extreme_points"]
        shutil.copy(src, ds.root / c.annotations["extreme_points"])
    ds.cases = ds.cases[:2]
    ds.cases[1].annotations = {"extreme_points": "annotations/missing.mrk.json"}
    ds.save()
    seen = []
    rows = pseudo_label_dataset(ds, progress=seen.append)
    assert [r["index"] for r in seen] == [1, 2] and seen[0]["total"] == 2
    assert rows[0]["status"] == "done" and rows[0]["dice_vs_reference"] > 0.3
    assert rows[1]["status"] == "failed" and "does not exist" in rows[1]["error"]
    reloaded = DatasetFolder.load(ds.root)
    assert "pseudo-labelled" in reloaded.cases[0].states(ds.root)
    assert reloaded.summary()[0]["clicks"] == 6

    # The pseudo-label lands in the crop where the reference is (same Dice as on the original grid, roughly).
    from WeakAnnotateLib.data.dataset import CropCache
    from WeakAnnotateLib.evaluation.metrics import dice

    cache = CropCache(reloaded, tmp_path / "crops", padding_mm=20.0, spacing_mm=4.0)
    cache.prepare(reloaded.cases[0])
    z = cache.load(reloaded.cases[0].id)
    assert abs(dice(z["reference"] >= 0.5, z["pseudo"] >= 0.5) - rows[0]["dice_vs_reference"]) < 0.15


def test_crop_dataset_streams_one_case_per_item(tmp_path, dataset_dir):
    from WeakAnnotateLib.data.dataset import CropCache, CropDataset, DatasetFolder

    ds = DatasetFolder.load(dataset_dir)
    cache = CropCache(ds, tmp_path / "crops", padding_mm=20.0, spacing_mm=4.0)
    for c in ds.cases:
        cache.prepare(c)
    data = CropDataset(cache, [c.id for c in ds.cases], points_channel=True, patch_size=(32, 32, 32))
    item = data[0]
    assert len(data) == 3
    assert tuple(item["input"].shape) == (2, 32, 32, 32) and tuple(item["target"].shape) == (1, 32, 32, 32)
    x, _ = data.arrays(0)
    assert x[1].max() > 0.9, "the points channel peaks at the clicks (off-grid after resampling)"


# --- the hub panel's logic, headless ------------------------------------------------------------------


@pytest.fixture
def panel_logic(monkeypatch):
    """WeakAnnotateLogic from WeakAnnotate.py with Slicer's Qt-side modules stubbed (they need the desktop)."""
    from conftest import load_scripted_module
    from WeakAnnotateLib.scene.slicer_runtime import get_runtime

    rt = get_runtime()
    path = Path(__file__).resolve().parents[2] / "WeakAnnotate" / "WeakAnnotate.py"
    module = load_scripted_module(monkeypatch, path, "WeakAnnotatePanel", rt)
    return module.WeakAnnotateLogic(), rt


def panel_parameters(dataset: Path, method: str, options: dict | None = None, **common):
    """The hub panel's parameter node as its Logic reads it (what the widgets hold)."""
    from types import SimpleNamespace

    from WeakAnnotateDesktop.method_options import write_store

    values = {"epochs": 3, "learningRate": 0.002, "patchSize": 32, "batchSize": 1, "device": "cpu", **common}
    return SimpleNamespace(
        datasetFolder=str(dataset),
        trainingMethod=method,
        methodOptions=write_store("", method, options) if options is not None else "",
        **values,
    )


def test_panel_logic_builds_a_spec_for_every_registry_method(panel_logic, tmp_path, dataset_dir):
    """Every training method of the registry, with the form's defaults, makes a spec the loaders accept."""
    from dataclasses import asdict

    from WeakAnnotateDesktop.method_options import write_store
    from WeakAnnotateLib.jobs.runner import TrainingJob
    from WeakAnnotateLib.jobs.spec import load_any, spec_from_dict
    from WeakAnnotateLib.methods import registry

    logic, _ = panel_logic
    for info in registry.training_methods():
        doc = logic.jobSpec(panel_parameters(dataset_dir, info.name))
        defaults = {f.name: f.default for f in info.fields()}
        if info.standalone:
            # A standalone job (its own spec and loop) is refused by spec_from_dict by design; its own loader
            # reads it, and every field is the descriptor's default (the panel's common fields do not apply).
            spec = load_any(TrainingJob.write_spec(doc, tmp_path / f"{info.name}.json"))
            assert {k: v for k, v in spec.to_json().items() if k in defaults} == defaults, info.name
            continue
        spec = spec_from_dict(doc)
        assert (spec.method, spec.epochs, spec.learning_rate, spec.patch_size) == (info.name, 3, 0.002, [32] * 3)
        assert (spec.batch_size, spec.device) == (1, "cpu")
        assert (asdict(spec.options) if spec.options is not None else {}) == defaults, info.name

    # The form's values of one method: section fields parsed (lists from text), other methods' values ignored.
    p = panel_parameters(dataset_dir, "pet_box_dice", {"ms_omega": "2, 5", "suv_zscore": True})
    p.methodOptions = write_store(p.methodOptions, "weak_net", {"weak_net_lambda": 0.0})
    spec = spec_from_dict(logic.jobSpec(p))
    assert spec.options.ms_omega == [2.0, 5.0] and spec.options.suv_zscore is True
    with pytest.raises(InputError, match=r"^ms_omega: expected numbers separated by commas"):
        logic.jobSpec(panel_parameters(dataset_dir, "pet_box_dice", {"ms_omega": "2, five"}))
    with pytest.raises(InputError, match=r"^method: unknown method 'magic'"):
        logic.jobSpec(panel_parameters(dataset_dir, "magic"))


def test_panel_logic_start_names_what_the_dataset_lacks(panel_logic, tmp_path, dataset_dir):
    """Start goes through TrainingJob.start: a refused spec raises InputError (what the panel's status line
    shows) and leaves no job folder behind; nothing is written under a dataset path that does not exist."""
    logic, _ = panel_logic
    jobs = dataset_dir / "jobs"
    before = sorted(jobs.iterdir()) if jobs.is_dir() else []
    with pytest.raises(InputError, match=r"^dataset: case 'ibsi_STS_001_PET' has no surface_points annotation"):
        logic.startTraining(panel_parameters(dataset_dir, "weak_net"))
    with pytest.raises(InputError, match=r"^init_model: pet_box_mdice_ms starts from a finished pet_box_dice job"):
        logic.startTraining(panel_parameters(dataset_dir, "pet_box_mdice_ms"))
    assert (sorted(jobs.iterdir()) if jobs.is_dir() else []) == before
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(InputError, match=r"^dataset: "):
        logic.startTraining(panel_parameters(missing, "full_supervision"))
    with pytest.raises(InputError, match=r"^dataset: "):
        logic.startPseudoLabelling(str(missing))
    assert not missing.exists()
    assert logic.pseudoLabelMethod("extreme_point_network") == "extreme_points"
    assert logic.pseudoLabelMethod("weak_net") == "surface_template"
    assert logic.pseudoLabelMethod("full_supervision") == "" and logic.pseudoLabelMethod("magic") == ""


def test_panel_logic_pseudo_labels_a_dataset_as_a_job(panel_logic, tmp_path, monkeypatch):
    """The panel's "Pseudo-label all cases": a pseudo-labels job through TrainingJob, watched by the desktop
    helpers' JobPoller (a fake timer ticked by hand): rows arrive, the manifest gets the pseudo-label."""
    from WeakAnnotateDesktop.jobs import JobPoller
    from WeakAnnotateLib.data.dataset import DatasetFolder, create_from_cases

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    logic, _ = panel_logic
    ds = tmp_path / "ds"
    create_from_cases(ds, CASES[:1])

    class Timer:
        active = False

        def start(self):
            self.active = True

        def stop(self):
            self.active = False

        def isActive(self):  # noqa: N802 - Qt's name
            return self.active

    poller = JobPoller(timer=Timer())
    events, ended, lines = [], [], []
    job = logic.startPseudoLabelling(str(ds), logic.pseudoLabelMethod("extreme_point_network"))
    assert logic.pseudoLabelling and job.output == ds / "pseudo_labels"
    with pytest.raises(InputError, match="already running"):
        logic.startPseudoLabelling(str(ds))
    poller.watch_job(job, lambda e: (events.append(e), lines.append(logic.pseudoLabelText(e))), ended.append)
    t0 = time.monotonic()
    while poller.busy and time.monotonic() - t0 < 120:
        poller.tick()
        time.sleep(0.2)
    assert ended == [job] and job.state == "done" and not logic.pseudoLabelling, job.log_tail()
    rows = [e for e in events if e["event"] == "pseudo_label"]
    assert [(r["index"], r["total"], r["case"], r["status"]) for r in rows] == [(1, 1, CASES[0], "done")]
    assert rows[0]["dice_vs_reference"] > 0.5, rows[0]
    assert (
        lines[0].startswith(f"Pseudo-label 1/1: {CASES[0]} done (Dice ") and lines[-1] == "Pseudo-labelled 1 case(s)."
    )
    case = DatasetFolder.load(ds).cases[0]
    assert case.pseudo_label and (ds / case.pseudo_label).is_file()
    assert "pseudo-labelled" in case.states(ds)


def test_panel_logic_spec_plot_models_and_apply(panel_logic, trained, dataset_dir):
    from WeakAnnotateLib.files.cases import find_case
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.jobs.spec import spec_from_dict
    from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, segment_ids

    logic, rt = panel_logic
    p = panel_parameters(dataset_dir, "extreme_point_network", {"rounds": 2, "random_walker": False})
    spec = spec_from_dict(logic.jobSpec(p))
    assert (spec.epochs, spec.learning_rate, spec.patch_size) == (3, 0.002, [32] * 3)
    assert (spec.options.rounds, spec.options.random_walker) == (2, False)

    logic.resetPlot()
    for step, loss in enumerate([0.9, 0.8, 0.7], start=1):
        logic.addPlotPoint("loss", step, loss)
    logic.addPlotPoint("dice", 3, 0.4)
    assert logic._plotTables["loss"].GetTable().GetNumberOfRows() == 3
    assert logic._plotTables["dice"].GetTable().GetNumberOfRows() == 1
    assert "ETA" in logic.epochText(
        {"epoch": 1, "epochs": 2, "loss": 0.5, "val_dice": 0.3, "seconds_per_epoch": 1.0, "eta_s": 60}
    )

    jobs = dataset_dir.parent / "jobs_for_panel"
    (jobs / "jobs").mkdir(parents=True, exist_ok=True)
    if not (jobs / "jobs" / "full").exists():
        shutil.copytree(trained[0], jobs / "jobs" / "full")
    rows = logic.modelRows(str(jobs))
    assert len(rows) == 1 and rows[0]["method"] == "full_supervision" and rows[0]["dice"] != "n/a"
    assert [r["id"] for r in logic.caseRows(str(dataset_dir))] == CASES

    volume = add_volume_node(rt, read_image(find_case(CASES[2]).image), "pet")
    logic.startPrediction(volume, rows[0]["path"])
    logic._prediction[0].join(60)
    message = logic.finishPrediction()
    assert message.startswith("Added segment"), message
    node = rt.scene.GetFirstNodeByName("pet predictions")
    segment = node.GetSegmentation().GetSegment(segment_ids(node)[0])
    assert segment.GetName() == rows[0]["name"]
