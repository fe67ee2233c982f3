"""Pseudo-labels for a whole dataset, as a job: ``python -m WeakAnnotateLib.jobs.pseudo_labels SPEC.json``.

Why a job like training: the hub panel must not freeze while every case is labelled, and it watches this the
way it watches training (:class:`~.runner.TrainingJob`: ``progress.jsonl``, cancel with SIGTERM, the same
exit statuses). The annotation method decides how a case is labelled (its descriptor's ``label_case``:
extreme points → random walker, surface points → template). A case that fails (bad clicks, unreadable
image) is reported in its row and skipped, so one bad case does not cost the rest of the batch.

The spec: ``{"job": "pseudo_labels", "dataset": "DS", "method": "extreme_points", "overwrite": false}``;
progress goes to ``DS/pseudo_labels/progress.jsonl`` (one ``pseudo_label`` line per case, then ``done``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..data.dataset import DatasetFolder, read_reference
from ..evaluation.metrics import dice
from ..files.image_io import read_image, write_image
from ..methods import registry
from ..methods.base import AnnotationMethod, load_object
from ..training.job_spec import checked_fields
from ..training.progress import EXIT_BAD_SPEC, EXIT_CANCELLED, EXIT_DONE, EXIT_FAILED, JobLock, Progress, StopRequest

JOB = "pseudo_labels"
FOLDER = "pseudo_labels"

ProgressCallback = Callable[[dict[str, Any]], None]


def labelling_method(name: str) -> AnnotationMethod:
    """The annotation method ``name`` when it can label a dataset's cases, else an InputError naming those that can."""
    method = registry.annotation_method(name)
    if not method.label_case:
        able = ", ".join(m.name for m in registry.annotation_methods() if m.label_case)
        raise InputError(f"method: {name} makes no pseudo-label from a case's marks; use one of {able}.")
    return method


def pseudo_label_dataset(
    dataset: DatasetFolder,
    *,
    method: str = "extreme_points",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """The pseudo-label of every case with the method's annotation; the manifest is saved after each case.

    ``progress`` gets one dict per case (index, total, case, status, seconds, and Dice against the reference
    when there is one).
    """
    m = labelling_method(method)
    label_case = load_object(m.label_case)
    todo = [c for c in dataset.cases if c.annotations.get(m.annotation)]
    results = []
    (dataset.root / FOLDER).mkdir(parents=True, exist_ok=True)
    for n, entry in enumerate(todo):
        if should_stop():
            break
        t0 = time.perf_counter()
        row: dict[str, Any] = {"event": "pseudo_label", "index": n + 1, "total": len(todo), "case": entry.id}
        out = dataset.root / FOLDER / f"{entry.id}.nii.gz"
        if out.is_file() and not overwrite and entry.pseudo_label:
            row["status"] = "exists"
        else:
            try:
                image = read_image(dataset.path(entry.image), what=f"image of case {entry.id!r}")
                mask = np.asarray(label_case(image, dataset.path(entry.annotations[m.annotation]))).astype(bool)
                write_image(out, mask.astype(np.uint8), image.geometry)
                entry.pseudo_label = dataset.stored(out)
                dataset.save()
                row["status"] = "done"
                if entry.reference:
                    row["dice_vs_reference"] = dice(read_reference(dataset, entry, image.geometry), mask)
            except InputError as e:
                row.update(status="failed", error=str(e))
        row["seconds"] = time.perf_counter() - t0
        results.append(row)
        if progress is not None:
            progress(row)
    return results


@dataclass
class PseudoLabelSpec:
    """A pseudo-labelling job (see the module docstring)."""

    dataset: str
    job: str = JOB
    method: str = "extreme_points"
    overwrite: bool = False
    spec_path: str = ""

    worker_module = "WeakAnnotateLib.jobs.pseudo_labels"  # what TrainingJob launches for this spec

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return Path(self.spec_path).parent / p if not p.is_absolute() and self.spec_path else p

    @property
    def output_path(self) -> Path:
        return self.resolve(self.dataset) / FOLDER

    @classmethod
    def load(cls, path: str | Path) -> PseudoLabelSpec:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"Job spec {path} is not valid JSON ({e}).") from None
        return cls(**checked_fields(doc, cls, "pseudo-label job spec"), spec_path=str(Path(path).resolve()))

    def check(self, *, resume: bool = False) -> DatasetFolder:
        if resume:
            raise InputError("A pseudo-labelling job has nothing to resume: start it again (finished cases are kept).")
        labelling_method(self.method)
        return DatasetFolder.load(self.resolve(self.dataset), field_name="dataset")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "spec_path"}


def is_pseudo_label_spec(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("job") == JOB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m WeakAnnotateLib.jobs.pseudo_labels", description=__doc__)
    parser.add_argument("job", help="pseudo-label job spec (JSON)")
    args = parser.parse_args(argv)
    StopRequest.install()
    try:
        spec = PseudoLabelSpec.load(args.job)
        JobLock(spec.output_path).check_free()
        dataset = spec.check()
        lock = JobLock(spec.output_path)
        lock.acquire()
    except InputError as e:
        print(json.dumps({"event": "failed", "error": str(e), "stage": "validation"}), flush=True)
        print(f"weakannotate pseudo-labels: error: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC
    progress = Progress(spec.output_path)
    t0 = time.perf_counter()
    try:
        rows = pseudo_label_dataset(
            dataset,
            method=spec.method,
            overwrite=spec.overwrite,
            progress=lambda row: progress.emit(row.pop("event"), **row),
            should_stop=lambda: StopRequest.requested,
        )
        if StopRequest.requested:
            progress.emit("cancelled", labelled=len(rows))
            return EXIT_CANCELLED
        failed = [r["case"] for r in rows if r["status"] == "failed"]
        progress.emit("done", cases=len(rows), failed=failed, seconds=round(time.perf_counter() - t0, 3))
        return EXIT_DONE
    except Exception as e:  # noqa: BLE001 — every crash ends the stream with one "failed" line
        progress.emit("failed", error=f"{type(e).__name__}: {e}")
        return EXIT_FAILED
    finally:
        progress.close()
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
