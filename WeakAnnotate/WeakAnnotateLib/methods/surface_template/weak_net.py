"""Weak-Net (Goli et al., issue 6): a segmentation U-Net trained on surface-point templates, sharpened by a
second U-Net that must reconstruct the image from the segmentation.

* U-Net 1 (the job's network, ``channels``): image → segmentation logits Ŷ. It alone is used at inference,
  thresholded at γ (``weak_net_threshold``; written into the model config, applied by ``predict``).
* U-Net 2 (same channels): sigmoid(Ŷ) → reconstructed image X̂. Trained jointly; saved with the model but
  never run at inference (:class:`WeakNetModule` returns U-Net 1's logits unless asked to reconstruct).
* Loss (paper eq. 1): ``L = CE(Y, Ŷ) + λ·L_mse``, ``L_mse = mean(W · (X − X̂)²)``, Y the rasterised template.
  Our choices where the paper is silent (docs/surface_template.md):
  - X is the crop's 1st–99th-percentile-normalised intensity × 255: the paper's λ = 1e-4 balances a per-voxel
    CE against squared errors of 8-bit-like intensities (with X in [0, 1] the MSE term would be ~65,000×
    smaller and λ = 1e-4 would be the λ = 0 ablation);
  - both terms are means over the window (the paper's sums divided by the same voxel count: same ratio);
  - W = 1 within ``weak_net_distance_mm`` (d) of the template's boundary (exact Euclidean distance on the
    crop grid, inside and outside), :data:`LOW_WEIGHT` = 0.1 elsewhere;
  - CE is binary (sigmoid output, as the paper's single foreground-probability map).
* ``weak_net_lambda = 0`` is the template-alone ablation: CE only, no U-Net 2 at all.

Templates: each training case's ``surface_points`` annotation (a ``.mrk.json`` point list) is fitted by the
active surface (:func:`..active_surface.fit_surface`, default parameters) on the image's grid, rasterised,
cropped to the case's crop and resampled, once, into ``targets/templates/<case>.npy`` — like the extreme-point
network's round-0 labels (streamed, rank-sharded, found again on resume). The boundary band travels in the same
file (value + 2) so the random training windows cut template and band alike without a second target stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ...core.errors import InputError
from ...data.dataset import MANIFEST, CaseEntry, DatasetFolder
from ...evaluation.simulate import surface_points
from ...files.cases import find_case
from ...files.image_io import read_image, select_label
from ...scene.markups_io import read_points, write_points
from ...training.job_spec import JobSpec
from ...training.method import TrainingMethod
from .active_surface import fit_surface

INTENSITY_SCALE = 255.0  # X in the MSE: normalised crop × 255 (see the module docstring)
LOW_WEIGHT = 0.1  # W_mse away from the template's boundary (1 within d)
BAND = 2.0  # offset that marks "within d of the boundary" in a stored template


def template_with_band(template: np.ndarray, spacing: Sequence[float], distance_mm: float) -> np.ndarray:
    """float32: the template (0/1) + :data:`BAND` where a voxel lies within ``distance_mm`` of its boundary.

    Distance to the boundary = Euclidean distance (mm, anisotropic ``spacing``) to the nearest voxel of the
    other class, for voxels inside and outside alike.
    """
    inside = np.asarray(template) >= 0.5
    if inside.all() or not inside.any():
        return inside.astype(np.float32)
    spacing = tuple(float(s) for s in spacing)
    to_outside = ndimage.distance_transform_edt(inside, sampling=spacing)
    to_inside = ndimage.distance_transform_edt(~inside, sampling=spacing)
    band = np.where(inside, to_outside, to_inside) <= distance_mm
    return (inside + BAND * band).astype(np.float32)


def split_target(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(template 0/1, band 0/1) of a stored target (see :func:`template_with_band`)."""
    band = (y >= BAND - 0.5).to(y.dtype)
    return y - BAND * band, band


