"""The trame-slicer web app: case picker, slice views, W/L presets, extreme/surface/box modes, training panel.

Only a face: it gathers input (the case, clicks in the slice views, button presses), calls ``WeakAnnotateLib``
(``image_io``, ``mrml_adapter``, ``extreme_points.segment_from_nodes``,
``surface_template.surface_template_from_nodes``, ``markups_io.check_box``, ``simulate.box_mask``,
``segmentation_io``, ``box_correction.apply_to_nodes``) and shows the result. Errors from the logic are
:class:`~WeakAnnotateLib.core.errors.InputError`; their message is shown in the page as is.

Threading: trame runs one asyncio event loop, and VTK/MRML calls hold the GIL. Loading a case, the
extreme-points segmentation and the template fit run in that loop; they take ~0.1-0.6 s on the cropped
catalogue cases on 2 cores (the random walker is the compiled kernel), so the page freezes for that long and
no longer. A busy flag is sent to the page first so it shows a progress bar. A larger volume would need the
computation moved to a worker process (see docs/web_app.md). The training panel (``training_panel.py``)
never blocks the loop: the job is its own process, polled from an asyncio task; datasets and predictions are
made in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from slicer import vtkMRMLMarkupsNode, vtkMRMLSliceNode
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand, vtkObject
from WeakAnnotateLib.core.atomic_files import atomic_output
from WeakAnnotateLib.core.colors import segment_color
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.evaluation.simulate import box_mask
from WeakAnnotateLib.files.cases import Case
from WeakAnnotateLib.files.image_io import read_image
from WeakAnnotateLib.methods.extreme_points.segmenter import segment_from_nodes
from WeakAnnotateLib.methods.surface_template.active_surface import MIN_POINTS
from WeakAnnotateLib.methods.surface_template.nodes import surface_template_from_nodes
from WeakAnnotateLib.scene.markups_io import check_box, check_point_count
from WeakAnnotateLib.scene.mrml_adapter import (
    Box,
    add_roi_node,
    add_segmentation_node,
    add_volume_node,
    box_of_node,
    image_of_node,
    points_of_node,
    remove_node,
    set_segment_mask,
    write_node_file,
)
from WeakAnnotateLib.scene.segmentation_io import write_segmentation
from WeakAnnotateLib.scene.slicer_runtime import SlicerRuntime

from .presets import PRESETS, default_preset, preset
from .training_panel import TrainingPanel
from .workspace import Workspace, safe_name

log = logging.getLogger(__name__)

LAYOUT_ID = "axial-coronal-sagittal"
EXTREME_POINTS = 6
BOX_CORNERS = 2
EXTREME, SURFACE, BOX = "extreme", "surface", "box"  # the annotation modes; each has its own point list
MODE_TEXT = {
    EXTREME: "Click the object's six ends (left/right, front/back, top/bottom) in the slice views.",
    SURFACE: f"Click at least {MIN_POINTS} points on the object's boundary, spread over it, then 'Fit template'.",
    BOX: "Click two opposite corners of a box around the object (on different slices), then 'Make box'.",
}
DEFAULT_SAVE_NAME = {EXTREME: "extreme_points", SURFACE: "surface_points", BOX: "box"}
NO_BOX_MODEL_MESSAGE = "Correcting boxes needs a trained classifier: start the server with --box-model FOLDER."
SLICE_BOXES_SUFFIX_STEM = "_slice_boxes"  # box mode's Save: <name>_slice_boxes.json beside <name>.mrk.json
NO_DATA_MESSAGE = (
    "No dataset: start the server with `weakannotate serve --data DIR`, where DIR holds a cases.json "
    "catalogue (e.g. ../shared/data), or set WEAKANNOTATE_DATA."
)


def _slice_layout() -> Layout:
    """Axial, coronal and sagittal side by side; no 3D view (volume rendering costs 10+ s a click on CPU)."""
    return Layout(
        LayoutDirection.Horizontal,
        [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()],
    )


def _slice_gutter(server: Server, view_id: str, view: Any) -> None:
    """trame-slicer's slice gutter (reset button, slice slider) without its "show in 3D" button: no 3D view here."""
    from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider
    from trame_slicer.app.ui.view_gutter import create_vertical_view_gutter_ui

    create_vertical_view_gutter_ui(server, view_id, view)
    with html.Div(style="position: absolute; bottom: 0; left: 0; width: 100%; background-color: transparent;"):
        Slider(
            classes="slice-slider",
            typed_state=connect_slice_view_slider_to_state(server, view),
            theme="dark",
            dense=True,
        )


