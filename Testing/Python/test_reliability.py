"""Lose nothing, let nobody in: every write verified and all-or-none, outputs never over inputs, bad numbers and
voxels refused up front, one job per job folder, workers that end with their launcher, serve's start-up
checks. The full-disk and read-only cases mount a small tmpfs / a read-only bind mount, so they run as root
(as CI does) and are skipped otherwise. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from WeakAnnotateLib.cli.main import main
from WeakAnnotateLib.core.atomic_files import atomic_output, remove_stale_partials
from WeakAnnotateLib.core.errors import InputError, WriteError
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.evaluation import simulate
from WeakAnnotateLib.files.image_io import read_image, write_image
from WeakAnnotateLib.jobs.runner import TrainingJob
from WeakAnnotateLib.jobs.spec import spec_from_dict
from WeakAnnotateLib.scene.markups_io import write_points
from WeakAnnotateLib.training.progress import Progress

PYTHON = sys.executable
GRID = Geometry.from_spacing_origin_direction((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3), (4, 4, 4))


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(image.nii.gz, mask.nii.gz, six extreme points .mrk.json) of a noisy ellipsoid on an oblique grid."""
    folder = tmp_path_factory.mktemp("phantom")
    shape = (30, 36, 40)
    geometry = Geometry.from_spacing_origin_direction((1.0, 1.2, 2.0), (-20.0, 10.0, 30.0), np.eye(3), shape)
    k, j, i = np.indices(shape, dtype=float)
    mask = ((k - 15) / 7) ** 2 + ((j - 18) / 10) ** 2 + ((i - 20) / 12) ** 2 <= 1.0
    array = (100.0 * mask + np.random.default_rng(0).normal(0, 8, shape)).astype(np.float32)
    image = write_image(folder / "image.nii.gz", array, geometry)
    mask_path = write_image(folder / "mask.nii.gz", mask.astype(np.uint8), geometry)
    points, labels = simulate.extreme_points(mask, geometry)
    points_path = write_points(folder / "six.mrk.json", points, labels, "extreme", required=6)
    return image, mask_path, points_path


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                          capture_output=True).returncode:  # fmt: skip
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill a file system up to its last byte."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode
    ):
        pytest.skip("a read-only bind mount needs root")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# --- 1. every write verified; a failure leaves the previous file ------------------------------------------


def test_full_disk_fails_loudly_and_keeps_the_previous_file(tmp_path, phantom, capsys):
    image, _, points = phantom
    with small_tmpfs(tmp_path / "full") as disk:
        previous = disk / "out.nii.gz"
        previous.write_bytes(b"the previous result")
        fill(disk)
        code, text = run_cli(capsys, "extreme-points", "--image", image, "--points", points, "--output", previous)
        assert code == 1
        assert f"Cannot write {previous}: no space left on device" in text and "Traceback" not in text
        assert previous.read_bytes() == b"the previous result"
        assert not [p for p in disk.iterdir() if ".partial" in p.name]
        # Slicer's markups writer reports nothing on a short write: the check after writing does
        with pytest.raises(WriteError, match="no space left on device|empty|Expecting|Unterminated"):
            write_points(disk / "p.mrk.json", np.zeros((2, 3)), ["a", "b"], "p")
        assert not (disk / "p.mrk.json").exists()


def test_simulate_on_a_full_disk_writes_none_of_its_files(tmp_path, phantom, capsys):
    _, mask, _ = phantom
    with small_tmpfs(tmp_path / "full", size="256k") as disk:
        fill(disk)
        (disk / "filler").unlink()
        with open(disk / "filler", "wb") as f:  # leave room for some of the files, not all of them
            f.write(b"\0" * (256 * 1024 - 24 * 1024))
        code, text = run_cli(capsys, "simulate", "--mask", mask, "--output-dir", disk / "ann")
        assert code == 1 and "no space left on device" in text and ".partial" not in text
        assert not (disk / "ann").exists() or not [p for p in (disk / "ann").rglob("*.mrk.json")]


def test_read_only_folder_names_the_cause(tmp_path):
    with read_only(tmp_path / "ro") as folder:
        with pytest.raises(WriteError, match="read-only file system"):
            write_image(folder / "m.nii.gz", np.zeros((4, 4, 4), np.uint8), GRID)


