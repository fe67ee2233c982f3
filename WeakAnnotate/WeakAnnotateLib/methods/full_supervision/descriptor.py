"""Full supervision: the reference masks themselves, the upper bound every weak method is compared with."""

from __future__ import annotations

from typing import Any

from ..base import AnnotationMethod, TrainingMethodInfo


def needs_reference(entry: Any, spec: Any) -> str:
    if entry.reference:
        return ""
    return f"dataset: case {entry.id!r} has no reference mask; full supervision needs one per training case."


FULL_SUPERVISION = TrainingMethodInfo(
    name="full_supervision",
    title="Full supervision",
    help="3D U-Net trained on the reference masks (Dice loss): the upper bound for the weak methods.",
    trainer="WeakAnnotateLib.methods.full_supervision.training:FullSupervision",
    reference=True,
    case_check=needs_reference,
)

METHOD = AnnotationMethod(
    name="full_supervision",
    title="Full masks (reference)",
    annotation="reference",
    help="A complete mask per case, painted or imported: what the weak marks replace.",
    training_methods=(FULL_SUPERVISION,),
    order=90,
)
