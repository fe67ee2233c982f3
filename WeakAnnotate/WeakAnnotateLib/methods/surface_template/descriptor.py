"""SurfaceTemplate: points on the surface → the active-surface template → Weak-Net."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.errors import InputError
from ..base import AnnotationMethod, TrainingMethodInfo, option


@dataclass
class WeakNetOptions:
    """The ``weak_net`` section of a job spec (the paper's eq. 1)."""

    weak_net_lambda: float = option(1e-4, "λ of L = CE + λ·MSE (paper: 1e-4); 0 = the template-alone ablation.",
                                    minimum=0.0)  # fmt: skip
    weak_net_distance_mm: float = option(4.0, "d: the MSE weight is high within d mm of the template's boundary.")
    weak_net_threshold: float = option(0.5, "γ: U-Net 1's output is thresholded at this at inference.")


def check_weak_net(spec: Any) -> None:
    o = spec.options
    if o.weak_net_lambda < 0:
        raise InputError(f"weak_net_lambda: must be ≥ 0 (0 = template alone), got {o.weak_net_lambda}.")
    if o.weak_net_distance_mm <= 0:
        raise InputError(f"weak_net_distance_mm: must be > 0, got {o.weak_net_distance_mm}.")
    if not 0.0 < o.weak_net_threshold < 1.0:
        raise InputError(f"weak_net_threshold: must be in (0, 1), got {o.weak_net_threshold}.")


def needs_surface_points(entry: Any, spec: Any) -> str:
    if entry.annotations.get("surface_points"):
        return ""
    return (
        f"dataset: case {entry.id!r} has no surface_points annotation; Weak-Net needs at least 5 "
        "points on the object's surface per training case."
    )


WEAK_NET = TrainingMethodInfo(
    name="weak_net",
    title="Weak-Net",
    help="Two U-Nets (image → mask, mask → image) trained on the surface templates (Weak-Net, eq. 1).",
    options=WeakNetOptions,
    trainer="WeakAnnotateLib.methods.surface_template.weak_net:WeakNet",
    case_check=needs_surface_points,
    spec_check=check_weak_net,
)

METHOD = AnnotationMethod(
    name="surface_template",
    title="Surface points",
    annotation="surface_points",
    help="25–250 points on the object's surface; a sphere deformed through them in real time.",
    simulate="WeakAnnotateLib.evaluation.simulate:surface_points",
    pseudo_label="WeakAnnotateLib.methods.surface_template.active_surface:fit_surface",
    label_case="WeakAnnotateLib.methods.surface_template.nodes:label_case",
    training_methods=(WEAK_NET,),
    module="SurfaceTemplate",
    command="WeakAnnotateLib.methods.surface_template.command",
    web_mode="surface",
    selftests="WeakAnnotateLib.methods.surface_template.selftests:SELFTESTS",
    order=20,
)