def test_a_writer_that_leaves_a_broken_file_replaces_nothing(tmp_path):
    target = tmp_path / "model.json"
    target.write_text('{"ok": true}', encoding="utf-8")
    with pytest.raises(WriteError, match=f"Cannot write {target}"):
        with atomic_output(target) as tmp:
            tmp.write_text('{"cut off', encoding="utf-8")  # what a short write leaves
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": True}
    with pytest.raises(WriteError, match="empty"):
        with atomic_output(tmp_path / "m.nii.gz") as tmp:
            tmp.write_bytes(b"")
    assert not list(tmp_path.glob(".*partial*"))


def test_partial_files_of_killed_writers_are_removed_at_the_next_write(tmp_path):
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f".a.nii.gz.{dead.pid}-0badc0de.partial.nii.gz"
        busy = tmp_path / f".b.nii.gz.{alive.pid}-0badc0de.partial.nii.gz"
        stale.write_bytes(b"x")
        busy.write_bytes(b"x")
        write_image(tmp_path / "c.nii.gz", np.zeros((4, 4, 4), np.uint8), GRID)
        assert not stale.exists() and busy.exists()  # a writer still running keeps its file
        assert remove_stale_partials(tmp_path) == []
    finally:
        alive.kill()


def test_mask_and_probability_appear_together(tmp_path, phantom, capsys):
    image, _, points = phantom
    mask, prob = tmp_path / "m.nii.gz", tmp_path / "p.nrrd"
    code, _ = run_cli(capsys, "extreme-points", "--image", image, "--points", points, "--output", mask,
                      "--probability", prob)  # fmt: skip
    assert code == 0 and read_image(mask).array.any() and read_image(prob).array.max() <= 1.0


# --- 2. outputs never over inputs ---------------------------------------------------------------------


def test_an_output_that_names_an_input_is_refused(tmp_path, phantom, capsys):
    image, _, points = phantom
    before = image.read_bytes()
    code, text = run_cli(capsys, "extreme-points", "--image", image, "--points", points, "--output", image)
    assert code == 2 and "is one of this command's inputs" in text
    code, text = run_cli(capsys, "extreme-points", "--image", image, "--points", points, "--output",
                         tmp_path / "m.nii.gz", "--probability", image)  # fmt: skip
    assert code == 2 and "is one of this command's inputs" in text
    code, text = run_cli(capsys, "surface-template", "--image", image, "--points", points, "--output", image)
    assert code == 2 and "is one of this command's inputs" in text
    assert image.read_bytes() == before


def test_no_write_into_a_trained_model_folder(tmp_path, phantom, capsys):
    image, _, points = phantom
    model = tmp_path / "job"
    model.mkdir()
    (model / "model.json").write_text("{}", encoding="utf-8")
    (model / "model.pt").write_bytes(b"PK")
    code, text = run_cli(capsys, "extreme-points", "--image", image, "--points", points, "--output",
                         model / "mask.nii.gz")  # fmt: skip
    assert code == 2 and "inside the trained model folder" in text
    code, text = run_cli(capsys, "box-correct", "--model", model, "--image", image, "--box", points, "--output",
                         model / "model.json")  # fmt: skip
    assert code == 2 and json.loads((model / "model.json").read_text(encoding="utf-8")) == {}


# --- 5. inputs: voxels, spacing, numbers --------------------------------------------------------------


def test_nan_voxels_are_refused_with_count_and_place(tmp_path, phantom, capsys):
    image, mask, points = phantom
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
    array[3, 4, 5] = np.nan
    array[10, 10, 10] = np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(sitk.ReadImage(str(image)))
    sitk.WriteImage(bad, str(tmp_path / "nan.mha"))
    code, text = run_cli(capsys, "extreme-points", "--image", tmp_path / "nan.mha", "--points", points, "--output",
                         tmp_path / "o.nii.gz")  # fmt: skip
    assert code == 2 and "2 NaN/Inf voxel(s)" in text and "[3, 4, 5]" in text
    assert not (tmp_path / "o.nii.gz").exists()
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))).astype(np.float32)
    labels[0, 0, 0] = np.nan
    bad_mask = sitk.GetImageFromArray(labels)
    bad_mask.CopyInformation(sitk.ReadImage(str(mask)))
    sitk.WriteImage(bad_mask, str(tmp_path / "nan_mask.nrrd"))
    code, text = run_cli(capsys, "evaluate", "--reference", tmp_path / "nan_mask.nrrd", "--prediction", mask)
    assert code == 2 and "1 NaN voxel(s)" in text


