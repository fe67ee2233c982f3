"""nnU-Net v2 raw datasets from a dataset folder, and nnU-Net's predictions back into it.

A raw dataset is ``DatasetNNN_Name/`` with ``imagesTr/<id>_0000.nii.gz``, ``labelsTr/<id>.nii.gz`` and
``dataset.json`` (``channel_names``, ``labels``, ``numTraining``, ``file_ending``); nnU-Net's own
``verify_dataset_integrity`` is the check it must pass. nnunetv2 is not needed to write one.

- Labels: "final" is each case's reference mask (``CaseEntry.reference``, restricted to ``reference_label``),
  "pseudo" its pseudo-label; both become a binary label map (0 background, 1 the object) written on the image's
  own grid from the same geometry as the image, so images and labels are on identical grids. A label file on
  another grid is refused (it would have to be resampled first, which is a decision for the user).
  Cases without that label go to ``imagesTs`` (nnU-Net predicts them after training).
- Channel name: the cases' modality ("CT" selects nnU-Net's CT normalisation, anything else z-scoring);
  "CT-DICOM" is "CT". Cases of several modalities are refused: nnU-Net trains one channel layout.
- Label name: the structure's name from the data catalogue (``cases.json``) when the case is in it, else
  ``label_name``, else "object".
- Case ids: an nnU-Net identifier here is letters, digits, "_" and "-"; any other run of characters becomes
  "_" (``STS 001/PET`` → ``STS_001_PET``), and the renaming is reported. ``weakannotate_cases.json`` beside
  ``dataset.json`` maps identifiers back to case ids (nnU-Net ignores it); :func:`import_predictions` uses it.
- The folder appears whole or not at all (built beside and moved in); an existing ``DatasetNNN_*`` with the same
  id is refused unless ``overwrite`` (and then only the folder of the same name is replaced).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_folder
from ..core.errors import InputError
from ..files.cases import load_cases
from ..files.image_io import read_image, read_mask, write_image
from .dataset import CaseEntry, DatasetFolder

FILE_ENDING = ".nii.gz"
MAPPING = "weakannotate_cases.json"
LABEL_KINDS = ("final", "pseudo")
_INVALID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class NnunetExport:
    """What was written: the folder, identifier → case id for training and test cases, and the renamings."""

    folder: Path
    training: dict[str, str]
    test: dict[str, str]
    renamed: dict[str, str]
    dataset_json: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def nnunet_identifier(case_id: str) -> str:
    """``case_id`` with every run of characters other than letters, digits, "_" and "-" turned into "_"."""
    return _INVALID.sub("_", case_id).strip("_") or "case"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"--id {dataset_id}: an nnU-Net dataset id is a number from 1 to 999.")
    clean = nnunet_identifier(name)
    return f"Dataset{int(dataset_id):03d}_{clean}"


def channel_name(modality: str) -> str:
    """nnU-Net's channel name for a modality ("CT-DICOM" → "CT"; "CT" selects its CT normalisation)."""
    return modality.strip().split("-")[0].upper() if modality.strip() else ""


def _label_file(dataset: DatasetFolder, entry: CaseEntry, labels: str) -> Path | None:
    stored = entry.reference if labels == "final" else entry.pseudo_label
    path = dataset.path(stored)
    return path if path is not None and path.is_file() else None


def _structure_names(entries: list[CaseEntry], data_dir: str | Path | None) -> set[str]:
    try:
        catalogue = {c.id: c for c in load_cases(data_dir)}
    except InputError:
        return set()
    names = set()
    for e in entries:
        case = catalogue.get(e.id)
        if case is None:
            continue
        if e.reference_label is not None and e.reference_label in case.labels:
            names.add(case.labels[e.reference_label])
        elif e.reference_label is None and len(case.labels) == 1:
            names.update(case.labels.values())
    return names


