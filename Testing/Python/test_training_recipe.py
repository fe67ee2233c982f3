"""The shared training recipe (training/recipe.py) and the wall-clock budget (``max_minutes``).

Windows that oversample the object, augmentation that keeps integer-coded targets intact and leaves the points
channel alone, the poly and cosine schedules, the U-Net sized for the window, a job that stops on its budget at
the end of a step and still writes its model (the extreme-point network refining its labels within the budget
too), and a checkpoint written before the recipe existed resuming as it started. Real PET crops (IBSI STS,
4 mm), tiny networks, in-process workers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import write_job as training_job
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import default_data_dir
from WeakAnnotateLib.training.recipe import RecipeWindows, lr_factor, sized_channels, window_transform

torch.set_num_threads(1)

needs_data = pytest.mark.skipif(default_data_dir() is None, reason="shared/data (cases.json) not found")
CASES = ["ibsi_STS_001_PET", "ibsi_STS_002_PET"]


def test_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("poly", 0.0) == 1.0 and lr_factor("poly", 1.0) == 0.0
    assert math.isclose(lr_factor("poly", 0.5), 0.5**0.9)
    assert math.isclose(lr_factor("cosine", 0.5), 0.5) and math.isclose(lr_factor("cosine", 1.0), 0.0, abs_tol=1e-12)
    assert lr_factor("poly", 2.0) == 0.0 and lr_factor("cosine", -1.0) == 1.0  # clipped to [0, 1]


def test_unet_sized_for_the_window():
    assert sized_channels([32, 32, 32]) == [16, 32, 64, 128]
    assert sized_channels([48, 48, 48]) == [16, 32, 64, 128]
    assert sized_channels([96, 96, 96]) == [16, 32, 64, 128, 256]
    assert sized_channels([16, 64, 64]) == [16, 32, 64]  # the smallest side decides


class _Crops:
    """Two whole crops as CropDataset.arrays gives them: a small object (label 2) in a corner of a large crop,
    and a crop smaller than the window; a points channel of values in [0, 1]."""

    case_ids = ["big", "small"]

    def __init__(self) -> None:
        big_y = np.zeros((1, 80, 80, 80), np.float32)
        big_y[0, 60:66, 5:11, 60:66] = 2.0
        small_y = np.zeros((1, 20, 24, 20), np.float32)
        small_y[0, 8:12, 8:12, 8:12] = 2.0
        self.items = []
        for y in (big_y, small_y):
            image = np.random.default_rng(0).random(y.shape, dtype=np.float32) + y
            points = np.exp(-((np.indices(y.shape[1:]) - 10.0) ** 2).sum(axis=0) / 50.0).astype(np.float32)[None]
            self.items.append((np.concatenate([image, points]), y))

    def __len__(self) -> int:
        return 2

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.items[index]


@pytest.mark.parametrize("augmentation", ["none", "flips", "standard"])
def test_windows_oversample_the_object_and_keep_the_targets_values(augmentation):
    crops = _Crops()
    windows = RecipeWindows(
        crops,
        window_transform([32, 32, 32], foreground_fraction=1.0, augmentation=augmentation, extra_channels=True, seed=3),
    )
    for _ in range(12):
        for index in (0, 1):
            item = windows[index]
            assert tuple(item["input"].shape) == (2, 32, 32, 32) and tuple(item["target"].shape) == (1, 32, 32, 32)
            values = set(np.unique(item["target"].numpy()).tolist())
            assert values <= {0.0, 2.0}, values  # nearest neighbour: an integer-coded target keeps its codes
            if augmentation != "standard":  # windows centred on the object contain it (RandAffined may zoom it out)
                assert 2.0 in values
            points = item["input"][1].numpy()
            assert points.min() >= 0.0 and points.max() <= 1.0 + 1e-6  # the intensity augmentation skips it
    # uniform windows of the large crop mostly miss the 6-voxel object; oversampled ones never do
    uniform = RecipeWindows(
        crops, window_transform([32] * 3, foreground_fraction=0.0, augmentation="none", extra_channels=True, seed=3)
    )
    hits = sum(bool((uniform[0]["target"] > 0).any()) for _ in range(30))
    assert hits < 30


def write_job(folder: Path, name: str, ds: Path, **fields) -> Path:
    """test_training's small job, on this module's two cases: one to train on, one to validate."""
    return training_job(folder, name, ds, **{"train_cases": CASES[:1], "validation_cases": CASES[1:], **fields})


def run_worker(path: Path, *extra: str) -> tuple[int, list[dict]]:
    from WeakAnnotateLib.jobs.worker import main as worker_main

    with contextlib.redirect_stdout(io.StringIO()):
        code = worker_main([str(path), *extra])
    output = json.loads(path.read_text())["output"]
    lines = (Path(output) / "progress.jsonl").read_text().splitlines()
    return code, [json.loads(x) for x in lines]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from WeakAnnotateLib.data.dataset import create_from_cases

    root = tmp_path_factory.mktemp("recipe") / "ds"
    create_from_cases(root, CASES)
    return root


@needs_data
@pytest.mark.parametrize(
    "change, field_name, words",
    [
        ({"schedule": "step"}, "schedule", "poly"),
        ({"augmentation": "heavy"}, "augmentation", "standard"),
        ({"foreground_fraction": 1.5}, "foreground_fraction", "[0, 1]"),
        ({"max_minutes": -1}, "max_minutes", "≥ 0"),
        ({"amp": "yes"}, "amp", "true or false"),
        ({"channels": [0, 8]}, "channels", "positive"),
    ],
)
def test_bad_recipe_fields_are_rejected_naming_the_field(tmp_path, dataset_dir, change, field_name, words):
    from WeakAnnotateLib.jobs.spec import load_spec, validate

    with pytest.raises(InputError) as err:
        validate(load_spec(write_job(tmp_path, "bad", dataset_dir, **change)))
    assert str(err.value).startswith(f"{field_name}:") and words in str(err.value), err.value


@needs_data
def test_the_budget_stops_the_job_at_the_end_of_a_step_and_writes_the_model(tmp_path, dataset_dir):
    from WeakAnnotateLib.networks.prediction import load_model

    path = write_job(tmp_path, "budget", dataset_dir, epochs=100000, steps_per_epoch=2, max_minutes=0.002, channels=[])
    code, events = run_worker(path)
    assert code == 0, events[-1]
    start, done = events[0], events[-1]
    assert start["recipe"] == {"schedule": "poly", "augmentation": "standard", "foreground_fraction": 0.5}
    assert start["max_minutes"] == 0.002 and start["mixed_precision"] is None  # CPU: float32
    assert done["event"] == "done" and done["budget_reached"] is True and done["epochs_completed"] < 100000
    info = json.loads((tmp_path / "budget" / "model.json").read_text())
    assert info["training"]["budget_reached"] is True and info["training"]["training_seconds"] >= 0.12
    assert info["network"]["channels"] == [16, 32, 64, 128]  # channels [] : sized for the 32³ window
    steps = [e for e in events if e["event"] == "step"]
    assert info["data"]["steps"] == steps[-1]["step"]  # the step that passed the budget was completed
    lrs = [e["learning_rate"] for e in events if e["event"] == "epoch"]
    assert lrs[0] <= 1e-3 and lrs == sorted(lrs, reverse=True)  # poly: decreasing over the budget
    load_model(tmp_path / "budget")  # a finished, loadable model


@needs_data
def test_the_extreme_point_network_refines_its_labels_within_the_budget(tmp_path, dataset_dir):
    path = write_job(
        tmp_path,
        "epn",
        dataset_dir,
        method="extreme_point_network",
        epochs=100000,
        steps_per_epoch=2,
        max_minutes=0.004,
        extreme_point_network={"rounds": 2, "random_walker": True, "convergence": 0.0},
    )
    code, events = run_worker(path)
    assert code == 0, events[-1]
    rounds = [e for e in events if e["event"] == "round"]
    assert len(rounds) == 1 and rounds[0]["round"] == 1  # round 1 ended on its half of the budget
    assert {e["round"] for e in events if e["event"] == "step"} == {1, 2}
    assert events[-1]["event"] == "done" and events[-1]["budget_reached"] is True
    assert (tmp_path / "epn" / "targets" / "round_1" / f"{CASES[0]}.npy").is_file()


@needs_data
def test_a_checkpoint_from_before_the_recipe_resumes_as_it_started(tmp_path, dataset_dir):
    path = write_job(tmp_path, "old", dataset_dir, epochs=2, steps_per_epoch=1, fail_at_step=2)
    code, _ = run_worker(path)
    assert code == 1  # the injected failure after the first epoch's checkpoint
    ckpt = tmp_path / "old" / "checkpoints" / "last.pt"
    blob = torch.load(ckpt, weights_only=False)
    for key in ("recipe", "budget_seconds", "round_start_seconds", "budget_reached"):
        del blob["state"][key]  # what the previous code wrote
    for group in blob["optimiser"]["param_groups"]:
        group.pop("initial_lr", None)
    torch.save(blob, ckpt)
    spec = json.loads(path.read_text())
    del spec["fail_at_step"]
    path.write_text(json.dumps(spec))
    code, events = run_worker(path, "--resume")
    assert code == 0
    start = [e for e in events if e["event"] == "start"][-1]
    assert start["resumed_from_epoch"] == 1
    assert start["recipe"] == {"schedule": "constant", "augmentation": "none", "foreground_fraction": 0.0}
    info = json.loads((tmp_path / "old" / "model.json").read_text())
    assert info["training"]["recipe"]["augmentation"] == "none"
    assert [e["learning_rate"] for e in events if e["event"] == "epoch"][-1] == 1e-3  # constant, as before
