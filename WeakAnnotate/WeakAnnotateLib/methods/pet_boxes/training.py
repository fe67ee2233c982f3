"""PET lesions from boxes (Afshari et al.): the worker hooks of ``pet_box_dice`` and ``pet_box_mdice_ms``.

* ``pet_box_dice``: the box-only baseline (paper's L_Dice): plain Dice (2) against the union of the boxes.
* ``pet_box_mdice_ms``: L = β·L_MDice + λ·L_MS (formulas (1)–(7), :mod:`..pet_box_losses`), initialised from
  a finished ``pet_box_dice`` model when ``init_model`` is given (paper: "we used the trained network on box
  mask annotations to initialize the weights").
* ``pet_box_full_supervision``: the paper's L_FS, "a fixed architecture CNN trained with fully supervised
  ground truth delineations": the same network, normalisation and augmentation, plain Dice against the
  reference masks. (The repository's ``full_supervision`` uses another network — PReLU, percentile input — and
  no augmentation, so it is not the upper bound of these rows.)

Labels: every training case's boxes as integer regions (0 outside, 1..K) on its crop grid, written once to
``targets/boxes/<case>.npy`` (streamed like the crops; a resumed job finds them). Boxes come from the case's
box annotations (every annotation kind starting with ``box``: one ROI each), else they are simulated from the
reference mask with :mod:`..pet_boxes` (one box per lesion grown by ``box_margin_mm``; the default gives the
paper's box Dice of 28 %).

Network (paper §3.4): the MONAI 3D U-Net with SELU activations and a sigmoid output; "feature maps divided
by 4" is the job's ``channels`` (paper: 16-32-64-128-256; the tests use 4-8-16). Inputs are normalised to zero
mean and unit variance per window inside the network (:class:`InputZScore`), so training windows, validation
and ``predict`` see the same scaling. ``suv_zscore: true`` is the paper's normalisation instead: the raw SUV
z-scored over the whole crop (no percentile clipping, no per-window z-score; ``predict`` does the same from
the model's ``intensity`` setting). Augmentation (paper §4.1): random flips along every axis and Gaussian
noise, on the fly in the training step. Optimiser: the job's ``optimizer`` ("adam" by default; "sgd" with
momentum 0.9 is the paper's, at ``learning_rate`` 1e-5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import InputError
from ...data.dataset import read_reference
from ...files.image_io import read_image
from ...networks.build import zscore
from ...networks.prediction import load_model
from ...scene.markups_io import read_box
from ...training.job_spec import JobSpec
from ...training.method import TrainingMethod
from .boxes import box_regions, lesion_boxes
from .losses import dice_loss, modified_dice_loss, mumford_shah_loss, region_channels

NOISE_STD = 0.1  # Gaussian noise on the z-scored input (the paper gives no value)
FLIP_P = 0.5  # probability of a flip along each axis


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    window_zscore: bool = True,
    flips: bool = True,
) -> tuple[torch.Tensor, ...]:
    """Random flips (each spatial axis, per batch) and Gaussian noise on the z-scored input; labels flip along.

    ``window_zscore=False`` (``suv_zscore``): the input is already z-scored over its crop and is kept as it is.
    ``flips=False``: the shared recipe's windows are flipped already (``augmentation`` other than "none")."""
    for axis in (2, 3, 4):
        if flips and float(torch.rand(1, generator=generator)) < FLIP_P:
            x, y = x.flip(axis), y.flip(axis)
    if window_zscore:
        x = zscore(x)
    noise = torch.randn(x.shape, generator=generator).to(x.device) * NOISE_STD
    return x + noise, y


class PetBox(TrainingMethod):
    """Method hooks used by the worker (see :class:`~.full_supervision.FullSupervision`) plus step_loss."""

    target = "pseudo"  # unused: every training case has its box labels in target_dir
    target_name = "boxes (simulated from the reference unless annotated)"
    network = {"act": "SELU", "input_norm": "zscore"}
    spatial_augmentation = "axis_aligned"  # the MDice and Mumford-Shah terms read the boxes as axis-aligned boxes

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        super().__init__(spec, cache, split, output)
        self.name = spec.method
        if self.full_supervision:
            self.target, self.target_name = "reference", "reference masks"
        self.generator = torch.Generator().manual_seed(int(spec.seed))
        if spec.options.suv_zscore:  # the paper's normalisation: raw SUV z-scored over the crop, not per window
            self.network = {"act": "SELU", "intensity": "suv_zscore"}

    @property
    def full_supervision(self) -> bool:
        return self.name == "pet_box_full_supervision"

    def target_dir(self, round_index: int) -> Path | None:
        return None if self.full_supervision else self.output / "targets" / "boxes"

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        """Box regions on each training crop's grid (this rank's share), then wait for every rank."""
        if not self.full_supervision:
            self.write_targets(self.target_dir(0), rank, world, barrier, self.box_labels)

    def box_labels(self, case_id: str) -> np.ndarray:
        """float32 region labels (0 outside, 1..K) of the case's boxes on its crop grid."""

        dataset = self.cache.dataset
        entry = dataset.case(case_id)
        image = read_image(dataset.path(entry.image), what=f"image of case {case_id!r}")
        kinds = sorted(k for k in entry.annotations if k.startswith("box"))
        if kinds:
            boxes = [read_box(dataset.path(entry.annotations[k]), geometry=image.geometry) for k in kinds]
        elif entry.reference:
            ref = read_reference(dataset, entry, image.geometry)
            boxes = lesion_boxes(ref, image.geometry, margin_mm=self.spec.options.box_margin_mm)
        else:
            raise InputError(f"dataset: case {case_id!r} has neither a box annotation nor a reference mask.")
        regions = box_regions(boxes, image.geometry)
        return self.cache.grid(case_id).crop(regions)

    def initialise(self, net: torch.nn.Module) -> None:
        """Start from ``init_model`` (a finished job with the same network), when given."""
        if not self.spec.options.init_model:
            return

        loaded = load_model(self.spec.resolve(self.spec.options.init_model))
        mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in loaded.net.state_dict().items()}
        if mine != theirs:
            raise InputError(
                f"init_model: {self.spec.options.init_model} has a different network (channels, activation or input "
                f"normalisation: {loaded.config.get('channels')}, {loaded.config.get('act')}); train it with "
                "the same channels and a pet_box method."
            )
        net.load_state_dict(loaded.net.state_dict())

    def step_loss(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Augment, forward, the method's loss: Dice vs the boxes (or the reference), or β·L_MDice + λ·L_MS."""

        suv = bool(self.spec.options.suv_zscore)
        # the paper's flips only when the shared recipe's augmentation is off (it flips the windows itself)
        x, y = augment(x, y, self.generator, window_zscore=not suv, flips=self.spec.augmentation == "none")
        prob = torch.sigmoid(model(x))
        if self.full_supervision:
            return dice_loss(prob, (y > 0.5).to(prob.dtype))
        boxes = region_channels(y)
        if self.name == "pet_box_dice":
            return dice_loss(prob, boxes)
        s = self.options
        omega1, omega2 = s.ms_omega
        image = x[:, :1] if suv else zscore(x[:, :1])
        return s.mdice_weight * modified_dice_loss(prob, boxes, s.mdice_alpha) + s.ms_weight * mumford_shah_loss(
            prob, image, boxes, s.ms_epsilon, omega1, omega2
        )