def test_zero_spacing_is_refused(tmp_path, phantom, capsys):
    image, _, points = phantom
    img = sitk.ReadImage(str(image))
    sitk.WriteImage(img, str(tmp_path / "x.nrrd"), useCompression=False)
    header = (tmp_path / "x.nrrd").read_bytes()
    start = header.index(b"space directions: ")
    end = header.index(b"\n", start)
    (tmp_path / "z.nrrd").write_bytes(header[:start] + b"space directions: (0,0,0) (0,-1.2,0) (0,0,2)" + header[end:])
    code, text = run_cli(capsys, "extreme-points", "--image", tmp_path / "z.nrrd", "--points", points, "--output",
                         tmp_path / "o.nii.gz")  # fmt: skip
    assert code == 2 and "voxel spacing of 0 x 1.2 x 2 mm" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extreme-points", "--beta", "-5"], "argument --beta: must be > 0 and ≤ 10000, got -5"),
        (["extreme-points", "--beta", "nan"], "argument --beta: must be a finite number, got nan"),
        (["extreme-points", "--padding-mm", "-100"], "argument --padding-mm: must be ≥ 0 and ≤ 500, got -100"),
        (["simulate", "--jitter-mm", "inf"], "argument --jitter-mm: must be a finite number, got inf"),
        (["simulate", "--surface-points", "4"], "argument --surface-points: must be ≥ 5 and ≤ 10000, got 4"),
        (["surface-template", "--subdivisions", "2.5"], "argument --subdivisions: expected a whole number"),
        (["train", "--nproc", "0"], "argument --nproc: must be ≥ 1 and ≤ 64, got 0"),
        (["serve", "--port", "70000"], "argument --port: must be ≥ 0 and ≤ 65535, got 70000"),
    ],
)
def test_numeric_options_are_checked_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_job_spec_numbers_must_be_finite(value):
    doc = json.loads(f'{{"dataset": "d", "output": "o", "learning_rate": {value}}}')
    with pytest.raises(InputError, match="learning_rate: must be a finite number"):
        spec_from_dict(doc)
    doc = json.loads(f'{{"dataset": "d", "output": "o", "method": "pet_box_dice", "pet_box_dice": '
                     f'{{"ms_omega": [1.0, {value}]}}}}')  # fmt: skip
    with pytest.raises(InputError, match="ms_omega: must be a finite number"):
        spec_from_dict(doc)


def test_progress_lines_stay_valid_json(tmp_path):
    progress = Progress(tmp_path)
    progress.emit("step", loss=float("nan"), values=[1.0, float("inf")], nested={"x": float("-inf")})
    progress.close()
    line = (tmp_path / "progress.jsonl").read_text(encoding="utf-8").strip()
    assert "NaN" not in line and "Infinity" not in line
    parsed = json.loads(line)
    assert parsed["loss"] is None and parsed["values"] == [1.0, None] and parsed["nested"] == {"x": None}


# --- 4. jobs: one per folder, a diverging loss fails, workers end with their launcher -----------------------


