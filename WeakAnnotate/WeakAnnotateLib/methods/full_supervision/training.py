"""Full supervision on the reference masks: the upper bound every weak-supervision paper reports.

Same crops, network, loss and schedule as the extreme-point network, but trained on the reference masks and
without the points channel, in one round: the difference to the weak methods is only the labels.
"""

from __future__ import annotations

from ...training.method import TrainingMethod


class FullSupervision(TrainingMethod):
    """Trained on the reference masks: every default of :class:`~.method.TrainingMethod`."""

    name = "full_supervision"
    target = "reference"
