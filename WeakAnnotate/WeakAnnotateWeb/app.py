"""The trame-slicer web app: case picker, slice views, W/L presets, the annotation modes, training panel.

Only a face: it gathers input (the case, clicks in the slice views, button presses), calls ``WeakAnnotateLib``
and shows the result. Errors from the logic are :class:`~WeakAnnotateLib.core.errors.InputError`; their
message is shown in the page as is.

The annotation modes are the method registry's annotation methods that have a ``web_mode`` (extreme points,
surface points, box), one file each in :mod:`WeakAnnotateWeb.modes`. This module keeps what they share: the
case, the views, one point list per mode and its observers, *Place points* / *Undo* / *Clear*, *Save* and the
status line. The training panel is :mod:`WeakAnnotateWeb.training_panel`.

Threading: trame runs one asyncio event loop, and VTK/MRML calls hold the GIL. Loading a case, the
extreme-points segmentation and the template fit run in that loop; they take ~0.1-0.6 s on the cropped
catalogue cases on 2 cores (the random walker is the compiled kernel), so the page freezes for that long and
no longer. A busy flag is sent to the page first so it shows a progress bar. A larger volume would need the
computation moved to a worker process (see docs/web_app.md). The training panel never blocks the loop: the
job is its own process, polled from an asyncio task; datasets and predictions are made in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from slicer import vtkMRMLMarkupsNode, vtkMRMLSliceNode
from trame.app import get_server
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
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import Case, default_data_dir, load_cases, open_data_folder
from WeakAnnotateLib.files.image_io import read_image
from WeakAnnotateLib.scene.mrml_adapter import add_segmentation_node, add_volume_node, remove_node, write_node_file
from WeakAnnotateLib.scene.segmentation_io import write_segmentation
from WeakAnnotateLib.scene.slicer_runtime import SlicerRuntime

from .browse_panel import BrowsePanel
from .html_text import attribute_text
from .loop_panel import LoopPanel
from .modes import Mode, page_modes
from .presets import PRESETS, default_preset, preset
from .saved_work import restore_saved_work
from .training_panel import TrainingPanel
from .workspace import Workspace, safe_name

log = logging.getLogger(__name__)

LAYOUT_ID = "axial-coronal-sagittal"
NO_DATA_MESSAGE = (
    "No data folder: start the server with `weakannotate serve --data DIR`, where DIR holds images (NIfTI, "
    "NRRD, MHA, DICOM series) and optionally a cases.json catalogue (docs/catalogue.md), or set WEAKANNOTATE_DATA."
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
    """One browser session's scene: a case, its volume, one point list per mode and the segmentation."""

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
        self.points_nodes: dict[str, Any] = {}  # mode key -> its point list in the open case
        self.segmentation_node: Any = None
        self.box_model = box_model  # a BoxCorrectionModel (serve --box-model) or None; box mode uses it
        self.box_model_path = str(box_model_path) if box_model_path is not None else ""
        self._observed: list[tuple[Any, int]] = []

        self.modes: dict[str, Mode] = {m.key: m for m in page_modes(self)}
        first = next(iter(self.modes.values()))
        s = self.state
        s.trame__title = "WeakAnnotate"
        s.case_ids = sorted(self.cases)
        s.case_id = None
        s.data_message = data_message if not self.cases else ""
        s.wl_presets = [p.name for p in PRESETS]
        s.wl_preset = PRESETS[0].name
        s.mode = first.key
        s.mode_text = first.hint
        s.n_points = 0
        s.point_count = first.count_text(0)
        s.placing = False
        s.busy = False
        s.status = "Pick a case." if self.cases else ""
        s.error = ""
        s.save_name = first.save_name
        s.segment_name = ""
        s.work_folder = str(workspace.root)
        s.view_geometry = {}
        s.change("case_id")(self._on_case_id)
        s.change("wl_preset")(self._on_wl_preset)
        s.change("mode")(self._on_mode)
        self.training = TrainingPanel(self, data_dir)
        self.browse = BrowsePanel(self, data_dir if data_dir is not None else default_data_dir())
        self._observe_slice_nodes()
        self._build_ui()

    @property
    def state(self) -> Any:
        return self.server.state

    @property
    def mode(self) -> Mode:
        """The current annotation mode (the first one if the page sent an unknown key)."""
        return self.modes.get(self.state.mode) or next(iter(self.modes.values()))

    @property
    def points_node(self) -> Any:
        """The point list of the current mode."""
        return self.mode.points_node

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
                    self.browse.build_ui()
                    v3.VSelect(
                        label="Window / level",
                        v_model=("wl_preset",),
                        items=("wl_presets",),
                        density="compact",
                        id="wl-preset",
                        disabled=("!case_id",),
                    )
                    v3.VDivider(classes="my-2")
                    self._build_modes_ui()
                    v3.VDivider(classes="my-3")
                    v3.VTextField(label="Annotation name", v_model=("save_name",), density="compact", id="save-name")
                    v3.VBtn("Save", click=self.save, id="save", block=True, disabled=("!case_id || busy",))
                    html.Div("into {{ work_folder }}", classes="text-caption mt-1")
                    v3.VDivider(classes="my-3")
                    v3.VAlert("{{ error }}", v_if=("error",), type="error", density="compact", id="error")
                    html.Div("{{ status }}", classes="text-body-2 mt-2", id="status")
                    v3.VDivider(classes="my-3")
                    self.training.build_ui()
                    self.loop = LoopPanel(self).build_ui()
            with layout.content, v3.VContainer(fluid=True, classes="fill-height pa-0"):
                with html.Div(style="width: 100%; height: 100%;", id="views"):
                    self.layout_manager.initialize_layout_grid(layout)
        self.ui = layout

    def _build_modes_ui(self) -> None:
        """The mode switch (one chip per mode, the descriptor's title), the shared point controls, and each
        mode's own controls, shown while it is on."""
        with v3.VChipGroup(
            v_model=("mode",),
            mandatory=True,
            column=True,
            selected_class="text-primary",
            classes="mb-1",
            disabled=("busy",),
        ):
            for mode in self.modes.values():
                v3.VChip(
                    mode.title,
                    value=mode.key,
                    id=f"mode-{mode.key}",
                    size="small",
                    variant="outlined",
                    filter=True,
                    title=attribute_text(mode.method.help),
                )
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
        html.Div("{{ point_count }}", classes="text-body-2 my-2", id="point-count")
        for mode in self.modes.values():
            with html.Div(v_if=(f"mode == '{mode.key}'",), id=f"mode-controls-{mode.key}"):
                mode.build_ui()

    def report(self, status: str = "", error: str = "") -> None:
        with self.state:
            self.state.status = status
            self.state.error = error

    async def show_busy(self, status: str) -> None:
        """Tell the page we are busy before a blocking step, so it shows a progress bar rather than freezing."""
        with self.state:
            self.state.busy = True
            self.state.status = status
            self.state.error = ""
        await asyncio.sleep(0.05)

    def set_busy(self, busy: bool) -> None:
        with self.state:
            self.state.busy = busy

    # --- views ----------------------------------------------------------------------------------------

    def slice_views(self) -> list[Any]:
        return self.slicer.view_manager.get_slice_views()

    def render_views(self) -> None:
        for view in self.slice_views():
            view.schedule_render()

    def _observe_slice_nodes(self) -> None:
        """Publish each slice view's XY→RAS and size: the page shows the slice offset; tests map RAS to clicks."""
        for view in self.slice_views():
            node = view.get_view_node()
            node.AddObserver(vtkCommand.ModifiedEvent, lambda *_: self._publish_view_geometry())
        self._publish_view_geometry()

    def _publish_view_geometry(self) -> None:
        geometry = {}
        for view in self.slice_views():
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
        for view in self.slice_views():
            view.set_background_volume_id(self.volume_node.GetID())
            view.set_foreground_volume_id(None)
            view.fit_view_to_content()
            view.schedule_render()

    def _on_wl_preset(self, wl_preset: str, **_: Any) -> None:
        if self.volume_node is None or not isinstance(wl_preset, str):
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
        for node in self.points_nodes.values():
            remove_node(self.slicer.scene, node)
        self.points_nodes = {}
        for mode in self.modes.values():
            mode.case_closed()
        for node in (self.segmentation_node, self.volume_node):
            remove_node(self.slicer.scene, node)
        self.segmentation_node = self.volume_node = None
        self.case = None

    async def _on_case_id(self, case_id: str | None, **_: Any) -> None:
        if not (case_id is None or isinstance(case_id, str)):  # a client sends any JSON: checked, never trusted
            self.report(error=f"case_id: expected a case id (text), got {type(case_id).__name__}.")
            self._restore_case_id()
            return
        if not case_id or (self.case is not None and self.case.id == case_id):
            return
        case = self.cases.get(case_id)
        if case is None:  # the page can only name catalogue cases; anything else is refused
            self.report(error=f"No case {case_id!r} in the catalogue.")
            self._restore_case_id()
            return
        await self.show_busy(f"Loading {case.id}…")
        try:
            self.open_case(case)
        except InputError as e:
            self.report(error=str(e))
            self._restore_case_id()
        finally:
            self.set_busy(False)

    def _restore_case_id(self) -> None:
        """Show the case that is actually open again after a refused or failed switch."""
        with self.state:
            self.state.case_id = self.case.id if self.case is not None else None

    def open_case(self, case: Case) -> None:
        """Replace the scene's case: volume, an empty point list per mode, an empty segmentation."""
        self.disable_placing()
        image = read_image(case.image)  # InputError before the scene is touched
        self._remove_case_nodes()
        self.volume_node = add_volume_node(self.rt, image, case.id)
        self.segmentation_node = add_segmentation_node(self.rt, f"{case.id} segmentation", self.volume_node)
        self.segmentation_node.GetDisplayNode().SetOpacity2DFill(0.35)  # the image stays readable under it
        for mode in self.modes.values():
            node = self.slicer.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{mode.key} points")
            node.CreateDefaultDisplayNodes()
            node.SetMarkupLabelFormat(mode.label_format)
            if mode.color is not None:
                node.GetDisplayNode().SetSelectedColor(*mode.color)
            node.GetDisplayNode().SetVisibility(mode is self.mode)
            for event in (
                vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                vtkMRMLMarkupsNode.PointRemovedEvent,
                vtkMRMLMarkupsNode.PointEndInteractionEvent,
            ):
                self._observed.append((node, node.AddObserver(event, self._on_points_changed)))
            self.points_nodes[mode.key] = node
        self.case = case
        labels = list(case.labels.values())
        name = labels[0] if len(labels) == 1 else "object"
        with self.state:
            self.state.case_id = case.id
            self.state.segment_name = name
            self.state.n_points = 0
            self.state.point_count = self.mode.count_text(0)
            self.state.wl_preset = default_preset(case.modality)
            self.state.status = f"Opened {case.id} ({case.modality}). Press 'Place points' and click in the views."
            self.state.error = ""
        self._on_wl_preset(self.state.wl_preset)
        self._show_volume()
        self._publish_view_geometry()
        restore_saved_work(self)  # what was saved for this case comes back (saved_work.py)

    # --- points ---------------------------------------------------------------------------------------

    def _on_mode(self, mode: str, **_: Any) -> None:
        """Switch the point list that clicks go to; each mode keeps its own points."""
        if not isinstance(mode, str) or mode not in self.modes:
            with self.state:
                self.state.mode = next(iter(self.modes))
            return
        was_placing = self.state.placing
        self.disable_placing()
        current = self.modes[mode]
        for m in self.modes.values():
            m.show(m is current)
        with self.state:
            self.state.mode_text = current.hint
            if self.state.save_name in {m.save_name for m in self.modes.values()}:
                self.state.save_name = current.save_name
        self._on_points_changed()
        if was_placing:
            self.toggle_placing()
        self.render_views()

    def _on_points_changed(self, *_: Any) -> None:
        mode = self.mode
        n = self.defined_points()
        status, error = mode.describe_points(n)
        with self.state:
            self.state.n_points = n
            self.state.point_count = mode.count_text(n)
            self.state.error = error
            if not error and n:
                self.state.status = status

    def defined_points(self) -> int:
        """Points of the current mode's list whose position is defined (not the one being placed)."""
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
            self.report(status=f"Placing stopped: drag a point to move it, then press {self.mode.action} again.")
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

    # --- save -----------------------------------------------------------------------------------------

    async def save(self) -> None:
        """Write ``<name>.mrk.json`` and ``<name>.seg.nrrd`` (and what the mode adds, e.g. box mode's
        ``<name>_slice_boxes.json``) into the case's folder inside the work folder."""
        if self.case is None:
            return
        if not isinstance(self.state.save_name, str):
            self.report(error=f"Annotation name: expected text, got {type(self.state.save_name).__name__}.")
            return
        await self.show_busy("Saving…")
        try:
            written = self.save_annotations(self.state.save_name)
            self.report(status="Saved " + ", ".join(self.workspace.relative(p) for p in written) + ".")
        except InputError as e:
            self.report(error=str(e))
        finally:
            self.set_busy(False)

    def save_annotations(self, name: str) -> list[Path]:
        """All files or none: the segmentation first, then the mode's node (points, or box mode's ROI), then the
        mode's documents; a failure removes what was written. The mode's plan is made (and may refuse) first."""
        name = safe_name(name, "annotation name")
        mode = self.mode
        if self.defined_points() == 0:
            raise InputError(f"Nothing to save: place the {mode.points_what} first.")
        points_path = self.workspace.path(self.case.id, name, ".mrk.json")
        seg_path = self.workspace.path(self.case.id, name, ".seg.nrrd")
        plan = mode.save_plan(name)  # refused before anything is written
        self.workspace.case_folder(self.case.id, create=True)
        written: list[Path] = []
        try:
            if self.segmentation_node.GetSegmentation().GetNumberOfSegments():
                written.append(write_segmentation(seg_path, self.segmentation_node))
            written.append(write_node_file(plan.node, points_path))
            for path, document in plan.documents:
                with atomic_output(path) as tmp:
                    tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
                written.append(path)
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        for path in plan.stale:
            path.unlink(missing_ok=True)
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
    try:
        cases, message = (open_data_folder(data_dir) if data_dir is not None else load_cases()), ""
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
        case = app.cases.get(case_id) or app.browse.case_for_path(case_id)  # an id, or an image's path
        app.open_case(case)
    return app
