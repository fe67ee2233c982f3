"""ExtremePointSeg: six extreme clicks → random-walker pseudo-label → the extreme-point network (paper steps 1–4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import AnnotationMethod, TrainingMethodInfo, option


@dataclass
class ExtremePointNetworkOptions:
    """The ``extreme_point_network`` section of a job spec (paper steps 3–4)."""

    points_channel: bool = option(True, "Second input channel: Gaussians at the six points (paper).")
    sigma_mm: float = option(3.0, "Sigma of the points channel's Gaussians, in mm.", minimum=0.0)
    rounds: int = option(3, "At most this many train → predict → random-walker rounds.", minimum=1)
    random_walker: bool = option(True, "Refine predictions with the random walker between rounds (off: w/o RW).")
    erosion_mm: float = option(4.0, "Erode the predicted foreground and background by this before the random "
                               "walker (paper: r = 4 voxels of 1 mm).", minimum=0.0)  # fmt: skip
    beta: float = option(130.0, "The random walker's beta (paper: 130).", minimum=0.0)
    convergence: float = option(0.01, "Stop when 1 − Dice between consecutive rounds' predictions is below this.",
                                minimum=0.0)  # fmt: skip


def needs_extreme_points(entry: Any, spec: Any) -> str:
    if entry.annotations.get("extreme_points"):
        return ""
    return (
        f"dataset: case {entry.id!r} has no extreme-point annotation; the extreme-point "
        "network needs six clicks per training case."
    )


EXTREME_POINT_NETWORK = TrainingMethodInfo(
    name="extreme_point_network",
    title="Extreme-point network",
    help="3D U-Net with a points channel, trained on random-walker labels, refined over rounds (Roth et al.).",
    options=ExtremePointNetworkOptions,
    trainer="WeakAnnotateLib.methods.extreme_points.training:ExtremePointNetwork",
    case_check=needs_extreme_points,
)

METHOD = AnnotationMethod(
    name="extreme_points",
    title="Extreme points",
    annotation="extreme_points",
    help="Six clicks, one at each end of the object along each axis; geodesic scribbles and a random walker.",
    simulate="WeakAnnotateLib.evaluation.simulate:extreme_points",
    pseudo_label="WeakAnnotateLib.methods.extreme_points.segmenter:segment_extreme_points",
    label_case="WeakAnnotateLib.methods.extreme_points.segmenter:label_case",
    training_methods=(EXTREME_POINT_NETWORK,),
    module="ExtremePointSeg",
    command="WeakAnnotateLib.methods.extreme_points.command",
    web_mode="extreme",
    selftests="WeakAnnotateLib.methods.extreme_points.selftests:SELFTESTS",
    order=10,
)
