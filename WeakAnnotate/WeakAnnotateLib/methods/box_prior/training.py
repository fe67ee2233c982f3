"""Training from boxes with the tightness prior and log-barriers (paper: tightness_prior_logbarrier).

Worker method ``box_prior``. The network is the paper's 2.5D residual U-Net (``network: "unet_2.5d"``, the default:
three neighbouring slices in, the centre slice out; :class:`~..slice_stack_unet.SliceStackUNet`) or the
worker's 3D U-Net (``"unet_3d"``). The loss is :class:`~..tightness_prior.BoxPriorLoss` (Eq. 6) instead of Dice.

Labels — the boxes, as a mask on each training case's crop grid, written once to
``targets/slice_boxes/<case>.npy`` — come from ``box_source``:

* ``tight_slices``: the tight 2D box of the reference in every slice (the paper's setting);
* ``box_3d``: the reference's tight 3D box on every slice it covers (the cheapest annotation; its slice
  boxes are not tight);
* ``annotation``: the case's own annotations — a ``slice_boxes`` file (``weakannotate box-correct``'s
  BOXES.json: corrected per-slice boxes) when present, else every ``box*`` ROI;
* ``auto`` (default): ``annotation`` when the case has one, else ``tight_slices``.

``box_margin_vox`` grows every box by that many crop-grid voxels per side (in-plane for slice boxes, all
sides for 3D boxes): the paper's margin-sensitivity experiment (m = 10).

Slices are along the crop's array axis 0 (the acquisition axis k). Each step takes the box extent in every
slice of the window (``tightness: "2d"``: bands of w lines per slice, emptiness and size per slice, divided by
the number of slices), or the 3D extent of the window's box (``"3d"``: slabs of w planes along all three axes,
:func:`~..tightness_prior.build_slabs`; emptiness and size per volume), or both (``"2d+3d"``). ``t`` =
:func:`~..tightness_prior.barrier_t` of the epoch (the worker sets ``method.epoch`` before each epoch).

Windows should cover the crop (``patch_size`` ≥ crop): a window that cuts a box keeps the clipped box, whose
lines or planes may meet the object only outside the window. The 3D slabs take one box per window (the extent
of all box voxels in it). Augmentation: random flips in-plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import InputError
from ...data.dataset import read_reference
from ...evaluation.simulate import box_mask
from ...files.image_io import read_image
from ...scene.markups_io import read_box
from ...training.job_spec import JobSpec
from ...training.method import TrainingMethod
from ..box_correction.classifier import read_slice_boxes
from .tightness_prior import BoxPriorLoss, barrier_t, box_masks, build_bands, build_slabs, tightness_loss

INITIAL_LOGIT = -2.944  # logit(0.05)


def slice_box_mask(mask: np.ndarray, axis: int = 0, margin: int = 0) -> np.ndarray:
    """bool mask of the same shape: in every slice along ``axis``, the tight 2D box of ``mask`` in that slice,
    grown by ``margin`` voxels per side (clipped to the slice)."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    m, o = np.moveaxis(mask, axis, 0), np.moveaxis(out, axis, 0)
    h, w = m.shape[1:]
    for s in np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1)):
        rows, cols = np.flatnonzero(m[s].any(axis=1)), np.flatnonzero(m[s].any(axis=0))
        r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + margin, h - 1)
        c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + margin, w - 1)
        o[s, r0 : r1 + 1, c0 : c1 + 1] = True
    return out


