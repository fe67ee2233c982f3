"""PET lesions from boxes (Afshari et al.): networks trained from lesion boxes with the modified Dice and the
Mumford–Shah loss, and the same network on the contours as the paper's upper bound L_FS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...core.errors import InputError
from ...networks.model_files import model_paths
from ..base import AnnotationMethod, TrainingMethodInfo, option
from .boxes import DEFAULT_MARGIN_MM


@dataclass
class PetBoxOptions:
    """The section of the three pet_box methods (the paper's formulas (1)–(7))."""

    init_model: str = option("", "A finished pet_box_dice job whose weights start this one (required by "
                             "pet_box_mdice_ms, as in the paper); \"\" = random initialisation.")  # fmt: skip
    box_margin_mm: float = option(DEFAULT_MARGIN_MM, "Boxes simulated from the reference: tight box + this, in mm "
                                  "(box Dice ≈ 0.28, as the paper's).", minimum=0.0)  # fmt: skip
    mdice_alpha: float = option(0.1, "α of the modified Dice's Heaviside switch.")
    mdice_weight: float = option(10.0, "β: weight of the modified Dice.", minimum=0.0)
    ms_weight: float = option(1.0, "λ: weight of the Mumford–Shah loss (0 = modified Dice alone).", minimum=0.0)
    ms_epsilon: float = option(0.03, "ε of the regularised Heaviside.")
    ms_omega: list[float] = option([1.0, 3.0], "ω1, ω2: weights of the inside and outside terms.")
    suv_zscore: bool = option(False, "Input = raw SUV z-scored over the crop (paper); off = percentile + window.")


def check_pet_box(spec: Any) -> None:
    o = spec.options
    if not 0.0 <= o.mdice_alpha < 1.0:
        raise InputError(f"mdice_alpha: must be in [0, 1), got {o.mdice_alpha}.")
    if o.ms_epsilon <= 0:
        raise InputError(f"ms_epsilon: must be > 0, got {o.ms_epsilon}.")
    if len(o.ms_omega) != 2:
        raise InputError(f"ms_omega: two weights [ω1, ω2] are needed, got {o.ms_omega}.")
    if spec.method == "pet_box_mdice_ms" and not o.init_model:
        raise InputError(
            "init_model: pet_box_mdice_ms starts from a finished pet_box_dice job (the paper initialises the "
            "Mumford–Shah network with the box-trained one); train pet_box_dice first and name its job folder."
        )
    if o.init_model:
        weights, info = model_paths(spec.resolve(o.init_model))
        if not info.is_file() or not weights.is_file():
            raise InputError(f"init_model: {spec.resolve(o.init_model)} is not a finished job (no {info.name}).")
        try:
            method = json.loads(info.read_text(encoding="utf-8")).get("method", "")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            method = ""
        if not str(method).startswith("pet_box"):
            raise InputError(f"init_model: {info.parent} is a {method or 'unknown'} job; give a pet_box_dice job.")


def needs_boxes(entry: Any, spec: Any) -> str:
    if entry.reference or any(k.startswith("box") for k in entry.annotations):
        return ""
    return f"dataset: case {entry.id!r} has no box annotation and no reference to simulate boxes from."


def needs_reference(entry: Any, spec: Any) -> str:
    if entry.reference:
        return ""
    return f"dataset: case {entry.id!r} has no reference mask; full supervision needs one per training case."


_COMMON = {"options": PetBoxOptions, "trainer": "WeakAnnotateLib.methods.pet_boxes.training:PetBox",
           "spec_check": check_pet_box}  # fmt: skip

PET_BOX_DICE = TrainingMethodInfo(
    name="pet_box_dice",
    title="PET boxes: Dice",
    help="SELU 3D U-Net trained with plain Dice against the lesion boxes (the paper's L_Dice).",
    case_check=needs_boxes,
    **_COMMON,
)
PET_BOX_MDICE_MS = TrainingMethodInfo(
    name="pet_box_mdice_ms",
    title="PET boxes: modified Dice + Mumford–Shah",
    help="β·L_MDice + λ·L_MS, started from a finished pet_box_dice job (the paper's method).",
    case_check=needs_boxes,
    **_COMMON,
)
PET_BOX_FULL_SUPERVISION = TrainingMethodInfo(
    name="pet_box_full_supervision",
    title="PET boxes: full supervision (L_FS)",
    help="The same network and augmentation trained on the contours: the paper's upper bound.",
    reference=True,
    case_check=needs_reference,
    **_COMMON,
)

METHOD = AnnotationMethod(
    name="pet_boxes",
    title="PET lesion boxes",
    annotation="box",
    help="A loose box around each PET lesion (several per scan); lesions read out with volume and SUVmax.",
    simulate="WeakAnnotateLib.methods.pet_boxes.boxes:lesion_boxes",
    training_methods=(PET_BOX_DICE, PET_BOX_MDICE_MS, PET_BOX_FULL_SUPERVISION),
    order=50,
)