def export_nnunet(
    dataset: DatasetFolder,
    output: str | Path,
    dataset_id: int,
    *,
    labels: str = "final",
    name: str | None = None,
    label_name: str | None = None,
    channel: str | None = None,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
) -> NnunetExport:
    """Write ``output/DatasetNNN_Name`` from ``dataset`` (see the module docstring)."""
    if labels not in LABEL_KINDS:
        raise InputError(f"--labels {labels}: use 'final' (reference masks) or 'pseudo' (pseudo-labels).")
    output = Path(output)
    folder_name = dataset_folder_name(dataset_id, name or dataset.name)
    target = output / folder_name
    notes: list[str] = []
    if output.exists() and not output.is_dir():
        raise InputError(f"Output {output} is a file; give the folder that holds nnU-Net raw datasets (nnUNet_raw).")
    same_id = sorted(p for p in output.glob(f"Dataset{int(dataset_id):03d}_*")) if output.is_dir() else []
    if same_id and not overwrite:
        raise InputError(
            f"{same_id[0]} already exists (dataset id {int(dataset_id):03d}); nnU-Net needs one folder per id. "
            "Choose another --id, or pass --overwrite to replace it."
        )
    if any(p != target for p in same_id):
        others = ", ".join(p.name for p in same_id if p != target)
        raise InputError(f"Dataset id {int(dataset_id):03d} is taken by {others}; choose another --id.")
    if not dataset.cases:
        raise InputError(f"Dataset {dataset.root} has no cases.")

    labelled = [(e, f) for e in dataset.cases if (f := _label_file(dataset, e, labels)) is not None]
    unlabelled = [e for e in dataset.cases if _label_file(dataset, e, labels) is None]
    if not labelled:
        what = "final (reference) masks" if labels == "final" else "pseudo-labels"
        hint = (
            "add reference masks to the cases, or export --labels pseudo"
            if labels == "final"
            else "run 'weakannotate dataset pseudo-label' first"
        )
        raise InputError(f"No case of {dataset.root} has {what}: nothing to train nnU-Net on; {hint}.")
    if unlabelled:
        notes.append(
            f"{len(unlabelled)} case(s) without {labels} labels go to imagesTs for prediction: "
            f"{', '.join(e.id for e in unlabelled)}."
        )

    identifiers: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for e in dataset.cases:
        ident = nnunet_identifier(e.id)
        if ident != e.id:
            renamed[e.id] = ident
        if ident in identifiers:
            raise InputError(
                f"Case ids {identifiers[ident]!r} and {e.id!r} both become the nnU-Net identifier {ident!r}; "
                "rename one of them in the dataset."
            )
        identifiers[ident] = e.id
    for old, new in renamed.items():
        notes.append(f"Case id {old!r} is not an nnU-Net identifier (letters, digits, '_', '-'): written as {new!r}.")

    if channel:
        channel_names = {channel}
    else:
        channel_names = {channel_name(e.modality) for e in dataset.cases}
        if "" in channel_names:
            missing = ", ".join(e.id for e in dataset.cases if not channel_name(e.modality))
            raise InputError(f"Cases without a modality ({missing}): give the channel name with --channel-name.")
        if len(channel_names) > 1:
            raise InputError(
                f"The cases are of several modalities ({', '.join(sorted(channel_names))}); nnU-Net trains one "
                "channel layout: export each modality as its own dataset."
            )
    names = {label_name} if label_name else _structure_names([e for e, _ in labelled], data_dir)
    if len(names) > 1:
        raise InputError(
            f"The cases' structures differ ({', '.join(sorted(names))}); one nnU-Net label needs one name: "
            "give it with --label-name."
        )
    structure = next(iter(names)) if names else "object"
    if not names:
        notes.append("No structure name found for the label (case not in the catalogue): it is called 'object'.")

    dataset_json: dict[str, Any] = {
        "channel_names": {"0": next(iter(channel_names))},
        "labels": {"background": 0, structure: 1},
        "numTraining": len(labelled),
        "file_ending": FILE_ENDING,
        "name": folder_name.split("_", 1)[1],
        "description": f"Exported by weakannotate from {dataset.root} ({labels} labels).",
    }
    by_id = {v: k for k, v in identifiers.items()}
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        training, test = _write(dataset, target, labelled, unlabelled, by_id, labels, dataset_json, overwrite)
    except BaseException:
        if created and not any(output.iterdir()):
            output.rmdir()  # nothing written: not even the folder
        raise
    return NnunetExport(target, training, test, renamed, dataset_json, notes)


