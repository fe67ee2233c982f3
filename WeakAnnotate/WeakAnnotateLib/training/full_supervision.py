"""Full supervision on the reference masks: the upper bound every weak-supervision paper reports.

Same crops, network, loss and schedule as the extreme-point network, but trained on the reference masks and
without the points channel, in one round: the difference to the weak methods is only the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .job_spec import JobSpec


class FullSupervision:
    """Method hooks used by the worker (see :class:`~.extreme_point_network.ExtremePointNetwork`)."""

    name = "full_supervision"
    target = "reference"

    def __init__(self, spec: JobSpec, cache: Any, split: dict[str, list[str]], output: Path) -> None:
        self.spec = spec
        self.cache = cache
        self.split = split
        self.output = output
        self.points_channel = False
        self.max_rounds = 1

    def prepare(self, rank: int, world: int, barrier: Any) -> None:
        """Nothing beyond the crops: the reference is the target."""

    def target_dir(self, round_index: int) -> Path | None:
        return None

    def end_round(self, round_index: int, predict: Any, rank: int, world: int) -> tuple[float, int]:
        """No refinement; (sum of changes, count) = (0, 0) means "converged"."""
        return 0.0, 0
