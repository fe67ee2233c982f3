"""Box mode: two opposite corners → an ROI and its voxels as a new segment "<object> — box"; *Correct boxes*
(``serve --box-model``) tightens the box slice by slice with the patch classifier into two more segments,
"<object> — raw boxes" and "<object> — corrected". Each keeps a copy of its box; the corrected one also the
slice boxes document, which *Save* writes beside it as ``<name>_slice_boxes.json``."""

from __future__ import annotations

from typing import Any

import numpy as np
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.evaluation.simulate import box_mask
from WeakAnnotateLib.methods.box_correction.classifier import apply_to_nodes, modality_warnings
from WeakAnnotateLib.scene.markups_io import check_box
from WeakAnnotateLib.scene.mrml_adapter import (
    Box,
    add_roi_node,
    box_of_node,
    image_of_node,
    points_of_node,
    remove_node,
    set_segment_mask,
)

from ..segments import NAME_DASH, SegmentRecord
from .base import Mode, SavePlan, register

BOX_CORNERS = 2
NO_BOX_MODEL_MESSAGE = "Correcting boxes needs a trained classifier: start the server with --box-model FOLDER."
SLICE_BOXES_SUFFIX = "_slice_boxes.json"  # Save: <name>_slice_boxes.json beside <name>.mrk.json


def _corner_box(corners: np.ndarray) -> Box:
    """The axis-aligned box with two opposite corners at ``corners`` (2 x 3 RAS)."""
    return Box(center=corners.mean(axis=0), size=np.abs(corners[1] - corners[0]), axes=np.eye(3))