def _tiny_job(tmp_path: Path, data_dir: Path, name: str = "job", **fields: object) -> Path:
    from WeakAnnotateLib.data.dataset import create_from_cases

    ds = tmp_path / "ds"
    if not ds.exists():
        create_from_cases(ds, ["ibsi_STS_001_PET", "ibsi_STS_002_PET"], data_dir=data_dir)
    spec = {
        "dataset": str(ds), "output": str(tmp_path / name), "method": "full_supervision", "epochs": 2,
        "batch_size": 1, "patch_size": [16, 16, 16], "channels": [4, 8], "spacing_mm": 4.0, "device": "cpu",
        "validation_fraction": 0.5, "steps_per_epoch": 4, **fields,
    }  # fmt: skip
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _wait_for(predicate, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_a_job_folder_holds_one_running_job(tmp_path, data_dir):
    spec = _tiny_job(tmp_path, data_dir, epochs=30, step_delay_s=0.5)  # long enough to be running throughout
    env = {**os.environ, "WEAKANNOTATE_THREADS": "1"}
    first = TrainingJob(spec, env=env)
    first.start()
    try:
        _wait_for(lambda: any(e.get("event") == "step" for e in _lines(first.progress_path)))
        with pytest.raises(InputError, match=rf"a job is running in .* \(PID {first.process.pid}\)"):
            TrainingJob(spec, env=env).start()
        lines_before = len(_lines(first.progress_path))
        resumed = subprocess.run([PYTHON, "-m", "WeakAnnotateLib.jobs.worker", str(spec), "--resume"],
                                 capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert resumed.returncode == 2 and "a job is running in" in resumed.stderr
        assert len(_lines(first.progress_path)) >= lines_before
        assert all(e.get("stage") != "validation" for e in _lines(first.progress_path))
    finally:
        first.cancel()
        assert first.wait(timeout=120) == "cancelled"


def test_a_diverging_loss_fails_the_job_naming_the_epoch(tmp_path, data_dir):
    spec = _tiny_job(tmp_path, data_dir, learning_rate=1e30, optimizer="sgd")
    job = TrainingJob(spec, env={**os.environ, "WEAKANNOTATE_THREADS": "1"})
    job.start()
    assert job.wait(timeout=300) == "failed"
    assert "training diverged" in job.error and "at epoch 1" in job.error
    assert not (tmp_path / "job" / "model.json").exists()
    for line in (tmp_path / "job" / "progress.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)  # every line valid JSON


def _processes_running(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                state = (entry / "stat").read_text().split(")")[-1].split()[0]
                if needle in cmd and state != "Z":
                    pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killing_a_multi_process_job_ends_its_workers(tmp_path, data_dir, how):
    spec = _tiny_job(tmp_path, data_dir, name=f"ddp_{how}", epochs=50, step_delay_s=0.5)
    env = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cli = subprocess.Popen([PYTHON, "-m", "WeakAnnotateLib.cli.main", "train", "--job", str(spec), "--nproc", "2"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    progress = tmp_path / f"ddp_{how}" / "progress.jsonl"
    try:
        _wait_for(lambda: any(e.get("event") == "step" for e in _lines(progress)), timeout=240)
        workers = [p for p in _processes_running(str(spec)) if p != cli.pid]
        assert len(workers) >= 2  # torchrun and its workers
        cli.send_signal(getattr(signal, how))
        cli.wait(timeout=30)
        _wait_for(lambda: not [p for p in _processes_running(str(spec)) if p in workers], timeout=60)
    finally:
        for pid in _processes_running(str(spec)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- 6. serve: start-up checks -----------------------------------------------------------------------


def test_serve_checks_host_port_and_work_folder_before_loading(tmp_path, capsys):
    import socket

    code, text = run_cli(capsys, "serve", "--host", "nosuch.invalid", "--work", tmp_path / "w")
    assert code == 2 and "--host nosuch.invalid: not an address this machine can listen on" in text
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, text = run_cli(capsys, "serve", "--port", port, "--work", tmp_path / "w")
        assert code == 2 and f"--port {port}: already in use" in text
    assert "work folder" not in text  # nothing loaded
    with read_only(tmp_path / "ro") as folder:
        code, text = run_cli(capsys, "serve", "--port", 0, "--work", folder / "w")
        assert code == 2 and "cannot write there (read-only file system)" in text


# --- every numeric option checked, and listed in docs/reliability.md -------------------------------------


def numeric_options() -> list[tuple[str, str, str]]:
    """(command, option, valid range) of every numeric option of every ``weakannotate`` sub-command."""
    import argparse

    from WeakAnnotateLib.cli.main import build_parser

    rows: list[tuple[str, str, str]] = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}".strip(), sub)
            elif action.type in (int, float):
                rows.append((name, action.option_strings[0] if action.option_strings else action.dest, "UNCHECKED"))
            elif hasattr(action.type, "range_text"):
                rows.append((name, action.option_strings[0], action.type.range_text))

    walk("", build_parser())
    return rows


def test_every_numeric_option_is_checked_and_documented():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    rows = numeric_options()
    assert len(rows) >= 20
    unchecked = [f"{c} {o}" for c, o, r in rows if r == "UNCHECKED"]
    assert not unchecked, f"numeric options without a range check (use core.numbers.number_option): {unchecked}"
    missing = [f"| `{c}` | `{o}` | {r} |" for c, o, r in rows if f"| `{c}` | `{o}` | {r} |" not in docs]
    assert not missing, "rows missing from docs/reliability.md's table:\n" + "\n".join(missing)


def test_damaged_or_wrong_models_are_named(tmp_path, phantom, capsys):
    image, _, _ = phantom
    job = tmp_path / "job"
    job.mkdir()
    (job / "model.pt").write_bytes(os.urandom(5000))
    (job / "model.json").write_text("{}", encoding="utf-8")
    code, text = run_cli(capsys, "predict", "--model", job, "--image", image, "--output", tmp_path / "o.nii.gz")
    assert code == 2 and "the file is damaged or not a WeakAnnotate model" in text and "Traceback" not in text
    (job / "model.json").write_text('{"method": "box_patch_classifier"}', encoding="utf-8")
    code, text = run_cli(capsys, "predict", "--model", job, "--image", image, "--output", tmp_path / "o.nii.gz")
    assert code == 2 and "is a box-correction classifier" in text and "box-correct" in text
    assert not (tmp_path / "o.nii.gz").exists()
