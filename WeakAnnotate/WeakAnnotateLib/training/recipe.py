"""The training recipe every method shares: windows that oversample the object, augmentation, the learning-rate
schedule, mixed precision and the wall-clock budget.

Why one place: the networks trained from weak labels scored below their own labels with plain uniform windows,
no augmentation and a constant learning rate; the field's recipe (nnU-Net, MONAI's tutorials) is the same for
any target, so the worker applies it to every method, from MONAI's building blocks:

* windows: ``RandCropByPosNegLabeld`` — a fraction ``foreground_fraction`` of the windows is centred on a voxel
  of the target (> 0: the object, a box, a template), the rest on a background voxel; crops smaller than the
  window are zero-padded first (``SpatialPadd``). ``foreground_fraction`` 0 with ``augmentation`` "none" is the
  previous sampler (uniform random windows), kept bit for bit;
* spatial augmentation (image, extra channels and target alike; the target by nearest neighbour, so integer-coded
  targets — box regions, Weak-Net's template + band — keep their values): flips along every axis, a quarter turn
  in the slice plane (square windows only), and ``RandAffined`` (rotation up to 15° about every axis and scaling
  by 0.85–1.15). A method whose targets are axis-aligned boxes (``spatial_augmentation = "axis_aligned"``: the
  PET boxes, the tightness prior) gets no free rotation, so that its boxes stay boxes;
* intensity augmentation (the image channel only; the extreme-point Gaussians are left alone): scale, shift,
  gamma and Gaussian noise;
* the schedule: the learning rate times ``(1 − progress)^0.9`` ("poly", nnU-Net's) or ``½(1 + cos(π·progress))``
  ("cosine"), progress being the larger of the steps done and the budget's time used, per round;
* mixed precision (``amp``) on CUDA only: bfloat16 where the GPU has it, else float16 with a gradient scaler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SCHEDULES = ("constant", "poly", "cosine")
AUGMENTATIONS = ("none", "flips", "standard")
POLY_EXPONENT = 0.9  # nnU-Net's
ROTATION_RAD = math.radians(15.0)
SCALE_RANGE = 0.15  # scaling by 1 ± this


def lr_factor(schedule: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` ∈ [0, 1] of the schedule (clipped)."""
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "poly":
        return (1.0 - p) ** POLY_EXPONENT
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def uses_recipe_windows(foreground_fraction: float, augmentation: str) -> bool:
    """False for the previous sampler (uniform windows, nothing augmented)."""
    return foreground_fraction > 0 or augmentation != "none"


def window_transform(
    patch_size: Sequence[int],
    *,
    foreground_fraction: float,
    augmentation: str,
    spatial: str = "affine",
    extra_channels: bool = False,
    seed: int = 0,
) -> Any:
    """The MONAI transform from a whole crop ``{"image": (1, D, H, W), ["extra": (C, D, H, W),] "target": …}``
    to one augmented training window of ``patch_size``."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSpatialCropd,
        SpatialPadd,
    )

    keys = ["image", "extra", "target"] if extra_channels else ["image", "target"]
    size = tuple(int(s) for s in patch_size)
    steps: list[Any] = [SpatialPadd(keys, spatial_size=size)]
    if foreground_fraction > 0:
        pos = float(foreground_fraction)
        steps.append(
            RandCropByPosNegLabeld(
                keys, label_key="target", spatial_size=size, pos=pos, neg=1.0 - pos, num_samples=1, allow_smaller=True
            )
        )
    else:
        steps.append(RandSpatialCropd(keys, roi_size=size, random_size=False))
    if augmentation in ("flips", "standard"):
        steps += [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in (0, 1, 2)]
        if size[1] == size[2]:  # a quarter turn keeps the window's shape only when it is square in-plane
            steps.append(RandRotate90d(keys, prob=0.5, max_k=3, spatial_axes=(1, 2)))
    if augmentation == "standard":
        rotate = (ROTATION_RAD,) * 3 if spatial == "affine" else (0.0, 0.0, 0.0)
        modes = ["bilinear", "bilinear", "nearest"] if extra_channels else ["bilinear", "nearest"]
        steps.append(
            RandAffined(
                keys,
                prob=0.5,
                rotate_range=rotate,
                scale_range=(SCALE_RANGE,) * 3,
                mode=modes,
                padding_mode="zeros",
                spatial_size=size,
            )
        )
        steps += [
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.8, 1.25), prob=0.3),
            RandGaussianNoised("image", std=0.03, prob=0.3),
        ]
    transform = Compose(steps)
    transform.set_random_state(seed=int(seed) % (2**32))
    return transform


class RecipeWindows:
    """Training windows of a :class:`~WeakAnnotateLib.data.dataset.CropDataset` (given without ``patch_size``,
    so that it returns whole crops) through :func:`window_transform`; the same item layout as the crop
    dataset's own windows (``input`` (C, D, H, W), ``target`` (1, D, H, W), ``case``)."""

    def __init__(self, crops: Any, transform: Any) -> None:
        self.crops = crops
        self.transform = transform

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        x, y = self.crops.arrays(index)
        item = {"image": x[:1], "target": y}
        if x.shape[0] > 1:
            item["extra"] = x[1:]
        out = self.transform(item)
        if isinstance(out, list):  # RandCropByPosNegLabeld returns a list of num_samples (1) windows
            out = out[0]
        channels = [out["image"]] + ([out["extra"]] if "extra" in out else [])
        x_out = torch.cat([torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in channels], dim=0)
        y_out = torch.as_tensor(np.asarray(out["target"]), dtype=torch.float32)
        return {"input": x_out.contiguous(), "target": y_out.contiguous(), "case": self.crops.case_ids[index]}


class MixedPrecision:
    """``autocast`` and the gradient scaler for CUDA; a no-op on the CPU (where float32 is the fast path)."""

    def __init__(self, enabled: bool, device: str) -> None:
        import torch

        self.enabled = bool(enabled) and str(device).startswith("cuda")
        self.dtype = None
        self.scaler = None
        if self.enabled:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.dtype == torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")

    @property
    def name(self) -> str | None:
        return str(self.dtype).replace("torch.", "") if self.enabled else None

    def autocast(self) -> Any:
        import contextlib

        import torch

        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def step(self, loss: Any, optimiser: Any) -> None:
        """backward and the optimiser's step (scaled under float16)."""
        if self.scaler is None:
            loss.backward()
            optimiser.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimiser)
        self.scaler.update()


def sized_channels(patch_size: Sequence[int], base: int = 16, cap: int = 256) -> list[int]:
    """A U-Net sized for the window (``channels: []``): levels until the deepest map is 4–7 voxels across,
    ``base`` features doubling per level up to ``cap`` (48³ → 16-32-64-128; 32³ → 16-32-64-128; 96³ → 5 levels
    capped at 256)."""
    smallest = int(min(patch_size))
    levels = 1
    while smallest // (2**levels) >= 4 and levels < 6:
        levels += 1
    return [min(base * 2**k, cap) for k in range(levels)]
