"""The training panel's dataset: catalogue cases with the annotations the training methods read, simulated from
the reference masks (what a user would click, without a user).

``dataset.create_from_cases`` gives six extreme points and the reference mask per case; this adds surface
points (Weak-Net's annotation, :data:`SURFACE_POINTS` per case by ``simulate.surface_points``). The box methods
take their boxes from the reference themselves (pet_box: one box per lesion grown by its ``box_margin_mm``;
box_prior with ``box_source`` auto: the reference's tight slice boxes; box_patch_classifier trains on the
reference), so no box file is written: one would override those fields of the page.

Why here and not in ``WeakAnnotateLib.data.dataset``: the logic layer is being reorganised by others; adding
an annotation kind to an existing dataset (:func:`add_surface_points`) belongs there next to
``create_from_cases`` and should move down.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from WeakAnnotateLib.data.dataset import MANIFEST, DatasetFolder, create_from_cases
from WeakAnnotateLib.evaluation.simulate import surface_points
from WeakAnnotateLib.files.image_io import read_image, select_label
from WeakAnnotateLib.scene.markups_io import write_points

SURFACE_POINTS = 50  # per case: within the 25–250 the surface-template paper asks of a user


def add_surface_points(dataset: DatasetFolder, *, points: int = SURFACE_POINTS, seed: int = 0) -> list[str]:
    """Simulated surface points (``surface_points`` kind) for every case with a reference mask and none yet;
    the manifest is saved when something was added. Returns the ids of the cases that got them."""
    added = []
    for n, entry in enumerate(dataset.cases):
        if entry.annotations.get("surface_points") or not entry.reference:
            continue
        path = dataset.path(entry.reference)
        ref = read_image(path, what=f"reference of case {entry.id!r}")
        mask = select_label(ref.array, entry.reference_label, what="reference", path=path) != 0
        ras = surface_points(mask, ref.geometry, points, seed=seed + n)
        out = write_points(
            dataset.root / "annotations" / f"{entry.id}.surface_points.mrk.json",
            ras,
            [f"s{k + 1}" for k in range(len(ras))],
            "surface",
        )
        entry.annotations["surface_points"] = dataset.stored(out)
        added.append(entry.id)
    if added:
        dataset.save()
    return added


def training_dataset(folder: Path, case_ids: Sequence[str], data_dir: str | Path | None) -> Path:
    """``folder`` as a dataset of ``case_ids`` with extreme points, surface points and reference masks: made
    once, then reused (an older one without surface points gets them)."""
    if not (folder / MANIFEST).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)  # the dataset is built beside its folder, then moved in
        create_from_cases(folder, list(case_ids), data_dir=data_dir)
    add_surface_points(DatasetFolder.load(folder))
    return folder
