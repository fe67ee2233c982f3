"""What the worker asks of a training method, with the defaults most methods share.

A method supplies the training targets (``target``: "reference" masks, or per-case arrays in
``target_dir(round)``), may refine them between rounds (``end_round``), and may bring its own loss
(``step_loss``), network options (``network``) and initial weights (``initialise``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_output
from .job_spec import JobSpec


class TrainingMethod:
    name = ""
    target = "reference"
    target_name = "reference mask"  # what the cases' targets are, as model.json records it
    points_channel = False
    sigma_mm = 0.0  # the points channel's Gaussians (extreme_point_network)
    max_rounds = 1
    convergence = 0.0  # rounds stop when the mean change between rounds is below this
    round_details: dict[str, Any] = {}  # added to every "round" progress line
    # the recipe's spatial augmentation (training/recipe.py): "affine" (free rotation and scaling), or
    # "axis_aligned" for targets that are axis-aligned boxes (no free rotation, so that boxes stay boxes)
    spatial_augmentation = "affine"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        self.spec = spec
        self.options = spec.options  # the method's section of the spec (its descriptor's dataclass)
        self.cache = cache
        self.split = split
        self.output = output

    def target_dir(self, round_index: int) -> Path | None:
        return None

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        """Nothing beyond the crops by default: the reference is the target."""

    def out_of_budget(self) -> bool:
        """True once the job's ``max_minutes`` are spent (the worker sets it): a long refinement between rounds
        stops early rather than overrun the budget."""
        return False

    def end_round(self, round_index: int, predict: Any, rank: int, world: int) -> tuple[float, int]:
        """No refinement; (sum of changes, count) = (0, 0) means "converged"."""
        return 0.0, 0

    def write_targets(
        self, folder: Path, rank: int, world: int, barrier: Any, make: Callable[[str], np.ndarray]
    ) -> None:
        """``folder/<case>.npy`` = ``make(case)`` for this rank's share of the training cases (kept when already
        there, so a resumed job does not redo them), then wait for every rank."""
        folder.mkdir(parents=True, exist_ok=True)
        for case_id in self.split["train"][rank::world]:
            out = folder / f"{case_id}.npy"
            if not out.is_file():
                with atomic_output(out) as tmp:
                    np.save(tmp, make(case_id))
        barrier()
