"""The annotation loop: next case → the model's prediction or the marks' pseudo-label (``start``: auto, model, marks)
→ corrections → accept → every N accepted cases the model is fine-tuned from its last weights in the background.

Why in ``jobs/``: the loop combines a dataset (``data/``), prediction (``networks/``), the method registry and
each method's pseudo-label (``methods/``) and the training runner (:class:`.runner.TrainingJob`). The faces
(``weakannotate loop``, the hub panel, the web page's loop panel) only gather input and show the answer.

Everything the loop knows is on disk in the dataset folder, so nothing is lost when a face closes mid-case:

* ``loop.json`` — the settings (training method, fine-tune every N, epochs, seed, start), the current model, the case
  being worked on, every accepted case with its effort, the fine-tuning job, the disagreement scores. Written
  atomically; the single source of truth. The dataset's manifest is brought in line with it when opened
  (a process that died between the two writes loses nothing).
* ``loop/starts/<case>.nii.gz`` — the starting segment of a case (prediction or pseudo-label; under ``auto`` each
  candidate too, ``<case>.model.nii.gz`` / ``<case>.marks.nii.gz``);
  ``loop/drafts/<case>.nii.gz`` — the last saved state of the corrections (:meth:`AnnotationLoop.save_draft`);
  ``loop/accepted/<case>.nii.gz`` — the accepted mask; ``loop/jobs/<name>`` — the fine-tuning jobs.

Accepting a case records the mask as the case's ``pseudo_label`` (the corrected label the methods train on:
the extreme-point network starts from it) and, when the case has no reference mask, as its ``reference`` too
(the "final" label of ``dataset export``); the effort (clicks and seconds by kind of mark) goes into the
case's ``effort``. A reference that exists is never replaced, and no file is written over.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..core.atomic_files import atomic_output
from ..core.errors import InputError
from ..data.dataset import MANIFEST, CaseEntry, DatasetFolder, object_bounds
from ..evaluation.metrics import dice
from ..files.image_io import Image, read_image, read_mask, write_image
from ..methods import registry
from ..methods.base import load_object
from ..networks.model_files import MODEL_INFO, model_paths
from ..training.progress import PROGRESS_FILE, JobLock
from .runner import TrainingJob

LOOP_FILE = "loop.json"
LOOP_FOLDER = "loop"
STRATEGIES = ("order", "random", "disagreement")
MARK_KINDS = ("extreme_points", "box", "surface_points")  # annotations that place the object (the crop)
# A fine-tuning job's common fields when no model exists yet (the web page's small CPU spec).
FIRST_SPEC = {"batch_size": 1, "patch_size": [32, 32, 32], "channels": [4, 8, 16], "spacing_mm": 4.0,
              "device": "cpu"}  # fmt: skip
# Per method: fields of its section that a fine-tune sets (one round: the accepted masks are trusted labels).
FINETUNE_SECTION = {"extreme_point_network": {"rounds": 1}}
POINT_SCALE_MM = 10.0  # a mark this far from the predicted boundary counts fully as broken


@dataclass
class CaseStart:
    """What "next case" hands a face: the case, its starting segment (on the image's grid) and where it came from."""

    case: str
    image: Path
    start: Path  # the starting segment's file (loop/starts/<case>.nii.gz), or the draft when resuming
    source: str  # "model <name>", "pseudo-label (<method>)", "draft", "empty"
    voxels: int
    warnings: list[str] = field(default_factory=list)
    resumed: bool = False
    effort: dict[str, Any] = field(default_factory=dict)  # effort saved with the draft (resuming)

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "image": str(self.image),
            "start": str(self.start),
            "source": self.source,
            "voxels": self.voxels,
            "warnings": list(self.warnings),
            "resumed": self.resumed,
            "effort": self.effort,
        }


START_CHOICES = {
    "auto": "the marks' pseudo-label until the model's prediction starts at least as close to the accepted masks "
    "(mean Dice over the last cases that had both), then the prediction while it does",
    "model": "the model's prediction whenever there is a model",
    "marks": "the marks' pseudo-label (the model is used for ranking only)",
}
EVIDENCE_CASES = 3  # "auto" judges on this many latest accepted cases: recent, as each fine-tune changes the model