def box_3d_mask(mask: np.ndarray, margin: int = 0) -> np.ndarray:
    """bool mask: the tight 3D box of ``mask`` grown by ``margin`` voxels per side (clipped)."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    if mask.any():
        index = np.argwhere(mask)
        lo = np.maximum(index.min(axis=0) - margin, 0)
        hi = np.minimum(index.max(axis=0) + margin, np.asarray(mask.shape) - 1)
        out[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))] = True
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


def window_boxes_3d(y: torch.Tensor) -> list[tuple[int, int, int, int, int, int] | None]:
    """Per sample of a label window (B, 1, D, H, W): the 3D extent of its box voxels, or None."""
    lab = (y[:, 0] > 0.5).cpu().numpy()
    out: list[tuple[int, int, int, int, int, int] | None] = []
    for b in range(lab.shape[0]):
        if not lab[b].any():
            out.append(None)
            continue
        index = np.argwhere(lab[b])
        lo, hi = index.min(axis=0), index.max(axis=0)
        out.append((int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2])))
    return out


class BoxPrior(TrainingMethod):
    """Worker hooks of ``box_prior`` (see the module docstring)."""

    name = "box_prior"
    target = "pseudo"  # unused: every training case has its box labels in target_dir
    spatial_augmentation = "axis_aligned"  # Eq. 6 reads the targets as axis-aligned boxes per slice
    target_name = "boxes (box_source)"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        super().__init__(spec, cache, split, output)
        self.loss = BoxPriorLoss(
            lam=spec.options.tightness_lambda,
            size_epsilon=spec.options.size_epsilon,
            background=spec.options.background,
            entropy_weight=spec.options.entropy_weight,
            tolerance=spec.options.emptiness_tolerance,
        )
        self.epoch = 0  # set by the worker before each epoch (0-based)
        self.generator = torch.Generator().manual_seed(int(spec.seed))
        o = spec.options
        self.target_name = f"boxes ({o.box_source}, tightness {o.tightness}, margin {o.box_margin_vox})"

    def initialise(self, net: torch.nn.Module) -> None:
        """Output bias at logit(0.05): start from "mostly background" (Lin et al.'s prior initialisation).

        Why: from the usual p ≈ 0.5 everywhere, the emptiness and upper size constraints first have to push
        every pixel down, inside the boxes too, a phase that a few hundred CPU steps of Adam do not finish."""
        last = [
            m
            for m in net.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Conv3d, torch.nn.ConvTranspose3d))
        ][-1]
        if last.bias is not None:
            with torch.no_grad():
                last.bias.fill_(INITIAL_LOGIT)

    def target_dir(self, round_index: int) -> Path:
        return self.output / "targets" / "slice_boxes"

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        self.write_targets(self.target_dir(0), rank, world, barrier, self.box_labels)

    def box_labels(self, case_id: str) -> np.ndarray:
        """float32 box mask of the case on its crop grid (slices along crop axis 0), from ``box_source``."""

        dataset = self.cache.dataset
        entry = dataset.case(case_id)
        source, margin = self.spec.options.box_source, int(self.spec.options.box_margin_vox)
        annotated = _box_annotations(entry.annotations)
        if source == "auto":
            source = "annotation" if annotated else "tight_slices"
        image = read_image(dataset.path(entry.image), what=f"image of case {case_id!r}")
        grid = self.cache.grid(case_id)
        if source == "annotation":
            if not annotated:
                raise InputError(
                    f"box_source: case {case_id!r} has no slice_boxes or box annotation; use tight_slices or "
                    "box_3d to take boxes from its reference."
                )
            region = _annotated_region(dataset, entry.annotations, annotated, image.geometry)
            crop = grid.crop(region.astype(np.float32)) > 0.5
            if "slice_boxes" in annotated:
                return slice_box_mask(crop, margin=margin).astype(np.float32)
            # one or more ROIs: their union, each grown by the margin (a cube dilation grows a box by m per side)
            if margin:
                from scipy import ndimage

                crop = ndimage.binary_dilation(crop, np.ones((2 * margin + 1,) * 3, dtype=bool))
            return crop.astype(np.float32)
        if not entry.reference:
            raise InputError(f"box_source: case {case_id!r} has no reference mask to take {source} boxes from.")
        crop = grid.crop(read_reference(dataset, entry, image.geometry)) > 0.5
        if source == "tight_slices":
            return slice_box_mask(crop, margin=margin).astype(np.float32)
        return box_3d_mask(crop, margin).astype(np.float32)

    def step_loss(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Flip in-plane, forward, Eq. 6 on the window (per slice, per volume, or both: ``tightness``)."""
        for axis in (3, 4):
            if float(torch.rand(1, generator=self.generator)) < 0.5:
                x, y = x.flip(axis), y.flip(axis)
        prob = torch.sigmoid(model(x))[:, 0]  # (B, D, H, W)
        b, d, h, w = prob.shape
        t = barrier_t(self.epoch, factor=self.spec.options.barrier_growth)
        mode = self.spec.options.tightness
        total = prob.sum() * 0.0
        if mode in ("2d", "2d+3d"):
            boxes, index = window_boxes(y)
            per_slice: list[list[tuple[int, int, int, int]]] = [[] for _ in range(b * d)]
            for (bi, si), bx in zip(index, boxes, strict=True):
                per_slice[bi * d + si] = bx
            probs = prob.reshape(b * d, h, w)
            total = total + self.loss(probs, build_bands(per_slice, (h, w)), box_masks(per_slice, (h, w)), t) / (b * d)
        if mode == "3d":
            slabs = build_slabs(window_boxes_3d(y), (d, h, w))
            total = total + self.loss(prob, slabs, (y[:, 0] > 0.5).cpu(), t) / b
        elif mode == "2d+3d":
            slabs = build_slabs(window_boxes_3d(y), (d, h, w))
            total = total + self.loss.lam * tightness_loss(prob, slabs, t) / b
        return total


def _box_annotations(annotations: dict[str, str]) -> list[str]:
    """The annotation kinds that hold boxes: ``slice_boxes`` (corrected per-slice boxes) wins over ROIs."""
    if "slice_boxes" in annotations:
        return ["slice_boxes"]
    return sorted(k for k in annotations if k.startswith("box"))


def _annotated_region(dataset: Any, annotations: dict[str, str], kinds: list[str], geometry: Any) -> np.ndarray:

    if kinds == ["slice_boxes"]:
        return read_slice_boxes(dataset.path(annotations["slice_boxes"]), geometry)
    region = np.zeros(geometry.shape, dtype=bool)
    for k in kinds:
        region |= box_mask(read_box(dataset.path(annotations[k]), geometry=geometry), geometry)
    return region
