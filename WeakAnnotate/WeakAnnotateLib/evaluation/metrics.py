"""Overlap and surface-distance metrics between a reference and a predicted mask, in millimetres.

Dice and IoU are voxel counts. HD95 and the average surface distance (symmetric) come from MONAI's
surface-distance code with the image's spacing, cropped first to the two masks' joint bounding box plus
a margin (the distances do not change; the distance transforms get much cheaper).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.geometry import Geometry
from ..files.image_io import read_image, select_label


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    ref, pred = np.asarray(reference, bool), np.asarray(prediction, bool)
    denominator = int(ref.sum()) + int(pred.sum())
    return 2.0 * int(np.logical_and(ref, pred).sum()) / denominator if denominator else 1.0


def iou(reference: np.ndarray, prediction: np.ndarray) -> float:
    ref, pred = np.asarray(reference, bool), np.asarray(prediction, bool)
    union = int(np.logical_or(ref, pred).sum())
    return int(np.logical_and(ref, pred).sum()) / union if union else 1.0


def _crop_to_union(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coords = np.argwhere(ref | pred)
    lo = np.maximum(coords.min(axis=0) - 2, 0)
    hi = coords.max(axis=0) + 3
    window = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return ref[window], pred[window]


def surface_distances_mm(reference: np.ndarray, prediction: np.ndarray, spacing_kji: np.ndarray) -> tuple[float, float]:
    """(HD95, symmetric average surface distance) in mm via MONAI; (inf, inf) when the prediction is empty."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    ref, pred = np.asarray(reference, bool), np.asarray(prediction, bool)
    if not pred.any():
        return math.inf, math.inf
    ref, pred = _crop_to_union(ref, pred)
    y = ref[None, None].astype(np.float32)
    y_pred = pred[None, None].astype(np.float32)
    spacing = [float(s) for s in spacing_kji]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=spacing)
    return float(hd95.item()), float(asd.item())


def evaluate_masks(reference: np.ndarray, prediction: np.ndarray, geometry: Geometry) -> dict[str, float | int | None]:
    """Dice, IoU, HD95 (mm), symmetric ASD (mm) and voxel counts of ``prediction`` against ``reference``.

    Distances are ``None`` when the prediction is empty (they are undefined, not zero).
    """
    ref, pred = np.asarray(reference) != 0, np.asarray(prediction) != 0
    if ref.shape != pred.shape or ref.shape != geometry.shape:
        raise InputError(f"Reference {ref.shape} and prediction {pred.shape} must share the grid {geometry.shape}.")
    if not ref.any():
        raise InputError("The reference mask is empty: there is nothing to compare against.")
    hd95, asd = surface_distances_mm(ref, pred, geometry.array_spacing)
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    return {
        "dice": dice(ref, pred),
        "iou": iou(ref, pred),
        "hd95_mm": None if math.isinf(hd95) else hd95,
        "asd_mm": None if math.isinf(asd) else asd,
        "reference_voxels": int(ref.sum()),
        "prediction_voxels": int(pred.sum()),
        "reference_ml": int(ref.sum()) * voxel_ml,
        "prediction_ml": int(pred.sum()) * voxel_ml,
    }


def evaluate_files(
    reference: str | Path,
    prediction: str | Path,
    *,
    label: int | None = None,
    prediction_label: int | None = None,
) -> dict[str, float | int | None]:
    """``evaluate_masks`` on two label-map files, which must share one grid."""
    ref = read_image(reference, what="reference")
    pred = read_image(prediction, what="prediction")
    if not ref.geometry.same_grid(pred.geometry):
        raise InputError(
            f"Reference ({ref.geometry.describe()}) and prediction ({pred.geometry.describe()}) are on different "
            "grids; resample the prediction onto the reference's grid first."
        )
    ref_mask = select_label(ref.array, label, what="reference", path=reference)
    pred_mask = select_label(pred.array, prediction_label, what="prediction", path=prediction)
    result = evaluate_masks(ref_mask, pred_mask, ref.geometry)
    if label is not None:
        result = {"label": label, **result}
    return result
