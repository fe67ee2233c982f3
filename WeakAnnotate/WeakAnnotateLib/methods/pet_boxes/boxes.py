"""Coarse lesion boxes simulated from a reference mask, as Afshari et al. trained on (Dice 28 % ± 11 % vs the GTV).

Why a simulator: the paper's weak labels are "coarse bounding boxes around all lesions", described only by
their Dice against the delineation (28 % ± 11 %). A tight box around a compact lesion already has a Dice of
~0.5–0.7, so the paper's boxes were loose; we reproduce that by growing every lesion's tight box by one
margin in mm (``looseness``), chosen on the 30 IBSI sarcoma PET scans so that the mean box Dice is 0.28
(:func:`calibrate_margin`; the number is measured, printed by ``python -m WeakAnnotateLib.methods.pet_boxes.boxes`` and
recorded in ``docs/pet_boxes.md``).

* One box per connected lesion (``scipy.ndimage.label``, 26-connectivity: voxels touching at a corner are one
  lesion), axis-aligned on the voxel grid: :func:`~.simulate.tight_box` of the component, grown by the margin.
* Boxes of different lesions may overlap once grown. They are kept as separate boxes, but their voxel masks
  are merged by union: :func:`box_regions` labels the connected components of the union, and a region made
  of several overlapping boxes counts as one box for the loss's per-box switch (:mod:`.pet_box_losses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ...core.box import Box
from ...core.geometry import Geometry
from ...evaluation.metrics import dice
from ...evaluation.simulate import box_mask, check_mask, index_box
from ...files.cases import load_cases
from ...files.image_io import read_image, select_label

PAPER_BOX_DICE = (0.28, 0.11)  # mean ± SD of the paper's boxes against the delineations
# Calibrated on the 30 IBSI STS PET scans (see __main__ and docs/pet_boxes.md): mean box Dice 0.28.
DEFAULT_MARGIN_MM = 13.75


def lesion_boxes(mask: np.ndarray, geometry: Geometry, *, margin_mm: float = 0.0, min_voxels: int = 1) -> list[Box]:
    """One axis-aligned box per connected lesion of ``mask``, grown by ``margin_mm`` on every side.

    Components smaller than ``min_voxels`` (contour speckle) get no box of their own.
    """
    mask = check_mask(mask, geometry)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        if min_voxels > 1 and int((labels[sl] == k).sum()) < min_voxels:
            continue
        lo = np.array([s.start for s in sl])
        hi = np.array([s.stop - 1 for s in sl])
        boxes.append(index_box(lo, hi, geometry, margin_mm))
    return boxes


def boxes_mask(boxes: Sequence[Box], geometry: Geometry) -> np.ndarray:
    """Union of the boxes' voxel masks (voxel centres inside a box)."""
    out = np.zeros(geometry.shape, bool)
    for b in boxes:
        out |= box_mask(b, geometry)
    return out


def box_regions(boxes: Sequence[Box], geometry: Geometry) -> np.ndarray:
    """int16 labels 1..K of the connected regions of the boxes' union (overlapping boxes → one region), 0 outside."""
    union = boxes_mask(boxes, geometry)
    labels, _ = ndimage.label(union, structure=np.ones((3, 3, 3), bool))
    return labels.astype(np.int16)


def box_dice(mask: np.ndarray, geometry: Geometry, margin_mm: float) -> float:
    """Dice of the union of the lesions' boxes (grown by ``margin_mm``) against the reference mask."""
    ref = check_mask(mask, geometry)
    return dice(ref, boxes_mask(lesion_boxes(ref, geometry, margin_mm=margin_mm), geometry))


def calibrate_margin(
    masks: Sequence[tuple[np.ndarray, Geometry]],
    target: float = PAPER_BOX_DICE[0],
    *,
    lo_mm: float = 0.0,
    hi_mm: float = 60.0,
    tol_mm: float = 0.25,
) -> tuple[float, list[float]]:
    """The margin (mm, to ``tol_mm``) whose mean box Dice over ``masks`` is ``target``, and the per-scan Dice.

    Bisection: the mean Dice falls monotonically as the margin grows (boxes only get larger).
    """

    def mean_dice(m: float) -> tuple[float, list[float]]:
        d = [box_dice(mask, g, m) for mask, g in masks]
        return float(np.mean(d)), d

    while hi_mm - lo_mm > tol_mm:
        mid = 0.5 * (lo_mm + hi_mm)
        if mean_dice(mid)[0] > target:
            lo_mm = mid
        else:
            hi_mm = mid
    margin = round(0.5 * (lo_mm + hi_mm) / tol_mm) * tol_mm
    return margin, mean_dice(margin)[1]


def _main() -> None:  # pragma: no cover - measurement script
    """Calibrate the margin on the 30 IBSI STS PET scans and print the box Dice (tight and loose)."""
    import time

    t0 = time.perf_counter()
    masks = []
    lesions = []
    for case in load_cases():
        if not (case.id.startswith("ibsi_STS_") and case.id.endswith("_PET")):
            continue
        ref = read_image(case.reference_mask("calibrating the box margin"), what=case.id)
        m = select_label(ref.array, None)
        masks.append((m, ref.geometry))
        lesions.append(len(lesion_boxes(m, ref.geometry)))
    tight = [box_dice(m, g, 0.0) for m, g in masks]
    margin, loose = calibrate_margin(masks)
    print(f"{len(masks)} PET scans, lesions per scan {np.mean(lesions):.2f} (min {min(lesions)}, max {max(lesions)})")
    print(f"tight boxes:          Dice {np.mean(tight):.3f} ± {np.std(tight):.3f}")
    print(
        f"margin {margin:.2f} mm: Dice {np.mean(loose):.3f} ± {np.std(loose):.3f} "
        f"(paper {PAPER_BOX_DICE[0]:.2f} ± {PAPER_BOX_DICE[1]:.2f}); {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":  # pragma: no cover
    _main()
