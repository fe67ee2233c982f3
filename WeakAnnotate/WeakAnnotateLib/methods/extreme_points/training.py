"""The extreme-point network (Roth et al., "Going to extremes", steps 3–4).

* Input: the image cropped around the six points' box plus ``padding_mm`` (paper: 20 mm), resampled to a
  coarse isotropic grid, and a second channel of 3D Gaussians at the six points (``points_channel``).
* Round 0 labels: the random-walker pseudo-label of steps 1–2 (:mod:`..extreme_points`), taken from the
  dataset's pseudo-label file when there is one (a user may have corrected it), computed otherwise.
* Each round: train (Dice loss) → predict every training crop → erode the foreground (P ≥ 0.5) and the
  background (P < 0.5) by a ball of ``erosion_mm`` (paper: r = 4 voxels at 1 mm) → random walker
  (:func:`..random_walker.random_walker`, β = 130) on the uncertain band between them → the next round's
  labels. Outside the points' box stays background. ``random_walker=False`` is the paper's "w/o RW"
  ablation: the thresholded prediction is the next label.
* Stop when the mean 1 − Dice between consecutive rounds' predictions drops below ``convergence`` or after
  ``rounds`` rounds.

Labels of each round live on disk (``targets/round_N/<case>.npy`` in the job folder): the worker streams
them like the crops, and a resumed job finds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ...core.atomic_files import atomic_output
from ...core.errors import InputError
from ...data.dataset import crop_grid, read_extreme_points, resample
from ...evaluation.metrics import dice
from ...files.image_io import read_image
from ...training.job_spec import JobSpec
from ...training.method import TrainingMethod
from .random_walker import BACKGROUND, FOREGROUND, UNKNOWN, random_walker
from .segmenter import segment_extreme_points


def ball(radius_vox: float) -> np.ndarray:
    r = max(int(np.floor(radius_vox)), 1)
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return (g**2).sum(axis=0) <= radius_vox**2 + 1e-9


def inside_box(shape: tuple[int, ...], box: np.ndarray | None) -> np.ndarray:
    """Voxels inside the points' box (resampled coordinates, (2, 3) lo/hi), everything when unknown."""
    inside = np.zeros(shape, bool)
    if box is None:
        inside[:] = True
        return inside
    lo = np.maximum(np.floor(box[0]).astype(int), 0)
    hi = np.minimum(np.ceil(box[1]).astype(int), np.asarray(shape) - 1)
    inside[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))] = True
    return inside


def refine_with_random_walker(
    probability: np.ndarray,
    image: np.ndarray,
    *,
    erosion_vox: float,
    beta: float = 130.0,
    box: np.ndarray | None = None,
    spacing: np.ndarray | None = None,
) -> np.ndarray:
    """Paper step 4: seeds = eroded foreground and eroded background of a prediction; RW fills the band."""
    inside = inside_box(probability.shape, box)
    fg = (probability >= 0.5) & inside
    structure = ball(erosion_vox)
    fg_seed = ndimage.binary_erosion(fg, structure)
    bg_seed = ndimage.binary_erosion(~fg, structure, border_value=1) | ~inside
    if not fg_seed.any():
        fg_seed = fg  # a small object vanishes under erosion: keep its prediction as the seed
    if not fg_seed.any():
        return fg.astype(np.float32)  # nothing predicted: nothing to refine
    bg_seed &= ~fg_seed
    seeds = np.full(probability.shape, UNKNOWN, np.int8)
    seeds[fg_seed] = FOREGROUND
    seeds[bg_seed] = BACKGROUND
    return random_walker(image, seeds, beta=beta, spacing=spacing).probability