class WeakAnnotateWebApp:
    """One browser session's scene: a case, its volume, the extreme points and the segmentation."""

    def __init__(
        self,
        server: Server,
        cases: list[Case],
        workspace: Workspace,
        *,
        data_message: str = "",
        data_dir: str | Path | None = None,
        box_model: Any = None,
        box_model_path: str | Path | None = None,
    ) -> None:
        self.server = server
        self.server.client_type = "vue3"
        self.server.enable_module(trame_slicer_module)
        self.cases = {c.id: c for c in cases}
        self.workspace = workspace
        vtkObject.GlobalWarningDisplayOff()  # the logic reports bad input itself, as one clear message

        self.slicer = SlicerApp()
        self.rt = SlicerRuntime(
            scene=self.slicer.scene,
            app_logic=self.slicer.app_logic,
            volumes_logic=self.slicer.volumes_logic,
            markups_logic=self.slicer.markups_logic._logic,
            segmentations_logic=self.slicer.segmentations_logic,
            terminologies_logic=self.slicer.terminologies_logic,
            headless=True,
        )
        register_rca_factories(
            self.slicer.view_manager, self.server, slice_view_ui_f=_slice_gutter, target_fps=20.0, blur_fps=5.0
        )
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT_ID, _slice_layout())
        self.layout_manager.set_layout(LAYOUT_ID)

        self.case: Case | None = None
        self.volume_node: Any = None
        self.points_nodes: dict[str, Any] = {}
        self.surface: Any = None  # the last fitted ActiveSurface, warm-started by the next fit
        self.roi_node: Any = None  # box mode: the ROI made from the two corners
        self.segmentation_node: Any = None
        self.box_model = box_model  # a BoxCorrectionModel (serve --box-model) or None
        self.box_model_path = str(box_model_path) if box_model_path is not None else ""
        self.box_correction: Any = None  # the last BoxCorrectionResult, for the ROI box it was computed on
        self.box_correction_box: Box | None = None
        self.box_segment_ids: dict[str, str] = {}  # "raw"/"corrected" segment IDs of that result
        self._observed: list[tuple[Any, int]] = []

        s = self.state
        s.trame__title = "WeakAnnotate"
        s.case_ids = sorted(self.cases)
        s.case_id = None
        s.data_message = data_message if not self.cases else ""
        s.wl_presets = [p.name for p in PRESETS]
        s.wl_preset = PRESETS[0].name
        s.mode = EXTREME
        s.mode_text = MODE_TEXT[EXTREME]
        s.min_surface_points = MIN_POINTS
        s.n_points = 0
        s.placing = False
        s.busy = False
        s.status = "Pick a case." if self.cases else ""
        s.error = ""
        s.save_name = "extreme_points"
        s.segment_name = ""
        s.work_folder = str(workspace.root)
        s.view_geometry = {}
        s.box_model_loaded = box_model is not None
        s.no_box_model_message = NO_BOX_MODEL_MESSAGE
        s.change("case_id")(self._on_case_id)
        s.change("wl_preset")(self._on_wl_preset)
        s.change("mode")(self._on_mode)
        self.training = TrainingPanel(self, data_dir)
        self._observe_slice_nodes()
        self._build_ui()

    @property
    def state(self) -> Any:
        return self.server.state

    @property
    def points_node(self) -> Any:
        """The point list of the current mode (extreme points or surface points)."""
        return self.points_nodes.get(self.state.mode if self.state.mode in MODE_TEXT else EXTREME)

    # --- page -----------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, theme="dark") as layout:
            layout.title.set_text("WeakAnnotate")
            layout.root.theme = "dark"
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ case_id || '' }}", classes="text-caption mr-4", id="current-case")
                v3.VProgressLinear(
                    indeterminate=True, absolute=True, location="bottom", v_show=("busy || trame__busy",), color="amber"
                )
            with layout.drawer as drawer:
                drawer.width = 330
                with v3.VContainer(classes="pa-3"):
                    v3.VAlert(
                        "{{ data_message }}", v_if=("data_message",), type="info", id="no-data", density="compact"
                    )
                    v3.VAutocomplete(
                        label="Case",
                        v_model=("case_id",),
                        items=("case_ids",),
                        density="compact",
                        id="case-picker",
                        disabled=("busy",),
                        v_if=("case_ids.length",),
                    )
                    v3.VSelect(
                        label="Window / level",
                        v_model=("wl_preset",),
                        items=("wl_presets",),
                        density="compact",
                        id="wl-preset",
                        disabled=("!case_id",),
                    )
                    v3.VDivider(classes="my-2")
                    with v3.VBtnToggle(
                        v_model=("mode",),
                        mandatory=True,
                        density="compact",
                        divided=True,
                        variant="outlined",
                        classes="mb-2",
                        disabled=("busy",),
                    ):
                        v3.VBtn("Extreme points", value=EXTREME, id="mode-extreme", size="small")
                        v3.VBtn("Surface points", value=SURFACE, id="mode-surface", size="small")
                        v3.VBtn("Box", value=BOX, id="mode-box", size="small")
                    html.Div("{{ mode_text }}", classes="text-caption mb-2", id="mode-text")
                    with html.Div(classes="d-flex flex-wrap ga-2"):
                        v3.VBtn(
                            "{{ placing ? 'Stop placing' : 'Place points' }}",
                            click=self.toggle_placing,
                            id="place-points",
                            disabled=("!case_id || busy",),
                            color=("placing ? 'amber' : undefined",),
                            size="small",
                        )
                        v3.VBtn(
                            "Undo point",
                            click=self.undo_point,
                            id="undo-point",
                            disabled=("!n_points || busy",),
                            size="small",
                        )
                        v3.VBtn(
                            "Clear",
                            click=self.clear_points,
                            id="clear-points",
                            disabled=("!n_points || busy",),
                            size="small",
                        )
                    html.Div(
                        "{{ n_points }} {{ mode == 'surface' ? '(≥ ' + min_surface_points + ')' : "
                        "(mode == 'box' ? '/ 2 corners' : '/ 6') }} points",
                        classes="text-body-2 my-2",
                        id="point-count",
                    )
                    v3.VBtn(
                        "Segment",
                        click=self.segment,
                        id="segment",
                        color="primary",
                        block=True,
                        disabled=("!case_id || busy",),
                        v_if=("mode == 'extreme'",),
                    )
                    v3.VBtn(
                        "Fit template",
                        click=self.fit_template,
                        id="fit-template",
                        color="primary",
                        block=True,
                        disabled=("!case_id || busy",),
                        v_else_if=("mode == 'surface'",),
                    )
                    v3.VBtn(
                        "Make box",
                        click=self.make_box,
                        id="make-box",
                        color="primary",
                        block=True,
                        disabled=("!case_id || busy",),
                        v_else=True,
                    )
                    with html.Div(v_if=("mode == 'box'",), classes="mt-2"):
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
                    v3.VDivider(classes="my-3")
                    v3.VTextField(label="Annotation name", v_model=("save_name",), density="compact", id="save-name")
                    v3.VBtn("Save", click=self.save, id="save", block=True, disabled=("!case_id || busy",))
                    html.Div("into {{ work_folder }}", classes="text-caption mt-1")
                    v3.VDivider(classes="my-3")
                    v3.VAlert("{{ error }}", v_if=("error",), type="error", density="compact", id="error")
                    html.Div("{{ status }}", classes="text-body-2 mt-2", id="status")
                    v3.VDivider(classes="my-3")
                    self._build_training_ui()
            with layout.content, v3.VContainer(fluid=True, classes="fill-height pa-0"):
                with html.Div(style="width: 100%; height: 100%;", id="views"):
                    self.layout_manager.initialize_layout_grid(layout)
        self.ui = layout

    def _build_training_ui(self) -> None:
        """Train a small model on this case and 1-2 others of its modality; watch, cancel, apply it here."""
        t = self.training
        html.Div("Training", classes="text-subtitle-2 mb-1")
        v3.VSelect(
            label="Method",
            v_model=("train_method",),
            items=("train_methods",),
            density="compact",
            id="train-method",
            disabled=("train_running || train_busy",),
        )
        with html.Div(classes="d-flex ga-2"):
            v3.VTextField(
                label="Epochs",
                v_model=("train_epochs",),
                type="number",
                density="compact",
                id="train-epochs",
                disabled=("train_running || train_busy",),
            )
            v3.VSelect(
                label="Cases",
                v_model=("train_cases",),
                items=("[2, 3]",),
                density="compact",
                id="train-cases",
                disabled=("train_running || train_busy",),
            )
        with html.Div(classes="d-flex flex-wrap ga-2"):
            v3.VBtn(
                "Start training",
                click=t.start,
                id="train-start",
                color="primary",
                size="small",
                disabled=("!case_id || train_running || train_busy",),
            )
            v3.VBtn("Cancel", click=t.cancel, id="train-cancel", size="small", disabled=("!train_running",))
            v3.VBtn(
                "Apply model to this case",
                click=t.apply,
                id="train-apply",
                size="small",
                disabled=("!case_id || !train_model || train_busy || busy",),
            )
        v3.VProgressLinear(
            model_value=("train_progress",),
            height=8,
            color="green",
            classes="my-2",
            id="train-progress",
            indeterminate=("train_busy",),
        )
        html.Div("{{ train_state }} · {{ train_progress }} %", classes="text-caption", id="train-state")
        html.Div(v_html=("train_curve",), id="train-curve", classes="my-1")
        html.Div("loss (amber), validation Dice (green)", classes="text-caption")
        html.Div("{{ train_text }}", classes="text-body-2", id="train-text")
        html.Div("model: {{ train_model }}", v_if=("train_model",), classes="text-caption", id="train-model")
        v3.VAlert("{{ train_error }}", v_if=("train_error",), type="error", density="compact", id="train-error")

    def _report(self, status: str = "", error: str = "") -> None:
        with self.state:
            self.state.status = status
            self.state.error = error

    async def _show_busy(self, status: str) -> None:
        """Tell the page we are busy before a blocking step, so it shows a progress bar rather than freezing."""
        with self.state:
            self.state.busy = True
            self.state.status = status
            self.state.error = ""
        await asyncio.sleep(0.05)

    # --- views ----------------------------------------------------------------------------------------

    def _slice_views(self) -> list[Any]:
        return self.slicer.view_manager.get_slice_views()

    def _observe_slice_nodes(self) -> None:
        """Publish each slice view's XY→RAS and size: the page shows the slice offset; tests map RAS to clicks."""
        for view in self._slice_views():
            node = view.get_view_node()
            node.AddObserver(vtkCommand.ModifiedEvent, lambda *_: self._publish_view_geometry())
        self._publish_view_geometry()

    def _publish_view_geometry(self) -> None:
        geometry = {}
        for view in self._slice_views():
            node: vtkMRMLSliceNode = view.get_view_node()
            m = node.GetXYToRAS()
            geometry[view.get_singleton_tag()] = {
                "xy_to_ras": [m.GetElement(r, c) for r in range(4) for c in range(4)],
                "size": list(view.render_window().GetSize()),
                "dimensions": list(node.GetDimensions()),
                "offset": view.get_slice_value(),
                "orientation": node.GetOrientation(),
            }
        with self.state:
            self.state.view_geometry = geometry

    def _show_volume(self) -> None:
        for view in self._slice_views():
            view.set_background_volume_id(self.volume_node.GetID())
            view.set_foreground_volume_id(None)
            view.fit_view_to_content()
            view.schedule_render()

    def _on_wl_preset(self, wl_preset: str, **_: Any) -> None:
        if self.volume_node is None:
            return
        display = self.volume_node.GetDisplayNode()
        chosen = preset(wl_preset)
        if chosen.window is None:
            display.AutoWindowLevelOn()
        else:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(chosen.window, chosen.level)

    # --- case -----------------------------------------------------------------------------------------

    def _remove_case_nodes(self) -> None:
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []
        for node in (*self.points_nodes.values(), self.roi_node, self.segmentation_node, self.volume_node):
            remove_node(self.slicer.scene, node)
        self.points_nodes = {}
        self.roi_node = None
        self._forget_box_correction()
        self.surface = None
        self.segmentation_node = self.volume_node = None
        self.case = None

    async def _on_case_id(self, case_id: str | None, **_: Any) -> None:
        if not case_id or (self.case is not None and self.case.id == case_id):
            return
        case = self.cases.get(case_id)
        if case is None:  # the page can only name catalogue cases; anything else is refused
            self._report(error=f"No case {case_id!r} in the catalogue.")
            self._restore_case_id()
            return
        await self._show_busy(f"Loading {case.id}…")
        try:
            self.open_case(case)
        except InputError as e:
            self._report(error=str(e))
            self._restore_case_id()
        finally:
            with self.state:
                self.state.busy = False

    def _restore_case_id(self) -> None:
        """Show the case that is actually open again after a refused or failed switch."""
        with self.state:
            self.state.case_id = self.case.id if self.case is not None else None

    def open_case(self, case: Case) -> None:
        """Replace the scene's case: volume, an empty extreme-points list, an empty segmentation."""
        self.disable_placing()
        image = read_image(case.image)  # InputError before the scene is touched
        self._remove_case_nodes()
        self.volume_node = add_volume_node(self.rt, image, case.id)
        self.segmentation_node = add_segmentation_node(self.rt, f"{case.id} segmentation", self.volume_node)
        self.segmentation_node.GetDisplayNode().SetOpacity2DFill(0.35)  # the image stays readable under it
        for mode, label, color in ((EXTREME, "P%d", None), (SURFACE, "S%d", (0.3, 0.8, 1.0)), (BOX, "C%d", (1, 1, 0))):
            node = self.slicer.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{mode} points")
            node.CreateDefaultDisplayNodes()
            node.SetMarkupLabelFormat(label)
            if color is not None:
                node.GetDisplayNode().SetSelectedColor(*color)
            node.GetDisplayNode().SetVisibility(mode == self.state.mode)
            for event in (
                vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                vtkMRMLMarkupsNode.PointRemovedEvent,
                vtkMRMLMarkupsNode.PointEndInteractionEvent,
            ):
                self._observed.append((node, node.AddObserver(event, self._on_points_changed)))
            self.points_nodes[mode] = node
        self.case = case
        labels = list(case.labels.values())
        name = labels[0] if len(labels) == 1 else "object"
        with self.state:
            self.state.case_id = case.id
            self.state.segment_name = name
            self.state.n_points = 0
            self.state.wl_preset = default_preset(case.modality)
            self.state.status = f"Opened {case.id} ({case.modality}). Press 'Place points' and click in the views."
            self.state.error = ""
        self._on_wl_preset(self.state.wl_preset)
        self._show_volume()
        self._publish_view_geometry()

    # --- extreme points -------------------------------------------------------------------------------

    def _on_mode(self, mode: str, **_: Any) -> None:
        """Switch the point list that clicks go to; each mode keeps its own points."""
        if mode not in MODE_TEXT:
            with self.state:
                self.state.mode = EXTREME
            return
        was_placing = self.state.placing
        self.disable_placing()
        for m, node in self.points_nodes.items():
            node.GetDisplayNode().SetVisibility(m == mode)
        if self.roi_node is not None:
            self.roi_node.GetDisplayNode().SetVisibility(mode == BOX)
        with self.state:
            self.state.mode_text = MODE_TEXT[mode]
            if self.state.save_name in DEFAULT_SAVE_NAME.values():
                self.state.save_name = DEFAULT_SAVE_NAME[mode]
        self._on_points_changed()
        if was_placing:
            self.toggle_placing()
        for view in self._slice_views():
            view.schedule_render()

    def _on_points_changed(self, *_: Any) -> None:
        n = self._defined_points()
        error = ""
        if self.state.mode == SURFACE:
            with self.state:
                self.state.n_points = n
                self.state.error = ""
                if n:
                    self.state.status = f"{n} surface points placed." + (
                        " Press 'Fit template'." if n >= MIN_POINTS else f" At least {MIN_POINTS} are needed."
                    )
            return
        if self.state.mode == BOX:
            if n > BOX_CORNERS:
                error = f"A box needs 2 corners, got {n}. Press 'Undo point' to remove the last one."
            with self.state:
                self.state.n_points = n
                self.state.error = error
                if not error and n:
                    self.state.status = f"{n} / {BOX_CORNERS} corners placed." + (
                        " Press 'Make box'." if n == BOX_CORNERS else ""
                    )
            return
        if n > EXTREME_POINTS:
            try:
                check_point_count(n, count=EXTREME_POINTS, what="extreme points")
            except InputError as e:
                error = f"{e} Press 'Undo point' to remove the last one."
        with self.state:
            self.state.n_points = n
            self.state.error = error
            if not error and n:
                self.state.status = f"{n} / {EXTREME_POINTS} points placed." + (
                    " Press Segment." if n == EXTREME_POINTS else ""
                )

    def _defined_points(self) -> int:
        node = self.points_node
        if node is None:
            return 0
        return sum(
            node.GetNthControlPointPositionStatus(i) == node.PositionDefined
            for i in range(node.GetNumberOfControlPoints())
        )

    def toggle_placing(self) -> None:
        if self.points_node is None:
            return
        if self.state.placing:
            self.disable_placing()
            again = {SURFACE: "Fit template", BOX: "Make box"}.get(self.state.mode, "Segment")
            self._report(status=f"Placing stopped: drag a point to move it, then press {again} again.")
            return
        self.slicer.markups_logic.place_node(self.points_node, persistent=True)
        with self.state:
            self.state.placing = True
            self.state.status = "Click in a slice view to place a point."

    def disable_placing(self) -> None:
        if self.state.placing:
            self.slicer.markups_logic.disable_place_mode()
        with self.state:
            self.state.placing = False

    def undo_point(self) -> None:
        node = self.points_node
        if node is None or node.GetNumberOfControlPoints() == 0:
            return
        node.RemoveNthControlPoint(node.GetNumberOfControlPoints() - 1)
        self._on_points_changed()

    def clear_points(self) -> None:
        if self.points_node is not None:
            self.points_node.RemoveAllControlPoints()
            self._on_points_changed()

    async def segment(self) -> None:
        """Run the ExtremePointSeg pseudo-label on the six points; the segment appears in the views."""
        if self.case is None:
            return
        await self._show_busy("Segmenting…")
        try:
            t0 = time.perf_counter()
            name = self.state.segment_name or "object"
            _, result = segment_from_nodes(
                self.rt, self.volume_node, self.points_node, self.segmentation_node, name, segment_color(name)
            )
            dt = time.perf_counter() - t0
            voxels = int(result.mask.sum())
            self._report(status=f"Segment '{name}': {voxels} voxels in {dt:.2f} s.")
            for view in self._slice_views():
                view.schedule_render()
        except InputError as e:
            self._report(error=str(e))
        finally:
            with self.state:
                self.state.busy = False

    async def fit_template(self) -> None:
        """Fit the active-surface template to the surface points; the segment appears in the views."""
        if self.case is None:
            return
        await self._show_busy("Fitting the template…")
        try:
            t0 = time.perf_counter()
            name = self.state.segment_name or "object"
            _, self.surface = surface_template_from_nodes(
                self.rt,
                self.volume_node,
                self.points_nodes[SURFACE],
                self.segmentation_node,
                name,
                segment_color(name),
                surface=self.surface,
            )
            dt = time.perf_counter() - t0
            self._report(status=f"Template '{name}' fitted to {self._defined_points()} points in {dt:.2f} s.")
            for view in self._slice_views():
                view.schedule_render()
        except InputError as e:
            self._report(error=str(e))
        finally:
            with self.state:
                self.state.busy = False

    def make_box(self) -> None:
        """Box mode: an axis-aligned ROI spanning the two corners, and its voxels as a segment."""
        if self.case is None:
            return
        try:
            self.show_box()
        except InputError as e:
            self._report(error=str(e))

    def show_box(self) -> None:
        corners, _ = points_of_node(self.points_nodes[BOX])
        if len(corners) != BOX_CORNERS:
            raise InputError(f"A box needs 2 corners, got {len(corners)}: click two opposite corners.")
        image = image_of_node(self.volume_node)
        box = Box(center=corners.mean(axis=0), size=np.abs(corners[1] - corners[0]), axes=np.eye(3))
        check_box(box, image.geometry)
        mask = box_mask(box, image.geometry)
        if not mask.any():
            raise InputError("The box contains no voxel centre of the image; click its corners on the image.")
        name = f"{self.state.segment_name or 'object'} box"
        self._forget_box_correction(remove_segments=True)  # its boxes belong to the old box
        remove_node(self.slicer.scene, self.roi_node)
        self.roi_node = add_roi_node(self.rt, box, "box")
        set_segment_mask(self.rt, self.segmentation_node, mask, image.geometry, name, segment_color(name))
        size = " x ".join(f"{v:.1f}" for v in box.size)
        self._report(status=f"Box {size} mm: segment '{name}' ({int(mask.sum())} voxels).")
        for view in self._slice_views():
            view.schedule_render()

    # --- box correction -------------------------------------------------------------------------------

    def _forget_box_correction(self, *, remove_segments: bool = False) -> None:
        """Drop the last correction (a new box or case); optionally remove its two segments from the scene."""
        if remove_segments and self.segmentation_node is not None:
            segmentation = self.segmentation_node.GetSegmentation()
            for segment_id in self.box_segment_ids.values():
                if segmentation.GetSegment(segment_id) is not None:
                    segmentation.RemoveSegment(segment_id)
        self.box_correction = self.box_correction_box = None
        self.box_segment_ids = {}

    async def correct_boxes(self) -> None:
        """Box mode: tighten the current box slice by slice (``box_correction.apply_to_nodes``); the raw and
        corrected slice boxes appear as two segments."""
        if self.case is None:
            return
        if self.box_model is None:
            self._report(error=NO_BOX_MODEL_MESSAGE)
            return
        if self.roi_node is None:
            self._report(error="No box yet: place two corners and press 'Make box', then 'Correct boxes'.")
            return
        await self._show_busy("Correcting the box slice by slice…")
        try:
            self.show_box_correction()
        except InputError as e:
            self._report(error=str(e))
        finally:
            with self.state:
                self.state.busy = False

    def show_box_correction(self) -> None:
        from WeakAnnotateLib.methods.box_correction.classifier import apply_to_nodes, modality_warnings

        name = self.state.segment_name or "object"
        box = box_of_node(self.roi_node)
        self._forget_box_correction(remove_segments=True)
        result, ids = apply_to_nodes(
            self.rt, self.volume_node, self.roi_node, self.segmentation_node, self.box_model, name=name
        )
        # apply_to_nodes checks the box's intensities; the case's modality against the training modalities here
        result.warnings.extend(
            w for w in modality_warnings(self.box_model, np.empty(0), self.case.modality) if w not in result.warnings
        )
        self.box_correction, self.box_correction_box, self.box_segment_ids = result, box, ids
        status = f"Corrected {len(result.slices)} slice boxes in {result.seconds:.2f} s."
        status += "".join(f" Warning: {w}" for w in result.warnings)
        self._report(status=status)
        for view in self._slice_views():
            view.schedule_render()

    def _slice_boxes_document(self) -> dict[str, Any] | None:
        """The corrected boxes of the current ROI as ``BoxCorrectionResult.to_json``; None without a correction.
        A box moved since 'Correct boxes' is an :class:`InputError` (the boxes would belong to the old one)."""
        if self.box_correction is None or self.roi_node is None:
            return None
        box, old = box_of_node(self.roi_node), self.box_correction_box
        if not (np.allclose(box.center, old.center, atol=1e-3) and np.allclose(box.size, old.size, atol=1e-3)):
            raise InputError("The box changed since 'Correct boxes': press 'Correct boxes' again before saving.")
        return self.box_correction.to_json(
            image=self.case.id,
            model=self.box_model.info.get("name", self.box_model_path),
            patch_size=self.box_model.params.patch_size,
        )

    # --- save -----------------------------------------------------------------------------------------

    async def save(self) -> None:
        """Write ``<name>.mrk.json`` and ``<name>.seg.nrrd`` (box mode, after 'Correct boxes', also
        ``<name>_slice_boxes.json``) into the case's folder inside the work folder."""
        if self.case is None:
            return
        await self._show_busy("Saving…")
        try:
            written = self.save_annotations(self.state.save_name)
            self._report(status="Saved " + ", ".join(self.workspace.relative(p) for p in written) + ".")
        except InputError as e:
            self._report(error=str(e))
        finally:
            with self.state:
                self.state.busy = False

    def save_annotations(self, name: str) -> list[Path]:
        """All files or none: the segmentation first, the points (box mode: the ROI, then the corrected slice
        boxes ``<name>_slice_boxes.json`` if 'Correct boxes' was run); a failure removes what was written."""
        name = safe_name(name, "annotation name")
        if self._defined_points() == 0:
            what = {SURFACE: "surface points", BOX: "box corners"}.get(self.state.mode, "extreme points")
            raise InputError(f"Nothing to save: place the {what} first.")
        points_path = self.workspace.path(self.case.id, name, ".mrk.json")
        seg_path = self.workspace.path(self.case.id, name, ".seg.nrrd")
        box_mode = self.state.mode == BOX
        boxes_path = self.workspace.path(self.case.id, f"{name}{SLICE_BOXES_SUFFIX_STEM}", ".json")
        boxes_doc = self._slice_boxes_document() if box_mode else None  # refused before anything is written
        self.workspace.case_folder(self.case.id, create=True)
        written: list[Path] = []
        try:
            if self.segmentation_node.GetSegmentation().GetNumberOfSegments():
                written.append(write_segmentation(seg_path, self.segmentation_node))
            if box_mode and self.roi_node is None:
                raise InputError("Nothing to save: press 'Make box' first.")
            written.append(write_node_file(self.roi_node if box_mode else self.points_node, points_path))
            if boxes_doc is not None:
                with atomic_output(boxes_path) as tmp:
                    tmp.write_text(json.dumps(boxes_doc, indent=1), encoding="utf-8")
                written.append(boxes_path)
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        if box_mode and boxes_doc is None:
            boxes_path.unlink(missing_ok=True)  # an earlier save's corrected boxes belong to another box
        return written


def create_app(
    data_dir: str | Path | None,
    work_dir: str | Path,
    *,
    case_id: str | None = None,
    server: Server | None = None,
    box_model: Any = None,
    box_model_path: str | Path | None = None,
) -> WeakAnnotateWebApp:
    """Build the app for a dataset folder; without a catalogue the page says how to point it at data.
    ``box_model`` (a loaded ``BoxCorrectionModel``) enables 'Correct boxes' in box mode."""
    from trame.app import get_server
    from WeakAnnotateLib.files.cases import load_cases

    try:
        cases, message = load_cases(data_dir), ""
    except InputError as e:
        if data_dir is not None:
            raise
        cases, message = [], f"{NO_DATA_MESSAGE} ({e})"
    app = WeakAnnotateWebApp(
        server or get_server("weakannotate"),
        cases,
        Workspace(work_dir),
        data_message=message,
        data_dir=data_dir,
        box_model=box_model,
        box_model_path=box_model_path,
    )
    if case_id is not None:
        if case_id not in app.cases:
            from WeakAnnotateLib.files.cases import find_case

            find_case(case_id, data_dir)  # raises the catalogue's own message, with suggestions
        app.open_case(app.cases[case_id])
    return app