def start_evidence_of(start_dice: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """Mean Dice of the model's and of the marks' start to the accepted mask over the latest ``EVIDENCE_CASES``
    entries (oldest first, ``{"model": d, "marks": d}``) that have both; None before any such entry."""
    both = [d for d in start_dice if {"model", "marks"} <= set(d)][-EVIDENCE_CASES:]
    if not both:
        return None
    return {k: float(np.mean([d[k] for d in both])) for k in ("model", "marks")} | {"cases": len(both)}


def model_has_earned(evidence: dict[str, float] | None) -> bool:
    """``auto``'s rule: the model's prediction starts once it started at least as close as the marks' pseudo-label.
    Accepted masks lean towards the start they were corrected from, so without evidence the marks keep it."""
    return evidence is not None and evidence["model"] >= evidence["marks"]


def _atomic_json(doc: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def _default_state() -> dict[str, Any]:
    return {
        "version": 1,
        "method": "",  # training method of the fine-tuning jobs ("" = the dataset's marks' first)
        "finetune_every": 5,
        "finetune_epochs": 2,
        "seed": 0,
        "start": "auto",  # what a case starts from: "auto", "model" or "marks" (see START_CHOICES)
        "model": "",  # the current model's job folder (relative to the dataset when inside it)
        "models": [],  # every model the loop used, oldest first
        "current": None,  # {"case", "started", "start", "source"}
        "accepted": [],  # [{"case", "mask", "effort", "start_source", "model", "time", "dice_to_start"}]
        "job": None,  # the fine-tuning job: {"output", "spec", "cases", "started"}
        "trained_on": 0,  # accepted cases the current model's fine-tunes have seen
        "scores": {},  # model key -> case -> disagreement row
    }


class AnnotationLoop:
    """The loop over one dataset folder. Its state is read from ``loop.json`` when opened and written after every
    change; open it again to see what another face (the CLI, the page, the hub panel) changed since."""

    def __init__(self, dataset: str | Path) -> None:
        self.dataset = DatasetFolder.load(dataset)
        self.root = self.dataset.root
        self.state = self._read_state()
        self._sync_dataset()

    # --- state ------------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / LOOP_FILE

    def folder(self, *parts: str) -> Path:
        return self.root.joinpath(LOOP_FOLDER, *parts)

    def _read_state(self) -> dict[str, Any]:
        state = _default_state()
        if self.state_path.is_file():
            try:
                doc = json.loads(self.state_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f"{self.state_path} is not valid JSON ({e}); restore it or delete it to restart "
                                 "the loop (the accepted masks stay in loop/accepted/).") from None  # fmt: skip
            if not isinstance(doc, dict):
                raise InputError(f"{self.state_path} must be a JSON object; restore it or delete it.")
            state.update(doc)
        return state

    def _save_state(self) -> None:
        _atomic_json(self.state, self.state_path)

    def _sync_dataset(self) -> None:
        """Apply accepted records the manifest lacks (a process that stopped between the two writes)."""
        changed = False
        for record in self.state["accepted"]:
            try:
                entry = self.dataset.case(record["case"])
            except InputError:
                continue  # named by check_files
            changed |= self._apply_record(entry, record)
        if changed:
            self.dataset.save()

    def _apply_record(self, entry: CaseEntry, record: dict[str, Any]) -> bool:
        before = (entry.pseudo_label, entry.reference, dict(entry.effort))
        entry.pseudo_label = record["mask"]
        if not entry.reference or entry.reference == record.get("reference_from_loop"):
            entry.reference = record["mask"]
            record["reference_from_loop"] = record["mask"]
        entry.effort = dict(record["effort"])
        return before != (entry.pseudo_label, entry.reference, entry.effort)

    def configure(
        self,
        *,
        method: str | None = None,
        finetune_every: int | None = None,
        finetune_epochs: int | None = None,
        seed: int | None = None,
        model: str | Path | None = None,
        start: str | None = None,
    ) -> dict[str, Any]:
        """Change settings; ``model`` (a finished job) becomes the current model. Checked before anything is saved."""
        if method is not None:
            info = registry.training_method(method, "method")
            if info.standalone or info.network not in ("unet_3d", "unet_2.5d"):
                raise InputError(f"method: {method} does not segment (it is a {info.network}); choose a network.")
        if finetune_every is not None and finetune_every < 1:
            raise InputError(f"finetune_every: must be ≥ 1, got {finetune_every}.")
        if start is not None and start not in START_CHOICES:
            raise InputError(f"start: one of {', '.join(START_CHOICES)}, got {start!r}.")
        if finetune_epochs is not None and finetune_epochs < 1:
            raise InputError(f"finetune_epochs: must be ≥ 1, got {finetune_epochs}.")
        if model is not None and str(model):
            info_doc = _model_info(Path(model))
            self.state["model"] = self.dataset.stored(Path(model) if Path(model).is_dir() else Path(model).parent)
            self.state["models"].append({"path": self.state["model"], "name": info_doc.get("name", ""),
                                         "method": info_doc.get("method", ""), "time": time.time()})  # fmt: skip
            if not self.state["method"] and method is None:
                self.state["method"] = str(info_doc.get("method", ""))
        for key, value in (("method", method), ("finetune_every", finetune_every),
                           ("finetune_epochs", finetune_epochs), ("seed", seed), ("start", start)):  # fmt: skip
            if value is not None:
                self.state[key] = value
        self._save_state()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        keys = ("method", "finetune_every", "finetune_epochs", "seed", "start", "model")
        return {k: self.state[k] for k in keys}

    # --- cases ------------------------------------------------------------------------------------------------
    def accepted_ids(self) -> list[str]:
        return [r["case"] for r in self.state["accepted"]]

    def remaining(self) -> list[str]:
        done = set(self.accepted_ids())
        return [c.id for c in self.dataset.cases if c.id not in done]

    def check_files(self) -> None:
        """Every file the loop relies on exists: a dataset folder edited by hand between cases is named file by
        file (restore them, or remove the cases from dataset.json)."""
        missing = []
        ids = {c.id for c in self.dataset.cases}
        for record in self.state["accepted"]:
            if record["case"] not in ids:
                missing.append(f"case {record['case']!r} (accepted, no longer in {MANIFEST})")
            elif not self.dataset.path(record["mask"]).is_file():
                missing.append(f"accepted mask of {record['case']!r}: {self.dataset.path(record['mask'])}")
        current = self.state.get("current")
        if current and current["case"] not in ids:
            missing.append(f"case {current['case']!r} (being worked on, no longer in {MANIFEST})")
        done = set(self.accepted_ids())
        for entry in self.dataset.cases:
            if entry.id in done:
                continue
            if not self.dataset.path(entry.image).exists():
                missing.append(f"image of {entry.id!r}: {self.dataset.path(entry.image)}")
            for kind, p in entry.annotations.items():
                if not self.dataset.path(p).is_file():
                    missing.append(f"{kind} of {entry.id!r}: {self.dataset.path(p)}")
        if self.state["model"] and not model_paths(self.dataset.path(self.state["model"]))[1].is_file():
            missing.append(f"the loop's model: {self.dataset.path(self.state['model'])}")
        if missing:
            raise InputError(
                f"The dataset {self.root} was changed outside the loop; missing: {'; '.join(missing)}. Restore "
                f"them, or remove those cases from {MANIFEST} (and the model from {LOOP_FILE})."
            )

    # --- the model --------------------------------------------------------------------------------------------
    def model_path(self) -> Path | None:
        """The newest model: a finished fine-tuning job becomes the current model here."""
        self.poll_job()
        return self.dataset.path(self.state["model"]) if self.state["model"] else None

    def poll_job(self) -> dict[str, Any] | None:
        """The fine-tuning job's state ("running", "done", "failed", "cancelled"); a finished one is promoted."""
        job = self.state.get("job")
        if not job:
            return None
        output = self.dataset.path(job["output"])
        status = job_status(output)
        if status["state"] == "done" and job.get("state") != "done":
            job["state"] = "done"
            self.state["model"] = job["output"]
            self.state["trained_on"] = len(job["cases"])
            self.state["models"].append({"path": job["output"], "name": output.name, "method": job["method"],
                                         "cases": list(job["cases"]), "time": time.time()})  # fmt: skip
            self._save_state()
        elif status["state"] in ("failed", "cancelled") and job.get("state") != status["state"]:
            job["state"] = status["state"]
            job["error"] = status.get("error", "")
            self._save_state()
        return {**job, **status}

    def model_warnings(self, model_info: dict[str, Any], entry: CaseEntry) -> list[str]:
        """A model trained on another modality, or from other marks than this case's: said, with which."""
        out = []
        name = model_info.get("name", "the model")
        method = str(model_info.get("method", ""))
        try:
            annotation = registry.method_of_training(method).annotation
        except InputError:
            annotation = ""
        marks = [k for k in entry.annotations if k in MARK_KINDS or k.startswith("box")]
        if annotation and annotation != "reference" and marks and not any(k.startswith(annotation) for k in marks):
            out.append(f"Model {name!r} was trained with {method} (marks: {annotation}); case {entry.id!r} has "
                       f"{', '.join(marks)}.")  # fmt: skip
        modalities = _model_modalities(model_info)
        if entry.modality and modalities and entry.modality not in modalities:
            out.append(f"Model {name!r} was trained on {', '.join(sorted(modalities))} images; case {entry.id!r} "
                       f"is {entry.modality}.")  # fmt: skip
        return out

    # --- starting segments ------------------------------------------------------------------------------------
    def _marks_points(self, entry: CaseEntry, image: Image) -> np.ndarray | None:
        """RAS points that place the crop (the six clicks, else the box's corners, else the surface points)."""
        if not any(k in entry.annotations for k in MARK_KINDS):
            return None
        lo, hi, points = object_bounds(self.dataset, entry, image)
        return points if points is not None else image.geometry.index_to_ras(np.stack([lo, hi]))

    def predict(self, entry: CaseEntry, image: Image, model: Any, *, flip: bool = False) -> np.ndarray:
        """The model's mask on the case (its six clicks as the points channel when it takes them)."""
        # why here: torch and monai load only when a model is used (listing, status and accepting need neither)
        from ..networks.prediction import predict_image

        points = self._marks_points(entry, image)
        if model.needs_points and (points is None or len(points) != 6):
            raise InputError(f"Model {model.name!r} needs the six extreme points of case {entry.id!r}; it has none.")
        if not flip:
            return predict_image(model, image, points)[0]
        n = image.geometry.shape[2]
        flipped = Image(np.ascontiguousarray(image.array[:, :, ::-1]), image.geometry, image.name)
        fpoints = None
        if points is not None:
            index = image.geometry.ras_to_index(points).astype(float)
            index[:, 2] = (n - 1) - index[:, 2]
            fpoints = image.geometry.index_to_ras(index)
        return predict_image(model, flipped, fpoints)[0][:, :, ::-1]

    def pseudo_label(self, entry: CaseEntry, image: Image) -> tuple[np.ndarray, str] | None:
        """The marks' pseudo-label: the annotation method of the case's first mark kind that makes one."""
        for m in registry.annotation_methods():
            if m.label_case and m.annotation in entry.annotations:
                mask = load_object(m.label_case)(image, self.dataset.path(entry.annotations[m.annotation]))
                return np.asarray(mask, bool), f"pseudo-label ({m.name})"
        return None

    def start_segment(self, entry: CaseEntry, image: Image) -> tuple[np.ndarray, str, list[str], dict[str, np.ndarray]]:
        """(mask, source, warnings, candidates): the newest model's prediction or the marks' pseudo-label, as the
        ``start`` setting says, else empty. ``candidates`` holds both when both were made (``auto``), so that
        Accept can record which one started closer to the accepted mask."""
        path = self.model_path()
        setting = self.state.get("start", "auto")
        warnings: list[str] = []
        candidates: dict[str, np.ndarray] = {}
        if path is not None and setting in ("auto", "model"):
            from ..networks.prediction import load_model  # why here: torch only when a model is used

            model = load_model(path)
            warnings = self.model_warnings(model.info, entry)
            if setting == "model":
                candidates["model"] = self.predict(entry, image, model)
                return candidates["model"], f"model {path.name}", warnings, candidates
            try:
                candidates["model"] = self.predict(entry, image, model)
            except InputError as e:  # "auto": a model that cannot predict this case leaves it to the marks
                warnings.append(f"{e} Starting from the case's marks instead.")
        made = self.pseudo_label(entry, image)
        if made is not None:
            candidates["marks"] = made[0]
        if "model" in candidates:
            evidence = self.start_evidence()
            if "marks" not in candidates:
                return candidates["model"], f"model {path.name}", warnings, candidates
            if model_has_earned(evidence):
                why = f" (started at least as close as the marks: {_evidence_text(evidence)})"
                return candidates["model"], f"model {path.name}{why}", warnings, candidates
            if evidence is None:
                source = f"{made[1]}: no accepted case compares it with model {path.name} yet"
            else:
                source = f"{made[1]}: the model started farther from the accepted masks ({_evidence_text(evidence)})"
            return made[0], source, warnings, candidates
        if made is not None:
            return made[0], made[1], warnings, candidates
        empty = ["No model and no marks to start from: the segment is empty."]
        return np.zeros(image.geometry.shape, bool), "empty", empty, candidates

    def start_evidence(self) -> dict[str, float] | None:
        """:func:`start_evidence_of` the accepted cases' records."""
        return start_evidence_of([r.get("start_dice", {}) for r in self.state["accepted"]])

    # --- which case next --------------------------------------------------------------------------------------
    def ranking(self, strategy: str = "order", *, tta: bool = False) -> list[dict[str, Any]]:
        """The remaining cases in the order the strategy takes them: rows {case, rank, score, …} (disagreement:
        the score and its parts; the model's predictions are cached per model in ``loop.json``)."""
        if strategy not in STRATEGIES:
            raise InputError(f"strategy: use one of {', '.join(STRATEGIES)}, got {strategy!r}.")
        self.check_files()
        remaining = self.remaining()
        if strategy == "order":
            rows = [{"case": c, "score": None} for c in remaining]
        elif strategy == "random":
            order = [c.id for c in self.dataset.cases]
            perm = np.random.default_rng(int(self.state["seed"])).permutation(len(order))
            left = set(remaining)
            rows = [{"case": order[i], "score": None} for i in perm if order[i] in left]
        else:
            rows = [self.disagreement(c, tta=tta) for c in remaining]
            rows.sort(key=lambda r: -r["score"])
        for n, r in enumerate(rows):
            r["rank"] = n + 1
        return rows

    def disagreement(self, case_id: str, *, tta: bool = False) -> dict[str, Any]:
        """How much the starting segment breaks the case's own marks (0 = agrees, 1 = ignores them)."""
        path = self.model_path()
        key = f"{self.state['model'] or 'pseudo-label'}{' +tta' if tta else ''}"
        cached = self.state["scores"].get(key, {}).get(case_id)
        if cached is not None:
            return dict(cached)
        entry = self.dataset.case(case_id)
        image = read_image(self.dataset.path(entry.image), what=f"image of case {case_id!r}")
        uncertainty = None
        if path is not None:
            from ..networks.prediction import load_model  # why here: torch only when a model is used

            model = load_model(path)
            mask = self.predict(entry, image, model)
            if tta:
                uncertainty = 1.0 - dice(mask, self.predict(entry, image, model, flip=True))
        else:
            made = self.pseudo_label(entry, image)
            mask = made[0] if made is not None else np.zeros(image.geometry.shape, bool)
        row = {"case": case_id, **mark_disagreement(self.dataset, entry, image, mask)}
        if uncertainty is not None:
            row["uncertainty"] = round(float(uncertainty), 4)
            row["score"] = round(0.5 * (row["score"] + float(uncertainty)), 4)
        self.state["scores"].setdefault(key, {})[case_id] = row
        self._save_state()
        return dict(row)

    def next_case(self, strategy: str = "order", *, tta: bool = False) -> CaseStart:
        """The case being worked on (with its draft) if there is one, else the strategy's first remaining case
        with its starting segment written to ``loop/starts/``."""
        self.check_files()
        current = self.state.get("current")
        if current and current["case"] not in self.accepted_ids():
            entry = self.dataset.case(current["case"])
            draft = self.folder("drafts", f"{entry.id}.nii.gz")
            start = draft if draft.is_file() else self.dataset.path(current["start"])
            if start.is_file():
                voxels = int(read_mask(start, what="starting segment").sum())
                return CaseStart(entry.id, self.dataset.path(entry.image), start,
                                 "draft" if draft.is_file() else current["source"], voxels,
                                 list(current.get("warnings", [])), resumed=True,
                                 effort=dict(current.get("effort", {})))  # fmt: skip
        remaining = self.ranking(strategy, tta=tta)
        if not remaining:
            raise InputError(f"No case is left in {self.root}: all {len(self.dataset.cases)} are accepted. Add cases "
                             "to the dataset, or export it (weakannotate dataset export).")  # fmt: skip
        entry = self.dataset.case(remaining[0]["case"])
        image = read_image(self.dataset.path(entry.image), what=f"image of case {entry.id!r}")
        mask, source, warnings, candidates = self.start_segment(entry, image)
        start = self.folder("starts", f"{entry.id}.nii.gz")
        start.parent.mkdir(parents=True, exist_ok=True)
        write_image(start, mask.astype(np.uint8), image.geometry)
        stored = {}
        for name, candidate in candidates.items() if len(candidates) > 1 else ():  # both: Accept compares them
            path = self.folder("starts", f"{entry.id}.{name}.nii.gz")
            write_image(path, candidate.astype(np.uint8), image.geometry)
            stored[name] = self.dataset.stored(path)
        self.state["current"] = {"case": entry.id, "started": time.time(), "start": self.dataset.stored(start),
                                 "source": source, "warnings": warnings, "strategy": strategy,
                                 "candidates": stored}  # fmt: skip
        self._save_state()
        return CaseStart(entry.id, self.dataset.path(entry.image), start, source, int(mask.sum()), warnings)

    def save_draft(self, case_id: str, mask: np.ndarray, effort: dict[str, Any] | None = None) -> Path:
        """The corrections so far (a face saves after each one): what "next case" resumes from."""
        entry, image_geometry = self._current_entry(case_id)
        mask = np.asarray(mask, bool)
        if mask.shape != image_geometry.shape:
            raise InputError(f"The segment's grid {mask.shape} is not the image's {image_geometry.shape}.")
        path = self.folder("drafts", f"{entry.id}.nii.gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, mask.astype(np.uint8), image_geometry)
        self.state["current"]["effort"] = _checked_effort(effort or {})
        self._save_state()
        return path

    def _current_entry(self, case_id: str) -> tuple[CaseEntry, Any]:
        entry = self.dataset.case(case_id)
        current = self.state.get("current")
        if not current or current["case"] != case_id:
            working = f"case {current['case']!r} is" if current else "no case is"
            raise InputError(f"Case {case_id!r} is not the one being worked on ({working}); press Next case first.")
        image = read_image(self.dataset.path(entry.image), what=f"image of case {case_id!r}")
        return entry, image.geometry

    # --- accept -----------------------------------------------------------------------------------------------
    def accept(
        self,
        case_id: str,
        mask: np.ndarray,
        effort: dict[str, Any] | None = None,
        *,
        start_job: bool = True,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Save the final mask and the effort ({kind: {"clicks", "seconds"}}), then start a fine-tune every N.

        ``effort`` without any seconds gets the time since "next case" as ``correcting`` seconds. Returns the
        record, and the fine-tuning job when one started (or why not)."""
        self.check_files()
        if case_id in self.accepted_ids():
            raise InputError(f"Case {case_id!r} is already accepted ({self.folder('accepted', case_id)}.nii.gz).")
        entry, geometry = self._current_entry(case_id)
        mask = np.asarray(mask, bool)
        if mask.shape != geometry.shape:
            raise InputError(f"The segment's grid {mask.shape} is not the image's {geometry.shape}.")
        if not mask.any():
            raise InputError(f"The segment of case {case_id!r} is empty: there is nothing to accept. Correct it "
                             "(a positive click on the object) or leave the case for later.")  # fmt: skip
        kinds = _checked_effort(effort or {})
        current = self.state["current"]
        if not any("seconds" in v for v in kinds.values()):
            kinds.setdefault("correcting", {})["seconds"] = round(time.time() - float(current["started"]), 1)
        marks = self.state.setdefault("marks_effort", {}).setdefault(case_id, dict(entry.effort))
        mark_kind = next((k for k in entry.annotations if k in MARK_KINDS), "marks")
        total = {
            "clicks": int(marks.get("clicks", 0) or 0) + sum(int(v.get("clicks", 0)) for v in kinds.values()),
            "seconds": round(
                float(marks.get("seconds", 0) or 0) + sum(float(v.get("seconds", 0)) for v in kinds.values()), 1
            ),
            f"{mark_kind}_clicks": int(marks.get("clicks", 0) or 0),
            f"{mark_kind}_seconds": float(marks.get("seconds", 0) or 0),
        }
        for kind, v in kinds.items():
            for unit in ("clicks", "seconds"):
                if unit in v:
                    total[f"{kind}_{unit}"] = v[unit]
        out = self.folder("accepted", f"{case_id}.nii.gz")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_image(out, mask.astype(np.uint8), geometry)
        start = self.dataset.path(current["start"])
        record = {
            "case": case_id,
            "mask": self.dataset.stored(out),
            "effort": total,
            "start_source": current["source"],
            "model": self.state["model"],
            "time": time.time(),
            "dice_to_start": round(dice(read_mask(start, grid=geometry), mask), 4) if start.is_file() else None,
            "start_dice": {
                name: round(dice(read_mask(self.dataset.path(stored), grid=geometry), mask), 4)
                for name, stored in current.get("candidates", {}).items()
                if self.dataset.path(stored).is_file()
            },
        }
        self.state["accepted"].append(record)
        self.state["current"] = None
        self._save_state()  # loop.json first: the manifest is brought in line from it if we stop here
        self._apply_record(entry, record)
        self._save_state()
        self.dataset.save()
        self.folder("drafts", f"{case_id}.nii.gz").unlink(missing_ok=True)
        result = {"accepted": record, "remaining": len(self.remaining()), "job": None}
        due = len(self.state["accepted"]) - int(self.state["trained_on"]) - self._pending_cases()
        result["finetune_due"] = due >= int(self.state["finetune_every"])
        if start_job and result["finetune_due"]:
            try:
                result["job"] = self.finetune(env=env)
            except InputError as e:  # accepted all the same; the face shows why no job started
                result["job_error"] = str(e)
        return result

    def _pending_cases(self) -> int:
        job = self.poll_job()
        if job and job["state"] == "running":
            return len(job["cases"]) - int(self.state["trained_on"])
        return 0

    # --- fine-tuning ------------------------------------------------------------------------------------------
    def running_jobs(self) -> list[tuple[Path, int]]:
        """Training jobs of this dataset that run now: (job folder, PID), from the dataset's job folders and every
        job folder whose spec names this dataset."""
        found = []
        candidates = set(self.root.glob("jobs/*")) | set(self.folder("jobs").glob("*"))
        job = self.state.get("job")
        if job:
            candidates.add(self.dataset.path(job["output"]))
        for folder in sorted(candidates):
            if not folder.is_dir():
                continue
            pid = JobLock(folder).holder()
            if pid is not None and _job_dataset(folder) in (None, self.root.resolve()):
                found.append((folder, pid))
        return found

    def finetune(self, *, env: dict[str, str] | None = None, epochs: int | None = None) -> dict[str, Any]:
        """Start the fine-tuning job (the last model's weights, every accepted case) in the background; refused
        while another job of this dataset runs (named)."""
        self.check_files()
        busy = self.running_jobs()
        if busy:
            folder, pid = busy[0]
            raise InputError(f"A training job of this dataset is running: {folder} (PID {pid}); wait for it to end "
                             "or cancel it before fine-tuning.")  # fmt: skip
        cases = self.accepted_ids()
        if not cases:
            raise InputError("No accepted case yet: accept a case before fine-tuning.")
        model = self.model_path()
        method = self.state["method"]
        if model is not None:
            info = _model_info(model)
            doc = dict(info.get("hyper_parameters") or {})
            method = method or str(info.get("method", ""))
            if doc.get("method") and doc["method"] != method:
                raise InputError(f"method: the loop fine-tunes {method}, but its model {model} is a {doc['method']} "
                                 "model; set the loop's method to the model's, or start without a model.")  # fmt: skip
        else:
            doc = {}
        if not method:
            method = self._default_method()
        info = registry.training_method(method)
        common = {k: v for k, v in doc.items() if k not in ("dataset", "output", "method", info.section)}
        for k, v in FIRST_SPEC.items():
            common.setdefault(k, v)
        section = {**(doc.get(info.section) or {}), **FINETUNE_SECTION.get(method, {})}
        if info.options is not None:
            known = {f.name for f in info.fields()}
            section = {k: v for k, v in section.items() if k in known}
        else:
            section = {}
        n = len(self.state["models"]) + 1
        output = self.folder("jobs", f"finetune-{n:03d}")
        while output.exists():
            n += 1
            output = self.folder("jobs", f"finetune-{n:03d}")
        common.update(
            dataset=str(self.root.resolve()),
            output=str(output.resolve()),
            epochs=int(epochs or self.state["finetune_epochs"]),
            train_cases=cases,
            validation_cases=[],
            validation_fraction=0.0,
            init_weights=str(model.resolve()) if model is not None else "",
            fail_at_step=0,
        )
        spec_doc = {**common, "method": method}
        if section:
            spec_doc[info.section] = section
        spec_path = output.with_suffix(".json")
        _atomic_json(spec_doc, spec_path)
        try:
            job = TrainingJob(spec_path, env=env if env is not None else _worker_env())
            job.start()
        except InputError:
            spec_path.unlink(missing_ok=True)  # nothing started: no record of a job that never ran
            raise
        self.state["job"] = {"output": self.dataset.stored(output), "spec": self.dataset.stored(spec_path),
                             "cases": cases, "method": method, "started": time.time(), "pid": job.process.pid,
                             "state": "running"}  # fmt: skip
        self._save_state()
        self._job = job  # kept so that the worker is reaped when this process waits on it
        return {"output": str(output), "pid": job.process.pid, "cases": cases, "method": method,
                "init_weights": common["init_weights"]}  # fmt: skip

    def wait_for_job(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until the fine-tuning job ends (scripts and tests; the faces poll :meth:`poll_job`)."""
        job = getattr(self, "_job", None)
        if job is not None:
            job.wait(timeout)
        else:
            t0 = time.monotonic()
            while (status := self.poll_job()) and status["state"] == "running":
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"fine-tuning still running after {timeout} s")
                time.sleep(0.5)
        return self.poll_job()

    def _default_method(self) -> str:
        """The first network-training method whose marks every case has."""
        for m in registry.annotation_methods():
            if all(m.annotation in c.annotations for c in self.dataset.cases):
                for t in m.training_methods:
                    if not t.standalone and not t.reference:
                        return t.name
        raise InputError("method: no training method fits the dataset's marks; set one (loop --method).")

    # --- status -----------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        job = self.poll_job()
        rows = []
        by_case = {r["case"]: r for r in self.state["accepted"]}
        for entry in self.dataset.cases:
            r = by_case.get(entry.id)
            rows.append({"case": entry.id, "modality": entry.modality,
                         "state": "accepted" if r else ("current" if (self.state.get("current") or {}).get("case")
                                                        == entry.id else "to do"),
                         "clicks": r["effort"]["clicks"] if r else None,
                         "seconds": r["effort"]["seconds"] if r else None,
                         "start": r["start_source"] if r else None})  # fmt: skip
        return {
            "dataset": str(self.root),
            **self.settings(),
            "accepted": len(self.state["accepted"]),
            "remaining": len(self.remaining()),
            "current": (self.state.get("current") or {}).get("case"),
            "job": job,
            "cases": rows,
        }


# --- helpers ------------------------------------------------------------------------------------------------


def _evidence_text(evidence: dict[str, float]) -> str:
    n = int(evidence["cases"])
    return f"Dice {evidence['model']:.2f} vs {evidence['marks']:.2f} on the last {n} case{'s' if n > 1 else ''}"


def _checked_effort(effort: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{kind: {"clicks": n, "seconds": s}}, each a finite number ≥ 0 (named when not)."""
    if not isinstance(effort, dict):
        raise InputError("effort: expected {kind: {clicks, seconds}}.")
    out: dict[str, dict[str, float]] = {}
    for kind, v in effort.items():
        if not isinstance(v, dict) or not set(v) <= {"clicks", "seconds"}:
            raise InputError(f"effort {kind!r}: expected {{'clicks': n, 'seconds': s}}, got {v!r}.")
        row: dict[str, float] = {}
        for unit, value in v.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InputError(f"effort {kind!r} {unit}: must be a number ≥ 0, got {value!r}.")
            row[unit] = int(value) if unit == "clicks" else round(float(value), 1)
        out[str(kind)] = row
    return out


def _model_info(path: Path) -> dict[str, Any]:
    weights, info = model_paths(path)
    if not info.is_file() or not weights.is_file():
        raise InputError(f"model: {path} is not a finished job (needs {weights.name} and {MODEL_INFO}).")
    try:
        doc = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"model: cannot read {info} ({e}).") from None
    if not isinstance(doc, dict) or doc.get("method") == "box_patch_classifier":
        raise InputError(f"model: {info.parent} is not a segmentation network.")
    return doc


def _model_modalities(info: dict[str, Any]) -> set[str]:
    """The modalities of the cases a model was trained on (read from its training dataset, when it is there)."""
    data = info.get("data") or {}
    try:
        ds = DatasetFolder.load(data.get("dataset", ""))
    except (InputError, TypeError):
        return set()
    ids = {c.get("id") for c in data.get("train_cases", []) if isinstance(c, dict)}
    return {c.modality for c in ds.cases if c.id in ids and c.modality}


def _job_dataset(folder: Path) -> Path | None:
    """The dataset a job folder trains on (its progress file's start line), None when unknown."""
    try:
        with open(folder / PROGRESS_FILE, encoding="utf-8") as f:
            for line in f:
                e = json.loads(line)
                if e.get("event") == "start":
                    return Path((e.get("spec") or {}).get("dataset", "")).resolve()
    except (OSError, json.JSONDecodeError):
        pass
    return None


def job_status(output: Path) -> dict[str, Any]:
    """A job folder's state from disk: "done" (model.json), "running" (its lock is held), else its last line."""
    if (output / MODEL_INFO).is_file():
        return {"state": "done"}
    pid = JobLock(output).holder()
    if pid is not None:
        return {"state": "running", "pid": pid}
    last: dict[str, Any] = {}
    try:
        with open(output / PROGRESS_FILE, encoding="utf-8") as f:
            for line in f:
                try:
                    last = json.loads(line)
                except json.JSONDecodeError:
                    continue
    except OSError:
        return {"state": "running"}  # not started writing yet (the worker is loading)
    kind = last.get("event")
    if kind in ("failed", "cancelled"):
        return {"state": kind, "error": str(last.get("error", ""))}
    return {"state": "running"}


def mark_disagreement(dataset: DatasetFolder, entry: CaseEntry, image: Image, mask: np.ndarray) -> dict[str, Any]:
    """How much a mask breaks its case's weak marks: the share of its voxels outside the marks' box, and the
    marks (extreme points, surface points) off its boundary (mean of min(1, distance / 10 mm)). ``score`` is the
    mean of the parts there are; an empty mask scores 1."""
    geometry = image.geometry
    mask = np.asarray(mask, bool)
    row: dict[str, Any] = {"voxels": int(mask.sum())}
    if not mask.any():
        return {**row, "score": 1.0, "outside_box": None, "points_off_mm": None}
    parts = []
    points = None
    if any(k in entry.annotations for k in MARK_KINDS):
        lo, hi, points = object_bounds(dataset, entry, image)
        inside = np.zeros(geometry.shape, bool)
        inside[tuple(slice(max(int(a) - 1, 0), int(b) + 2) for a, b in zip(lo, hi, strict=True))] = True
        outside = float((mask & ~inside).sum() / mask.sum())
        row["outside_box"] = round(outside, 4)
        parts.append(outside)
        if points is None and entry.annotations.get("surface_points"):
            # why here: the markups reader loads the Slicer core
            from ..scene.markups_io import read_points

            points, _ = read_points(dataset.path(entry.annotations["surface_points"]), min_count=1, geometry=geometry)
    if points is not None and len(points):
        d = _distance_to_boundary(mask, geometry.ras_to_index(points), geometry.array_spacing)
        row["points_off_mm"] = round(float(np.mean(d)), 2)
        parts.append(float(np.mean(np.minimum(d / POINT_SCALE_MM, 1.0))))
    row["score"] = round(float(np.mean(parts)), 4) if parts else 0.0
    return row


def _distance_to_boundary(mask: np.ndarray, index: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each voxel index (N, 3) to the mask's boundary, on a crop around both."""
    idx = np.rint(np.asarray(index)).astype(int)
    coords = np.argwhere(mask)
    lo = np.maximum(np.minimum(coords.min(0), idx.min(0)) - 2, 0)
    hi = np.minimum(np.maximum(coords.max(0), idx.max(0)) + 3, np.asarray(mask.shape))
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    boundary = sub & ~ndimage.binary_erosion(sub, border_value=0)
    dist = ndimage.distance_transform_edt(~boundary, sampling=spacing)
    local = np.clip(idx - lo, 0, np.asarray(sub.shape) - 1)
    return dist[tuple(local.T)]


def _worker_env() -> dict[str, str]:
    """A background fine-tune shares the CPU with the user: a thread or two, not every core."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.setdefault("WEAKANNOTATE_THREADS", "2")
    return env
