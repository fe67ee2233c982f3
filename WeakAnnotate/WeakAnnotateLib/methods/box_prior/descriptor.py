"""Boxes with the tightness prior: a 2.5D network trained from boxes with log-barrier constraints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.errors import InputError
from ..base import AnnotationMethod, TrainingMethodInfo, option

BOX_SOURCES = ("auto", "tight_slices", "box_3d", "annotation")
TIGHTNESS_MODES = ("2d", "3d", "2d+3d")


@dataclass
class BoxPriorOptions:
    """The ``box_prior`` section of a job spec (Kervadec et al., eq. 6)."""

    box_source: str = option("auto", "Boxes: tight_slices / box_3d of the reference, the case's annotation, or "
                             "auto (annotation, else the reference's tight slices).", choices=BOX_SOURCES)  # fmt: skip
    box_margin_vox: int = option(0, "Grow every box by this many crop voxels per side (paper's sensitivity: 10).",
                                 minimum=0)  # fmt: skip
    tightness: str = option("2d", "2d: bands per slice (paper); 3d: slabs of planes along 3 axes; 2d+3d: both.",
                            choices=TIGHTNESS_MODES)  # fmt: skip
    background: str = option("emptiness", "L_O outside the boxes: emptiness (paper's choice) or masked_ce.",
                             choices=("emptiness", "masked_ce"))  # fmt: skip
    tightness_lambda: float = option(1e-4, "λ of eq. 6 (paper: 1e-4).", minimum=0.0)
    size_epsilon: float = option(0.5, "Lower size bound ε·|box| (the paper gives no ε; 0.1 collapses).")
    entropy_weight: float = option(0.0, "Our addition: binary entropy inside the boxes (0 = the paper's eq. 6).",
                                   minimum=0.0)  # fmt: skip
    emptiness_tolerance: float = option(1.0, "Foreground pixels per slice allowed outside the box (paper: 0).",
                                        minimum=0.0)  # fmt: skip
    barrier_growth: float = option(1.1, "t = 5·barrier_growth^epoch (paper: 1.1 per epoch).")


def check_box_prior(spec: Any) -> None:
    o = spec.options
    if not 0.0 <= o.size_epsilon <= 1.0:
        raise InputError(f"size_epsilon: must be in [0, 1], got {o.size_epsilon}.")
    if o.barrier_growth < 1.0:
        raise InputError(f"barrier_growth: t must not shrink; use a factor ≥ 1, got {o.barrier_growth}.")


def needs_boxes(entry: Any, spec: Any) -> str:
    source = spec.options.box_source
    boxed = "slice_boxes" in entry.annotations or any(k.startswith("box") for k in entry.annotations)
    if source == "annotation" and not boxed:
        return f"dataset: case {entry.id!r} has no slice_boxes or box annotation (box_source: annotation)."
    if source in ("tight_slices", "box_3d") and not entry.reference:
        return f"dataset: case {entry.id!r} has no reference mask to take {source} boxes from."
    if source == "auto" and not boxed and not entry.reference:
        return f"dataset: case {entry.id!r} has no box annotation and no reference to take boxes from."
    return ""


BOX_PRIOR = TrainingMethodInfo(
    name="box_prior",
    title="Boxes + tightness prior",
    help="2.5D residual U-Net from boxes: tightness prior, emptiness and size bounds as log-barriers.",
    options=BoxPriorOptions,
    trainer="WeakAnnotateLib.methods.box_prior.training:BoxPrior",
    network="unet_2.5d",
    case_check=needs_boxes,
    spec_check=check_box_prior,
)

METHOD = AnnotationMethod(
    name="box_prior",
    title="Boxes (tightness prior)",
    annotation="slice_boxes",
    help="A box per slice (or one 3D box): every band across a box crosses the object.",
    simulate="WeakAnnotateLib.evaluation.simulate:slice_boxes",
    training_methods=(BOX_PRIOR,),
    module="BoxCorrection",
    order=40,
)
