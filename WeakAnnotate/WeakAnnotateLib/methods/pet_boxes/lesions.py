"""PET lesions from a predicted mask: one record per connected lesion (volume, SUVmax, SUVmean, centre).

After a PET model (``pet_box_*``) is applied, a radiologist reads lesions, not a mask: the mask is split into
connected components (26-connectivity, as the box simulator of :mod:`.pet_boxes`: voxels touching at a corner
are one lesion), sorted by volume (largest first), each with

* volume in ml = voxel count × the geometry's voxel volume (|det| of the IJK→RAS 3×3, mm³) / 1000;
* SUVmax, SUVmean of the image inside the component (the image's values as they are: SUV only if the scan
  is in SUV, hence :func:`suv_warnings`);
* centre = RAS of the component's voxel centroid.

Warnings are returned, never raised (the lesions are still computed; the user decides):

* :func:`suv_warnings` — the scan does not look like SUV. Thresholds and why:
  ``max < 1``: any PET scan in SUV has voxels above 1 (the average uptake of the body is 1 by definition of
  SUV, and brain, bladder and lesions reach 5–30), so a maximum below 1 means another unit (e.g. a normalised
  or z-scored image) or an empty scan; ``max > 100``: SUVs above ~100 are not seen in practice (a full bladder
  rarely exceeds 50–80), so such values are activity concentrations (Bq/ml, thousands) or counts;
  ``min < −1``: SUV is ≥ 0 up to small reconstruction undershoot (OSEM noise gives values just below 0), so
  values below −1 mean CT (air is −1000 HU) or a z-scored image.
* :func:`modality_warnings` — a model trained on PET (``pet_box_*`` method, or PET training cases) applied to
  a scan whose modality is known and is not PET (from the case catalogue, a node attribute or the user), and
  the reverse.

:func:`load_lesion_segments` is the node-level face: every lesion becomes a segment named
``"Lesion 1 (12.3 ml, SUVmax 8.1)"``, all in one :func:`~.mrml_adapter.scene_change` (an error removes what was
added: nothing partial is left).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ...core.colors import segment_color
from ...core.errors import InputError
from ...core.geometry import Geometry
from ...files.cases import find_case
from ...scene import mrml_adapter
from ...scene.mrml_adapter import add_segmentation_node, image_of_node, scene_change, segment_ids

SUV_MAX_LOW = 1.0  # a PET scan in SUV has a maximum above this (mean body uptake is 1 by definition)
SUV_MAX_HIGH = 100.0  # no tissue reaches this SUV in practice; Bq/ml and counts do
SUV_MIN_LOW = -1.0  # SUV is ≥ 0 up to reconstruction undershoot; CT air is −1000 HU
PET_MODALITIES = ("PT", "PET")  # DICOM calls it PT
MODALITY_ATTRIBUTES = ("WeakAnnotate.modality", "DICOM.Modality")  # node attributes read for the modality


@dataclass(frozen=True)
class Lesion:
    index: int  # 1 = largest
    voxels: int
    volume_ml: float
    suv_max: float
    suv_mean: float
    centre_ras: tuple[float, float, float]

    @property
    def name(self) -> str:
        return f"Lesion {self.index} ({self.volume_ml:.1f} ml, SUVmax {self.suv_max:.1f})"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "voxels": self.voxels,
            "volume_ml": self.volume_ml,
            "suv_max": self.suv_max,
            "suv_mean": self.suv_mean,
            "centre_ras": list(self.centre_ras),
        }


def voxel_volume_ml(geometry: Geometry) -> float:
    return float(abs(np.linalg.det(geometry.ijk_to_ras[:3, :3]))) / 1000.0


def label_lesions(mask: np.ndarray, image: np.ndarray, geometry: Geometry) -> tuple[list[Lesion], np.ndarray]:
    """The lesions (largest first) and an int32 label array where label n is ``Lesion n``."""
    mask = np.asarray(mask).astype(bool)
    image = np.asarray(image)
    if mask.shape != geometry.shape or image.shape != geometry.shape:
        raise InputError(f"Mask {mask.shape} and image {image.shape} must both be on the grid {geometry.shape}.")
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return [], np.zeros(mask.shape, np.int32)
    index = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    values = image.astype(np.float64)
    maxima = np.asarray(ndimage.maximum(values, labels, index), float)
    means = np.asarray(ndimage.mean(values, labels, index), float)
    centroids = np.asarray(ndimage.center_of_mass(mask, labels, index), float).reshape(n, 3)
    centres = geometry.index_to_ras(centroids)
    order = sorted(range(n), key=lambda c: (-counts[c], c))  # largest first; ties by scan order
    relabel = np.zeros(n + 1, np.int32)
    ml = voxel_volume_ml(geometry)
    lesions = []
    for rank, c in enumerate(order, start=1):
        relabel[c + 1] = rank
        lesions.append(
            Lesion(
                index=rank,
                voxels=int(counts[c]),
                volume_ml=float(counts[c]) * ml,
                suv_max=float(maxima[c]),
                suv_mean=float(means[c]),
                centre_ras=tuple(float(v) for v in centres[c]),
            )
        )
    return lesions, relabel[labels]


def suv_warnings(image: np.ndarray) -> list[str]:
    """Why the image may not be in SUV (empty when it looks like SUV); see the module docstring."""
    a = np.asarray(image)
    if a.size == 0:
        return ["The image is empty."]
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    out = []
    if hi < SUV_MAX_LOW:
        out.append(
            f"The image's maximum is {hi:.3g} (< {SUV_MAX_LOW:g}): it does not look like SUV; SUVmax/SUVmean "
            "are in the image's own units."
        )
    if hi > SUV_MAX_HIGH:
        out.append(
            f"The image's maximum is {hi:.4g} (> {SUV_MAX_HIGH:g}): it does not look like SUV (activity in "
            "Bq/ml or counts?); SUVmax/SUVmean are in the image's own units."
        )
    if lo < SUV_MIN_LOW:
        out.append(
            f"The image has values down to {lo:.4g} (< {SUV_MIN_LOW:g}): it does not look like a PET scan in "
            "SUV (a CT?); SUVmax/SUVmean are in the image's own units."
        )
    return out


def is_pet(modality: str | None) -> bool:
    return bool(modality) and str(modality).strip().upper() in PET_MODALITIES


def model_modalities(info: dict[str, Any]) -> list[str]:
    """The modalities of a model's training cases: ``info["modalities"]`` when recorded, else looked up in its
    dataset's ``dataset.json`` (empty when unknown: the dataset may have moved)."""
    if info.get("modalities"):
        return sorted({str(m) for m in info["modalities"]})
    data = info.get("data") or {}
    ids = {c.get("id") for c in data.get("train_cases", []) if isinstance(c, dict)}
    try:
        doc = json.loads((Path(data["dataset"]) / "dataset.json").read_text(encoding="utf-8"))
        return sorted({str(c["modality"]) for c in doc.get("cases", []) if c.get("id") in ids and c.get("modality")})
    except (KeyError, OSError, TypeError, AttributeError, json.JSONDecodeError):
        return []


