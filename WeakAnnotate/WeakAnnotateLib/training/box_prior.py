"""Training from per-slice boxes with the tightness prior and log-barriers (paper: tightness_prior_logbarrier).

Worker method ``box_prior``: the worker's 3D U-Net on its crops (a first step; **not** the paper's 2.5D
residual U-Net), with the loss of :class:`~..tightness_prior.BoxPriorLoss` (Eq. 6) instead of Dice:

* labels: one 2D box per slice (slices along the crop's array axis 0, the acquisition axis k), written once per
  training case to ``targets/slice_boxes/<case>.npy`` as the union of the slice boxes on the crop grid. The
  boxes are the tight slice boxes of the case's reference mask (the paper's "2D tight" setting), or, for a
  case with a ``box*`` annotation and no reference, that 3D box on every slice it covers (non-tight; correct
  it first with box correction for tight boxes);
* each step: the training window's slices with a box become one stack of 2D problems
  (:func:`~..tightness_prior.build_bands` on the box extent in each slice, clipped to the window), and the loss
  is emptiness outside the boxes + λ·tightness bands + size bounds, all through ψ_t, divided by the number of
  slices so that the step size does not depend on the window;
* ``t`` = :func:`~..tightness_prior.barrier_t` of the epoch (5·1.1^epoch): the worker sets ``method.epoch``
  (0-based) before each epoch.

Known approximations of this first step: a window that cuts a box keeps the clipped box (the lines of the
clipped part may not meet the object inside the window); no flips or noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..tightness_prior import BoxPriorLoss, barrier_t, box_masks, build_bands
from .job_spec import JobSpec
from .method import TrainingMethod


def slice_box_mask(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """bool mask of the same shape: in every slice along ``axis``, the tight 2D box of ``mask`` in that slice."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    m, o = np.moveaxis(mask, axis, 0), np.moveaxis(out, axis, 0)
    for s in np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1)):
        rows, cols = np.flatnonzero(m[s].any(axis=1)), np.flatnonzero(m[s].any(axis=0))
        o[s, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return out


def window_boxes(y: torch.Tensor) -> tuple[list[list[tuple[int, int, int, int]]], list[tuple[int, int]]]:
    """Per (sample, slice) of a label window (B, 1, D, H, W): the extent of its box pixels, or no box."""
    lab = (y[:, 0] > 0.5).cpu().numpy()
    boxes, index = [], []
    for b in range(lab.shape[0]):
        for s in range(lab.shape[1]):
            plane = lab[b, s]
            if not plane.any():
                continue
            rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
            boxes.append([(int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))])
            index.append((b, s))
    return boxes, index


class BoxPrior(TrainingMethod):
    """Worker hooks of ``box_prior`` (see the module docstring)."""

    name = "box_prior"
    target = "pseudo"  # unused: every training case has its slice boxes in target_dir
    target_name = "per-slice boxes (tight boxes of the reference unless a box is annotated)"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        super().__init__(spec, cache, split, output)
        self.loss = BoxPriorLoss()
        self.epoch = 0  # set by the worker before each epoch (0-based)

    def target_dir(self, round_index: int) -> Path:
        return self.output / "targets" / "slice_boxes"

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        self.write_targets(self.target_dir(0), rank, world, barrier, self.box_labels)

    def box_labels(self, case_id: str) -> np.ndarray:
        """float32 union of the case's slice boxes on its crop grid (slices along crop axis 0)."""
        from ..dataset import read_reference
        from ..image_io import read_image
        from ..markups_io import read_box
        from ..simulate import box_mask

        dataset = self.cache.dataset
        entry = dataset.case(case_id)
        image = read_image(dataset.path(entry.image), what=f"image of case {case_id!r}")
        grid = self.cache.grid(case_id)
        if entry.reference:
            ref = read_reference(dataset, entry, image.geometry)
            crop = grid.crop(ref) > 0.5
            return slice_box_mask(crop).astype(np.float32)
        kinds = sorted(k for k in entry.annotations if k.startswith("box"))
        if not kinds:
            raise InputError(f"dataset: case {case_id!r} has neither a reference mask nor a box annotation.")
        region = np.zeros(image.geometry.shape, dtype=bool)
        for k in kinds:
            region |= box_mask(read_box(dataset.path(entry.annotations[k]), geometry=image.geometry), image.geometry)
        return grid.crop(region)

    def step_loss(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. 6 on the window's slices with a box; slices without one only feel the emptiness term."""
        prob = torch.sigmoid(model(x))[:, 0]  # (B, D, H, W)
        b, d, h, w = prob.shape
        boxes, index = window_boxes(y)
        per_slice: list[list[tuple[int, int, int, int]]] = [[] for _ in range(b * d)]
        for (bi, si), bx in zip(index, boxes, strict=True):
            per_slice[bi * d + si] = bx
        probs = prob.reshape(b * d, h, w)
        bands = build_bands(per_slice, (h, w))
        inside = box_masks(per_slice, (h, w))
        return self.loss(probs, bands, inside, barrier_t(self.epoch)) / (b * d)