def weak_net_loss(
    logits: torch.Tensor,
    image: torch.Tensor,
    target: torch.Tensor,
    reconstruction: torch.Tensor | None,
    lam: float,
) -> torch.Tensor:
    """CE(template, Ŷ) + λ·mean(W·(X − X̂)²), X and X̂ on the ×255 scale; λ·MSE is skipped when λ = 0."""
    template, band = split_target(target)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, template)
    if lam > 0 and reconstruction is not None:
        weight = LOW_WEIGHT + (1.0 - LOW_WEIGHT) * band
        error = INTENSITY_SCALE * (image - reconstruction)
        loss = loss + lam * torch.mean(weight * error**2)
    return loss


class WeakNet(TrainingMethod):
    """Method hooks used by the worker (see :class:`~.full_supervision.FullSupervision`) plus step_loss."""

    name = "weak_net"
    target = "pseudo"  # unused: every training case's template is in target_dir
    target_name = "surface points → active-surface template"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        super().__init__(spec, cache, split, output)
        self.lam = float(spec.options.weak_net_lambda)
        # What build_network and predict read: U-Net 2 only when λ > 0, and the inference threshold γ.
        self.network = {"reconstruction": self.lam > 0, "threshold": float(spec.options.weak_net_threshold)}

    def target_dir(self, round_index: int) -> Path:
        return self.output / "targets" / "templates"

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        """Templates (with their boundary band) of this rank's training cases, then wait for every rank."""

        def banded(case_id: str) -> np.ndarray:
            spacing = self.cache.load(case_id)["spacing"]
            return template_with_band(self.template(case_id), spacing, self.spec.options.weak_net_distance_mm)

        self.write_targets(self.target_dir(0), rank, world, barrier, banded)

    def template(self, case_id: str) -> np.ndarray:
        """The case's surface-point template on its crop grid (float32 0/1)."""

        dataset = self.cache.dataset
        entry = dataset.case(case_id)
        path = entry.annotations.get("surface_points")
        if not path:
            raise InputError(f"dataset: case {case_id!r} has no surface_points annotation.")
        image = read_image(dataset.path(entry.image), what=f"image of case {case_id!r}")
        points, _ = read_points(dataset.path(path), min_count=5, geometry=image.geometry, what="surface points")
        try:
            mask = fit_surface(points, image.geometry).rasterize()
        except InputError as e:
            raise InputError(f"dataset: case {case_id!r}: surface points: {e}") from None
        crop = self.cache.grid(case_id).crop(mask, mode="trilinear")
        return (crop >= 0.5).astype(np.float32)

    def step_loss(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward (with U-Net 2 when λ > 0) and the Weak-Net loss against the template."""
        if self.lam > 0:
            logits, reconstruction = model(x, reconstruct=True)
        else:
            logits, reconstruction = model(x), None
        return weak_net_loss(logits, x[:, :1], y, reconstruction, self.lam)


def surface_point_dataset(
    output: str | Path,
    case_ids: Sequence[str],
    *,
    points: int = 50,
    data_dir: str | Path | None = None,
    label: int | None = None,
    seed: int = 0,
) -> Any:
    """A dataset of catalogue cases annotated with simulated surface points (``surface_points`` kind) and
    their reference masks: what a Weak-Net job trains on, without a user (tests and benchmarks)."""

    root = Path(output)
    if (root / MANIFEST).exists():
        raise InputError(f"{root} already holds a dataset; choose a new folder.")
    ds = DatasetFolder(root, root.name)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for n, case_id in enumerate(case_ids):
        case = find_case(case_id, data_dir)
        reference = case.reference_mask("simulating surface points")
        ref = read_image(reference, what=f"mask of {case_id}")
        mask = select_label(ref.array, label, what="mask", path=reference) != 0
        pts = surface_points(mask, ref.geometry, points, seed=seed + n)
        path = write_points(
            root / "annotations" / f"{case_id}.surface_points.mrk.json", pts, [f"s{k + 1}" for k in range(len(pts))]
        )
        ds.add_case(
            CaseEntry(
                id=case_id,
                image=ds.stored(case.image),
                annotations={"surface_points": ds.stored(path)},
                reference=ds.stored(reference),
                reference_label=label,
                effort={"clicks": len(pts), "seconds": 0.0},
                modality=case.modality,
            )
        )
    ds.save()
    return ds
