"""BoxCorrection: one 3D box per object; a patch classifier shrinks every slice's box to a tight one."""

from __future__ import annotations

from ..base import AnnotationMethod, TrainingMethodInfo
from .training import METHOD as BOX_PATCH_CLASSIFIER_NAME
from .training import BoxJobSpec

BOX_PATCH_CLASSIFIER = TrainingMethodInfo(
    name=BOX_PATCH_CLASSIFIER_NAME,
    title="Box correction: patch classifier",
    help="2D CNN on p×p patches, trained on a few fully labelled volumes, that tightens each slice's box.",
    standalone="WeakAnnotateLib.methods.box_correction.training:run_box_job",
    standalone_spec=BoxJobSpec,
    network="patch_cnn",
    reference=True,
)

METHOD = AnnotationMethod(
    name="box_correction",
    title="Box (corrected per slice)",
    annotation="box",
    help="One 3D box (ROI) per object; each slice's box is tightened by a patch classifier.",
    simulate="WeakAnnotateLib.evaluation.simulate:tight_box",
    pseudo_label="WeakAnnotateLib.methods.box_correction.classifier:correct_box",
    training_methods=(BOX_PATCH_CLASSIFIER,),
    module="BoxCorrection",
    command="WeakAnnotateLib.methods.box_correction.command",
    web_mode="box",
    selftests="WeakAnnotateLib.methods.box_correction.selftests:SELFTESTS",
    order=30,
)
