"""Training job for the box-correction patch classifier (``method: "box_patch_classifier"``).

Why a standalone job and not a hook of :mod:`.worker`: the worker trains a 3D U-Net on resampled crops with a
Dice loss, sliding-window validation and DDP; the patch classifier is a 2D CNN on p×p patches of slice crops
with cross-entropy, trained in seconds to minutes on the CPU. Sharing the worker would bend every one of its
steps. The job keeps the worker's contract where it matters to a user: one JSON spec validated before anything
starts (fields named in errors), progress as JSON lines on stdout and in ``OUTPUT/progress.jsonl`` ending in
``done``/``cancelled``/``failed``, SIGTERM → ``cancelled`` (exit 3), and ``model.pt`` then ``model.json``
written atomically only on success. ``weakannotate train --job JOB.json`` dispatches here when the spec's
``method`` is ``box_patch_classifier``.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ...core.errors import InputError
from ...data.dataset import DatasetFolder, read_reference
from ...files.image_io import read_image
from ...training.job_spec import checked_fields
from ...training.progress import EXIT_CANCELLED, EXIT_DONE, EXIT_FAILED, JobLock, Progress, StopRequest
from ..base import option
from .classifier import MIN_TRAINING_VOLUMES, BoxClassifierParams, LabelledVolume, save_box_model, train_box_classifier

METHOD = "box_patch_classifier"
RESUME_MESSAGE = "A box_patch_classifier job has no checkpoints to resume (it trains in minutes); start it."


@dataclass
class BoxJobSpec:
    """A box-correction training job. Cases need a reference mask (the "few fully labelled volumes")."""

    dataset: str
    output: str
    method: str = METHOD
    train_cases: list[str] = option([], "Case ids to train on (empty: every case with a reference mask).")
    patch_size: int = option(16, "p: patch size in pixels (paper: 16 or 32 on 1 mm-ish liver CT).")
    axis: int = option(0, "Slices along this array axis (0 = k).", choices=(0, 1, 2))
    coords: bool = option(True, "Position channels beside the intensity (off: the paper's input).")
    width: int = option(8, "Features of the first convolution block.", minimum=1)
    epochs: int = option(8, "Epochs (paper: 50 on a GPU).", minimum=1)
    learning_rate: float = option(1e-3, "Adam's learning rate (paper: 1e-4 for 50 epochs).")
    batch_size: int = option(64, "Patches per step (paper: 32).", minimum=1)
    margin_mm: float = option(0.0, "Training boxes: the tight 3D box grown by this, in mm.", minimum=0.0)
    max_patches_per_volume: int = option(6000, "A random subset of patches per volume bounds an epoch's time.",
                                         minimum=1)  # fmt: skip
    threshold: float = option(0.5, "A patch is foreground when its probability exceeds this.")
    seed: int = option(0, "Random seed.")
    spec_path: str = ""

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return Path(self.spec_path).parent / p if not p.is_absolute() and self.spec_path else p

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output)

    @classmethod
    def load(cls, path: str | Path) -> BoxJobSpec:
        return load_box_spec(path)

    def check(self, *, resume: bool = False) -> None:
        """Everything checkable before the job starts (the face calls this; the job repeats it)."""
        if resume:
            raise InputError(RESUME_MESSAGE)
        training_cases(self)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "spec_path"}

    def params(self) -> Any:

        names = {f.name for f in fields(BoxClassifierParams)}
        return BoxClassifierParams(**{k: v for k, v in asdict(self).items() if k in names})


def load_box_spec(path: str | Path) -> BoxJobSpec:
    """Parse and type-check the spec, naming the field in every error."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Job spec {path} is not valid JSON ({e}).") from None
    values = checked_fields(doc, BoxJobSpec, "box_patch_classifier job spec")
    spec = BoxJobSpec(**values, spec_path=str(path.resolve()))
    spec.params().check()
    return spec


def training_cases(spec: BoxJobSpec) -> tuple[Any, list[Any]]:
    """The dataset and its training entries (each with a reference mask); too few is an error."""

    root = spec.resolve(spec.dataset)
    if not root.exists():
        raise InputError(f"dataset: {root} does not exist.")
    dataset = DatasetFolder.load(root, field_name="dataset")
    ids = [c.id for c in dataset.cases]
    missing = [c for c in spec.train_cases if c not in ids]
    if missing:
        raise InputError(f"train_cases: no case {missing[0]!r} in the dataset.")
    chosen = [c for c in dataset.cases if not spec.train_cases or c.id in spec.train_cases]
    unlabelled = [c.id for c in chosen if not c.reference]
    if spec.train_cases and unlabelled:
        raise InputError(f"train_cases: case {unlabelled[0]!r} has no reference mask; box correction needs one.")
    entries = [c for c in chosen if c.reference]
    if len(entries) < MIN_TRAINING_VOLUMES:
        raise InputError(
            f"dataset: {len(entries)} case(s) with a reference mask; box correction needs at least "
            f"{MIN_TRAINING_VOLUMES} fully labelled volumes (the paper uses 5, 10 or 20)."
        )
    for c in entries:
        for p in (dataset.path(c.image), dataset.path(c.reference)):
            if not p.exists():
                raise InputError(f"dataset: case {c.id!r}: {p} does not exist.")
    out = spec.resolve(spec.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"output: {out} is a file; give a folder for the job.")
    if (out / "model.json").is_file():
        raise InputError(f"output: {out} already holds a model; choose a new output folder.")
    return dataset, entries


def run_box_job(path: str | Path, *, resume: bool = False) -> int:
    """Validate (InputError → the CLI's exit 2), then train with progress lines; returns the exit status."""
    import time

    if resume:
        raise InputError(RESUME_MESSAGE)
    spec = load_box_spec(path)
    JobLock(spec.output_path).check_free()
    dataset, entries = training_cases(spec)
    output = spec.resolve(spec.output)
    lock = JobLock(output)
    lock.acquire()
    progress = Progress(output)
    StopRequest.install()
    t0 = time.perf_counter()
    try:
        progress.emit("start", method=METHOD, cases=[c.id for c in entries], spec={**asdict(spec), "spec_path": None})
        volumes = []
        for c in entries:
            image = read_image(dataset.path(c.image))
            mask = read_reference(dataset, c, image.geometry)
            volumes.append(LabelledVolume(image.array, mask, image.geometry, c.modality, c.id))
        model = train_box_classifier(
            volumes,
            spec.params(),
            on_epoch=lambda r: progress.emit("epoch", **r, eta_s=r["seconds_per_epoch"] * (r["epochs"] - r["epoch"])),
            should_stop=lambda: StopRequest.requested,
        )
        save_box_model(model, output)
        progress.emit("done", model=str(output / "model.json"), seconds=round(time.perf_counter() - t0, 3))
        return EXIT_DONE
    except KeyboardInterrupt:
        progress.emit("cancelled")
        return EXIT_CANCELLED
    except InputError as e:
        progress.emit("failed", error=str(e))
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 — any crash must end the progress stream with a "failed" line
        progress.emit("failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return EXIT_FAILED
    finally:
        progress.close()
        lock.release()