class ExtremePointNetwork(TrainingMethod):
    """Method hooks used by the worker: prepare (round-0 labels), target_dir (labels of a round), end_round."""

    name = "extreme_point_network"
    target = "pseudo"
    target_name = "extreme points → random walker"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        super().__init__(spec, cache, split, output)
        self.points_channel = bool(spec.options.points_channel)
        self.sigma_mm = float(spec.options.sigma_mm)
        self.max_rounds = int(spec.options.rounds)
        self.convergence = float(spec.options.convergence)
        self.round_details = {"random_walker": bool(spec.options.random_walker)}

    def target_dir(self, round_index: int) -> Path:
        return self.output / "targets" / f"round_{round_index}"

    def prediction_dir(self, round_index: int) -> Path:
        return self.output / "round_predictions" / f"round_{round_index}"

    def _shard(self, rank: int, world: int) -> list[str]:
        return self.split["train"][rank::world]

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        """Round-0 labels for every training case: the dataset's pseudo-label, or steps 1–2 computed now."""

        def round0(case_id: str) -> np.ndarray:
            z = self.cache.load(case_id)
            label = z["pseudo"] if "pseudo" in z else self._random_walker_init(case_id)
            return (label >= 0.5).astype(np.float32)

        self.write_targets(self.target_dir(0), rank, world, barrier, round0)

    def _random_walker_init(self, case_id: str) -> np.ndarray:

        entry = self.cache.dataset.case(case_id)
        path = entry.annotations.get("extreme_points")
        if not path:
            raise InputError(f"dataset: case {case_id!r} has no extreme-point annotation.")
        image = read_image(self.cache.dataset.path(entry.image), what=f"image of case {case_id!r}")
        points = read_extreme_points(self.cache.dataset.path(path), image.geometry)
        mask = segment_extreme_points(image.array, image.geometry, points).mask
        index = image.geometry.ras_to_index(points)
        grid = crop_grid(
            image.geometry,
            index.min(axis=0),
            index.max(axis=0),
            padding_mm=self.cache.padding_mm,
            spacing_mm=self.cache.spacing_mm,
        )
        return resample(mask[grid.slices].astype(np.float32), grid.resampled_shape)

    def end_round(self, round_index: int, predict: Any, rank: int, world: int) -> tuple[float, int]:
        """Predict this rank's training crops, refine, write round ``round_index + 1``'s labels.

        Returns (sum of 1 − Dice against the previous round's prediction, number of cases) for the
        convergence test; round 0 is compared with its random-walker labels. Once the job's wall-clock budget is
        spent (``max_minutes``), the remaining cases keep this round's labels unrefined.
        """
        nxt = self.target_dir(round_index + 1)
        preds = self.prediction_dir(round_index)
        nxt.mkdir(parents=True, exist_ok=True)
        preds.mkdir(parents=True, exist_ok=True)
        change, count = 0.0, 0
        for case_id in self._shard(rank, world):
            if self.out_of_budget():
                _save_npy(nxt / f"{case_id}.npy", np.load(self.target_dir(round_index) / f"{case_id}.npy"))
                continue
            z = self.cache.load(case_id)
            prob = predict(case_id)
            pred = prob >= 0.5
            previous_file = self.prediction_dir(round_index - 1) / f"{case_id}.npy"
            if previous_file.is_file():
                previous = np.load(previous_file) >= 0.5
            else:
                previous = np.load(self.target_dir(0) / f"{case_id}.npy") >= 0.5
            change += 1.0 - dice(previous, pred)
            count += 1
            _save_npy(preds / f"{case_id}.npy", prob.astype(np.float32))
            if self.spec.options.random_walker:
                spacing_mm = float(np.mean(z["spacing"]))
                label = refine_with_random_walker(
                    prob,
                    z["image"],
                    erosion_vox=self.spec.options.erosion_mm / spacing_mm,
                    beta=self.spec.options.beta,
                    box=z.get("box"),
                )
                label = (label >= 0.5).astype(np.float32)
            else:
                label = (pred & inside_box(pred.shape, z.get("box"))).astype(np.float32)
            _save_npy(nxt / f"{case_id}.npy", label)
        return change, count


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        np.save(tmp, array)