def _write(
    dataset: DatasetFolder,
    target: Path,
    labelled: list[tuple[CaseEntry, Path]],
    unlabelled: list[CaseEntry],
    by_id: dict[str, str],
    labels: str,
    dataset_json: dict[str, Any],
    overwrite: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    with atomic_folder(target, replace=overwrite) as tmp:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs",) if unlabelled else ()):
            (tmp / sub).mkdir()
        for entry, label_file in labelled:
            ident = by_id[entry.id]
            image = read_image(dataset.path(entry.image), what=f"image of case {entry.id!r}")
            try:
                mask = read_mask(
                    label_file,
                    label=entry.reference_label if labels == "final" else None,
                    grid=image.geometry,
                    what=f"{labels} label of case {entry.id!r}",
                )
            except InputError as e:
                raise InputError(f"Case {entry.id!r}: {e}") from None
            write_image(tmp / "imagesTr" / f"{ident}_0000{FILE_ENDING}", image.array, image.geometry)
            write_image(tmp / "labelsTr" / f"{ident}{FILE_ENDING}", mask.astype(np.uint8), image.geometry)
        for entry in unlabelled:
            image = read_image(dataset.path(entry.image), what=f"image of case {entry.id!r}")
            write_image(tmp / "imagesTs" / f"{by_id[entry.id]}_0000{FILE_ENDING}", image.array, image.geometry)
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=1), encoding="utf-8")
        training = {by_id[e.id]: e.id for e, _ in labelled}
        test = {by_id[e.id]: e.id for e in unlabelled}
        mapping = {"dataset": str(dataset.root.resolve()), "labels": labels, "training": training, "test": test}
        (tmp / MAPPING).write_text(json.dumps(mapping, indent=1), encoding="utf-8")
    return training, test


def import_predictions(
    dataset: DatasetFolder, predictions: str | Path, *, export: str | Path | None = None, overwrite: bool = False
) -> list[dict[str, Any]]:
    """nnU-Net's predictions (``<identifier>.nii.gz``) recorded as the cases' predictions (``predictions/<id>.nii.gz``,
    ``CaseEntry.prediction``): the starting segment of each case. Identifiers map back through the export's
    ``weakannotate_cases.json`` when ``export`` is given, else they are the case ids. Each prediction must be on
    its case's image grid (nnU-Net writes them so). Checked for every case before anything is written."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise InputError(f"{predictions} is not a folder of nnU-Net predictions.")
    files = sorted(predictions.glob(f"*{FILE_ENDING}"))
    if not files:
        raise InputError(f"{predictions} holds no {FILE_ENDING} prediction.")
    mapping: dict[str, str] = {c.id: c.id for c in dataset.cases}
    if export is not None:
        path = Path(export) / MAPPING
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            mapping = {**doc["training"], **doc["test"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path} is not a weakannotate nnU-Net export's case map ({e}).") from None
    planned = []
    for f in files:
        ident = f.name[: -len(FILE_ENDING)]
        if ident not in mapping:
            raise InputError(f"Prediction {f.name}: no case {ident!r} in {dataset.root} (or the export's case map).")
        entry = dataset.case(mapping[ident])
        if entry.prediction and not overwrite:
            raise InputError(f"Case {entry.id!r} already has a prediction; pass --overwrite to replace it.")
        image = read_image(dataset.path(entry.image), what=f"image of case {entry.id!r}")
        pred = read_image(f, what="prediction")
        if not pred.geometry.same_grid(image.geometry):
            raise InputError(
                f"Prediction {f.name} ({pred.geometry.describe()}) is not on case {entry.id!r}'s image grid "
                f"({image.geometry.describe()})."
            )
        planned.append((entry, pred))
    rows = []
    (dataset.root / "predictions").mkdir(exist_ok=True)
    for entry, pred in planned:
        out = dataset.root / "predictions" / f"{nnunet_identifier(entry.id)}{FILE_ENDING}"
        write_image(out, pred.array.astype(np.uint8), pred.geometry)
        entry.prediction = dataset.stored(out)
        rows.append({"case": entry.id, "prediction": str(out), "voxels": int((pred.array != 0).sum())})
    dataset.save()
    return rows