@register
class BoxCorrectionMode(Mode):
    method_name = "box_correction"
    label_format = "C%d"
    color = (1.0, 1.0, 0.0)
    save_name = "box"
    action = "Make box"
    points_what = "box corners"

    def __init__(self, app: Any, method: Any) -> None:
        super().__init__(app, method)
        self.roi_node: Any = None  # the ROI made from the two corners
        self.box_model = app.box_model  # a BoxCorrectionModel (serve --box-model) or None
        self.box_model_path = app.box_model_path
        self.state.box_model_loaded = self.box_model is not None
        self.state.no_box_model_message = NO_BOX_MODEL_MESSAGE
        self.state.box_bounds = []
        self.drag_error = ""  # a corner dragged off the image: the message describe_points shows next

    @property
    def hint(self) -> str:
        return "Click two opposite corners of a box around the object (on different slices), then 'Make box'."

    def count_text(self, n: int) -> str:
        return f"{n} / {BOX_CORNERS} corners"

    def describe_points(self, n: int) -> tuple[str, str]:
        error, self.drag_error = self.drag_error, ""
        if n > BOX_CORNERS:
            error = f"A box needs 2 corners, got {n}. Press Undo (Ctrl+Z) to remove the last one."
        box = self.box()
        if n == BOX_CORNERS and box is not None:
            size = " x ".join(f"{v:.1f}" for v in box.size)
            return f"Box {size} mm. Drag a corner to resize it; 'Make box' fills it as a new segment.", error
        return f"{n} / {BOX_CORNERS} corners placed." + (" Press 'Make box'." if n == BOX_CORNERS else ""), error

    def build_ui(self) -> None:
        v3.VBtn(
            "Make box",
            click=self.make_box,
            id="make-box",
            color="primary",
            block=True,
            disabled=("!case_id || busy",),
        )
        with html.Div(classes="mt-2"):
            v3.VBtn(
                "Correct boxes",
                click=self.correct_boxes,
                id="correct-boxes",
                color="secondary",
                block=True,
                disabled=("!case_id || busy || !box_model_loaded",),
                title=("box_model_loaded ? 'Tighten the box slice by slice' : no_box_model_message",),
            )
            html.Div(
                "{{ no_box_model_message }}",
                v_if=("!box_model_loaded",),
                classes="text-caption mt-1",
                id="no-box-model",
            )

    def show(self, visible: bool) -> None:
        super().show(visible)
        if self.roi_node is not None:
            self.roi_node.GetDisplayNode().SetVisibility(visible)

    def case_closed(self) -> None:
        remove_node(self.app.slicer.scene, self.roi_node)
        self.roi_node = None
        self.publish_box()

    def box(self) -> Box | None:
        """The ROI shown now (None: no box yet)."""
        return box_of_node(self.roi_node) if self.roi_node is not None else None

    def set_box(self, box: Box | None) -> None:
        """Show ``box`` as the ROI (None: none); undo and redo put boxes back this way."""
        remove_node(self.app.slicer.scene, self.roi_node)
        self.roi_node = add_roi_node(self.app.rt, box, "box") if box is not None else None
        if self.roi_node is not None:
            self.roi_node.GetDisplayNode().SetVisibility(self.state.mode == self.key)
        self.publish_box()

    def publish_box(self) -> None:
        """``box_bounds``: the box's lowest and highest RAS corner in mm ([] without a box), for the page and tests."""
        box = self.box()
        bounds: list[list[float]] = []
        if box is not None:
            half = np.abs(box.axes) @ (np.asarray(box.size, float) / 2)
            bounds = [(box.center - half).tolist(), (box.center + half).tolist()]
        with self.state:
            self.state.box_bounds = bounds

    def points_moved(self, before: np.ndarray, after: np.ndarray) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """A corner of the shown box dragged (its two corner points, the box's handles, still the box's): the box
        follows, in the same undoable action. The box's segment stays as made: 'Make box' again fills the new box."""
        old = self.box()
        if old is None or len(before) != BOX_CORNERS or len(after) != BOX_CORNERS or np.array_equal(before, after):
            return {}, {}  # no box, not a move, or nothing moved (the app asks after every change, undo's too)
        made = _corner_box(before)
        if not (np.allclose(made.center, old.center, atol=1e-3) and np.allclose(made.size, old.size, atol=1e-3)):
            return {}, {}  # the box was made from other corners (since undone or moved): leave it
        box = _corner_box(after)
        try:
            check_box(box, image_of_node(self.app.volume_node).geometry)
        except InputError as e:  # shown by describe_points, which the app calls next
            self.drag_error = f"{e} The box stays as it was; drag the corner back or press Undo (Ctrl+Z)."
            return {}, {}
        self.set_box(box)
        return {("roi",): old}, {("roi",): self.box()}

    # --- the box ---------------------------------------------------------------------------------------

    def make_box(self) -> None:
        """An axis-aligned ROI spanning the two corners, and its voxels as a segment."""
        if self.app.case is None:
            return
        try:
            self.show_box()
        except InputError as e:
            self.app.report(error=str(e))

    def show_box(self) -> None:
        app = self.app
        corners, _ = points_of_node(self.points_node)
        if len(corners) != BOX_CORNERS:
            raise InputError(f"A box needs 2 corners, got {len(corners)}: click two opposite corners.")
        image = image_of_node(app.volume_node)
        box = _corner_box(corners)
        check_box(box, image.geometry)
        mask = box_mask(box, image.geometry)
        if not mask.any():
            raise InputError("The box contains no voxel centre of the image; click its corners on the image.")
        name = app.segments.result_name("box")
        with app.change("Make box", roi=True):
            self.set_box(box)
            segment_id = set_segment_mask(
                app.rt, app.segmentation_node, mask, image.geometry, name, app.segments.new_color(name)
            )
            app.segments.adopt(segment_id, SegmentRecord("box", self.key, points=corners.copy(), box=box))
        size = " x ".join(f"{v:.1f}" for v in box.size)
        app.report(status=f"Box {size} mm: segment '{name}' ({int(mask.sum())} voxels).")
        app.render_views()

    # --- box correction -------------------------------------------------------------------------------

    async def correct_boxes(self) -> None:
        """Tighten the current box slice by slice (``box_correction.apply_to_nodes``); the raw and corrected
        slice boxes appear as two segments."""
        app = self.app
        if app.case is None:
            return
        if self.box_model is None:
            app.report(error=NO_BOX_MODEL_MESSAGE)
            return
        if self.roi_node is None:
            app.report(error="No box yet: place two corners and press 'Make box', then 'Correct boxes'.")
            return
        await app.show_busy("Correcting the box slice by slice…")
        try:
            self.show_correction()
        except InputError as e:
            app.report(error=str(e))
        finally:
            app.set_busy(False)

    def show_correction(self) -> None:
        app = self.app
        obj = (self.state.segment_name if isinstance(self.state.segment_name, str) else "").strip() or "object"
        base, n = f"{obj} {NAME_DASH}", 2
        taken = {app.segments.name(s) for s in app.segments.ids()}
        while f"{base} raw boxes" in taken or f"{base} corrected" in taken:
            base, n = f"{obj} {NAME_DASH} ({n})", n + 1
        box = box_of_node(self.roi_node)
        with app.change("Correct boxes"):
            result, ids = apply_to_nodes(
                app.rt, app.volume_node, self.roi_node, app.segmentation_node, self.box_model, name=base
            )
            # apply_to_nodes checks the box's intensities; the case's modality against the training modalities here
            result.warnings.extend(
                w for w in modality_warnings(self.box_model, np.empty(0), app.case.modality) if w not in result.warnings
            )
            document = result.to_json(
                image=app.case.id,
                model=self.box_model.info.get("name", self.box_model_path),
                patch_size=self.box_model.params.patch_size,
            )
            app.segments.adopt(ids["raw"], SegmentRecord("box_raw", self.key, box=box), activate=False)
            app.segments.adopt(
                ids["corrected"],
                SegmentRecord("box_corrected", self.key, box=box, documents=[(SLICE_BOXES_SUFFIX, document)]),
            )
        status = f"Corrected {len(result.slices)} slice boxes in {result.seconds:.2f} s."
        status += "".join(f" Warning: {w}" for w in result.warnings)
        app.report(status=status)
        app.render_views()

    # --- save -----------------------------------------------------------------------------------------

    def save_plan(self, name: str) -> SavePlan:
        """Without a segment: the ROI as ``<name>.mrk.json`` when there is one, else the corners."""
        if self.roi_node is not None and self.box() is not None:
            return SavePlan(self.roi_node)
        return SavePlan(self.points_node)