def is_pet_model(info: dict[str, Any]) -> bool:
    """A model trained for PET lesions: a ``pet_box_*`` method, or PET training cases."""
    method = str(info.get("method") or (info.get("network") or {}).get("method") or "")
    return method.startswith("pet_box") or any(is_pet(m) for m in model_modalities(info))


def modality_warnings(info: dict[str, Any], modality: str | None) -> list[str]:
    """A PET model on a scan known not to be PET (or a non-PET model on PET); nothing when the modality is unknown."""
    if not modality:
        return []
    name = str(info.get("name") or info.get("method") or "the model")
    if is_pet_model(info) and not is_pet(modality):
        return [f"Model {name!r} was trained on PET and is applied to a {modality} scan: the lesions are unreliable."]
    trained = model_modalities(info)
    if is_pet(modality) and trained and not any(is_pet(m) for m in trained):
        return [f"Model {name!r} was trained on {', '.join(trained)} and is applied to a PET scan."]
    return []


def case_modality(case_id: str, data_dir: str | Path | None = None) -> str | None:
    """The modality of a catalogued case, or None when the case (or catalogue) is not there."""

    try:
        return find_case(case_id, data_dir).modality
    except InputError:
        return None


def node_modality(volume_node: Any) -> str | None:
    """The modality recorded on a volume node (:data:`MODALITY_ATTRIBUTES`), else None."""
    for attribute in MODALITY_ATTRIBUTES:
        value = volume_node.GetAttribute(attribute)
        if value:
            return str(value)
    return None


def lesion_report(
    mask: np.ndarray,
    image: np.ndarray,
    geometry: Geometry,
    model_info: dict[str, Any] | None = None,
    modality: str | None = None,
) -> tuple[list[Lesion], np.ndarray, list[str]]:
    """(lesions, label array, warnings): :func:`label_lesions` plus the SUV and modality warnings."""
    lesions, labels = label_lesions(mask, image, geometry)
    warnings = suv_warnings(image) + modality_warnings(model_info or {}, modality)
    return lesions, labels, warnings


def load_lesion_segments(
    rt: Any,
    segmentation_node: Any,
    lesions: list[Lesion],
    labels: np.ndarray,
    geometry: Geometry,
) -> list[str]:
    """One segment per lesion (``Lesion.name``), in one scene change; returns the segment IDs in lesion order.

    Colours: distinct palette colours by lesion index (:func:`~.colors.segment_color` of an unnamed segment), so
    neighbouring lesions can be told apart. On an error every segment added here is removed again.
    """

    segmentation = segmentation_node.GetSegmentation()
    before = set(segment_ids(segmentation_node))
    ids: list[str] = []
    with scene_change(rt.scene):
        try:
            for lesion in lesions:
                ids.append(
                    mrml_adapter.set_segment_mask(
                        rt,
                        segmentation_node,
                        labels == lesion.index,
                        geometry,
                        lesion.name,
                        segment_color("", lesion.index),
                    )
                )
        except BaseException:
            for segment_id in segment_ids(segmentation_node):  # also a segment left empty by a failed write
                if segment_id not in before:
                    segmentation.RemoveSegment(segment_id)
            raise
    return ids


def lesions_of_nodes(
    rt: Any,
    volume_node: Any,
    mask: np.ndarray,
    geometry: Geometry,
    *,
    model_info: dict[str, Any] | None = None,
    modality: str | None = None,
    segmentation_node: Any = None,
) -> tuple[Any, list[Lesion], list[str]]:
    """For the panels: the lesions of a predicted mask on ``volume_node`` as segments, with the warnings.

    Everything is computed before the scene is touched; the segmentation node (new unless given) and its
    segments are added in one scene change, so an error leaves the scene as it was.
    """

    image = image_of_node(volume_node)
    if not image.geometry.same_grid(geometry):
        raise InputError("The predicted mask is not on the volume's grid.")
    lesions, labels, warnings = lesion_report(
        mask, image.array, geometry, model_info, modality or node_modality(volume_node)
    )
    with scene_change(rt.scene):
        if segmentation_node is None:
            segmentation_node = add_segmentation_node(rt, f"{volume_node.GetName()} lesions", volume_node)
        load_lesion_segments(rt, segmentation_node, lesions, labels, geometry)
    return segmentation_node, lesions, warnings
