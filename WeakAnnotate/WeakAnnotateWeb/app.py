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
import contextlib
import json
import logging
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import vtk
from slicer import vtkMRMLMarkupsNode, vtkMRMLSliceNode, vtkSegmentation
from trame.app import get_server
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
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
from WeakAnnotateLib.files.image_io import Image, read_image
from WeakAnnotateLib.scene.mrml_adapter import (
    add_points_node,
    add_roi_node,
    add_segmentation_node,
    add_volume_node,
    image_of_node,
    points_of_node,
    remove_node,
    write_node_file,
)
from WeakAnnotateLib.scene.segmentation_io import write_segmentation
from WeakAnnotateLib.scene.slicer_runtime import SlicerRuntime

from .browse_panel import BrowsePanel
from .case_modality import CHOICES as MODALITY_CHOICES
from .case_modality import remember_modality, with_chosen_modality
from .corrections import Corrections
from .history import History
from .html_text import attribute_text
from .loop_panel import LoopPanel
from .modes import Mode, page_modes
from .presets import PRESETS, default_preset, preset
from .saved_work import restore_saved_work
from .segments import SegmentList
from .training_panel import TrainingPanel
from .workspace import Workspace, safe_name

log = logging.getLogger(__name__)

LAYOUT_ID = "axial-coronal-sagittal"
# Ctrl+Z / Ctrl+Y (Cmd on a Mac; Ctrl+Shift+Z too) call the page's Undo / Redo, except while typing in a field.
KEYS_SCRIPT = """
if (!window.__weakannotateKeys) {
  window.__weakannotateKeys = true;
  window.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    const k = e.key.toLowerCase();
    if (k === 'z' && !e.shiftKey) { e.preventDefault(); window.trame.trigger('weakannotate_undo'); }
    else if (k === 'y' || (k === 'z' && e.shiftKey)) { e.preventDefault(); window.trame.trigger('weakannotate_redo'); }
  });
}
"""
SAVE_SUFFIXES = (".mrk.json", ".seg.nrrd", "_slice_boxes.json", "_add.mrk.json", "_remove.mrk.json")
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
    # orientation letters at the edges and the slice position, from the geometry the app publishes
    g = f"view_geometry['{view.get_singleton_tag()}']"
    style = "position: absolute; color: #ffd54f; font: 600 13px sans-serif; pointer-events: none; z-index: 2;"
    for n, where in enumerate(
        ("left: 6px; top: 50%;", "right: 6px; top: 50%;", "top: 4px; left: 50%;", "bottom: 34px; left: 50%;")
    ):
        html.Div(f"{{{{ {g} && {g}.labels ? {g}.labels[{n}] : '' }}}}", style=style + where, classes="view-label")
    html.Div(
        f"{{{{ {g} && {g}.position || '' }}}}",
        style=style + "top: 4px; right: 8px; font-weight: 400;",
        classes="view-position",
    )
    with html.Div(style="position: absolute; bottom: 0; left: 0; width: 100%; background-color: transparent;"):
        Slider(
            classes="slice-slider",
            typed_state=connect_slice_view_slider_to_state(server, view),
            theme="dark",
            dense=True,
        )


def _orientation_labels(xy_to_ras: Any, offset: float) -> dict[str, Any]:
    """The letters at a view's left, right, top and bottom edges (R/L, A/P, S/I of the patient) and the slice
    position ("S 12.3 mm"), from the view's XY→RAS: each screen axis's dominant RAS direction."""
    letters = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative, positive) along R, A, S

    def toward(column: int, sign: float) -> str:
        axis = np.array([xy_to_ras.GetElement(r, column) for r in range(3)]) * sign
        k = int(np.argmax(np.abs(axis)))
        return letters[k][int(axis[k] > 0)]

    normal = np.array([xy_to_ras.GetElement(r, 2) for r in range(3)])
    k = int(np.argmax(np.abs(normal)))
    position = offset if normal[k] > 0 else -offset  # the slice's R, A or S coordinate
    return {
        "labels": [toward(0, -1.0), toward(0, 1.0), toward(1, 1.0), toward(1, -1.0)],
        "position": f"{letters[k][1]} {position:.1f} mm",
    }


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
        s.modalities = list(MODALITY_CHOICES)
        s.case_modality = ""
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
        s.change("case_modality")(self._on_modality)
        s.change("mode")(self._on_mode)
        s.error_where = ""  # "": the error is shown under the mode's controls; else beside that control
        s.cursor_text = ""  # the position and value under the mouse
        s.can_undo = s.can_redo = False
        s.undo_label = s.redo_label = ""
        s.unsaved = False
        s.confirm_open = False
        s.confirm_text = ""
        s.confirm_action = ""
        self.history = History()
        self.restoring = False  # undo / redo is putting state back: observers record nothing
        self._points_cache: dict[str, np.ndarray] = {}  # each mode's points as last recorded (undo's "before")
        self._confirmed: Callable[[], Any] | None = None  # what the confirmation dialog's yes does
        self._image: tuple[Any, Image] | None = None  # (volume node, its image) for the corrections
        self.segments = SegmentList(self)
        self.corrections = Corrections(self)
        self.server.trigger("weakannotate_undo")(self.undo)
        self.server.trigger("weakannotate_redo")(self.redo)
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
                html.Span("{{ cursor_text }}", classes="text-caption mr-6", id="cursor-value")
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
                        label="Modality",
                        v_model=("case_modality",),
                        items=("modalities",),
                        density="compact",
                        id="modality",
                        disabled=("!case_id || busy",),
                        hint="What the image is: sets the window preset; remembered for this case",
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
                    self._build_modes_ui()
                    # beside the controls that cause most errors (points, Segment, Fit template, Make box)
                    v3.VAlert(
                        "{{ error }}",
                        v_if=("error && !error_where",),
                        type="error",
                        density="compact",
                        id="error",
                        classes="mt-2",
                    )
                    v3.VDivider(classes="my-2")
                    self.segments.build_ui()
                    self.corrections.build_ui()
                    v3.VDivider(classes="my-3")
                    v3.VTextField(label="Annotation name", v_model=("save_name",), density="compact", id="save-name")
                    v3.VBtn(
                        "{{ active_segment ? 'Save segment' : 'Save points' }}",
                        click=(self.save, "[save_name]"),  # the name typed, even if its state update is late
                        id="save",
                        block=True,
                        disabled=("!case_id || busy",),
                    )
                    v3.VAlert(
                        "{{ error }}",
                        v_if=("error && error_where == 'save'",),
                        type="error",
                        density="compact",
                        id="save-error",
                        classes="mt-1",
                    )
                    html.Div(
                        "{{ active_name ? `'${active_name}' and its marks ` : '' }}into {{ work_folder }}",
                        classes="text-caption mt-1",
                        id="save-what",
                    )
                    v3.VDivider(classes="my-3")
                    html.Div("{{ status }}", classes="text-body-2 mt-2", id="status")
                    v3.VDivider(classes="my-3")
                    self.training.build_ui()
                    self.loop = LoopPanel(self).build_ui()
            with layout.content:
                client.Script(KEYS_SCRIPT)
                self._build_confirm_ui()
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
                "Clear",
                click=self.clear_points,
                id="clear-points",
                disabled=("!n_points || busy",),
                size="small",
            )
            v3.VBtn(
                "Undo",
                click=self.undo,
                id="undo",
                disabled=("!can_undo || busy",),
                size="small",
                prepend_icon="mdi-undo",
                title=("can_undo ? `Undo ${undo_label} (Ctrl+Z)` : 'Nothing to undo'",),
            )
            v3.VBtn(
                "Redo",
                click=self.redo,
                id="redo",
                disabled=("!can_redo || busy",),
                size="small",
                prepend_icon="mdi-redo",
                title=("can_redo ? `Redo ${redo_label} (Ctrl+Y)` : 'Nothing to redo'",),
            )
        html.Div("{{ point_count }}", classes="text-body-2 my-2", id="point-count")
        for mode in self.modes.values():
            with html.Div(v_if=(f"mode == '{mode.key}'",), id=f"mode-controls-{mode.key}"):
                mode.build_ui()

    def _build_confirm_ui(self) -> None:
        """The question asked before work would be lost (switching case, Clear, Save over an existing name)."""
        with v3.VDialog(v_model=("confirm_open",), max_width=460, persistent=True):
            with v3.VCard(id="confirm"):
                v3.VCardText("{{ confirm_text }}", id="confirm-text")
                with v3.VCardActions():
                    v3.VSpacer()
                    v3.VBtn("Cancel", click=self.confirm_no, id="confirm-no")
                    v3.VBtn("{{ confirm_action }}", click=self.confirm_yes, id="confirm-yes", color="warning")

    def report(self, status: str = "", error: str = "", where: str = "") -> None:
        """The status line and an error; ``where`` names the control the error is shown beside ("": under Save)."""
        with self.state:
            self.state.status = status
            self.state.error = error
            self.state.error_where = where if error else ""

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
            view.interactor().AddObserver(
                vtkCommand.MouseMoveEvent, lambda caller, _e, v=view: self._show_value_under(v, caller), 1.0
            )
        self._publish_view_geometry()

    def _show_value_under(self, view: Any, interactor: Any) -> None:
        """The position (RAS) and the image's value under the mouse, in the toolbar."""
        if self.volume_node is None:
            return
        x, y = interactor.GetEventPosition()
        m = view.get_view_node().GetXYToRAS()
        xy_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
        ras = (xy_to_ras @ np.array([x, y, 0.0, 1.0]))[:3]
        image = self.image()
        ijk = image.geometry.ras_to_ijk(ras[None])[0]
        index = np.rint(ijk[::-1]).astype(int)
        text = "R {:.1f}  A {:.1f}  S {:.1f}".format(*ras)
        if np.all(index >= 0) and np.all(index < np.asarray(image.geometry.shape)):
            value = float(image.array[tuple(index)])
            unit = " SUV" if self.case is not None and self.case.modality == "PET" else ""
            text += f"  ·  {value:.4g}{unit}"
        if text != self.state.cursor_text:
            with self.state:
                self.state.cursor_text = text

    def _publish_view_geometry(self) -> None:
        self._refit_resized_views()
        geometry = {}
        for view in self.slice_views():
            node: vtkMRMLSliceNode = view.get_view_node()
            m = node.GetXYToRAS()
            geometry[view.get_singleton_tag()] = {
                **_orientation_labels(m, view.get_slice_value()),
                "xy_to_ras": [m.GetElement(r, c) for r in range(4) for c in range(4)],
                "size": list(view.render_window().GetSize()),
                "dimensions": list(node.GetDimensions()),
                "offset": view.get_slice_value(),
                "orientation": node.GetOrientation(),
            }
        with self.state:
            self.state.view_geometry = geometry

    def _show_volume(self) -> None:
        self._auto_fit = {}
        for view in self.slice_views():
            view.set_background_volume_id(self.volume_node.GetID())
            view.set_foreground_volume_id(None)
            self._fit_view(view)
            view.schedule_render()

    def _fit_view(self, view: Any) -> None:
        """The whole image in the view. Why not only ``fit_view_to_content``: Slicer's fit matches the image's
        height to the view's, and these views are tall and narrow, so the image's sides were cut off; the field
        of view is widened until every corner of the image is inside."""
        node = view.get_view_node()
        self._fitting = True
        try:
            view.fit_view_to_content()
            image = self.image()
            shape = np.asarray(image.geometry.shape, float)
            corners = np.array(
                [
                    [k, j, i]
                    for k in (-0.5, shape[0] - 0.5)
                    for j in (-0.5, shape[1] - 0.5)
                    for i in (-0.5, shape[2] - 0.5)
                ]
            )
            ras = image.geometry.index_to_ras(corners)
            m = node.GetXYToRAS()
            xy_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
            xy = np.linalg.solve(xy_to_ras, np.c_[ras, np.ones(len(ras))].T).T[:, :2]
            width, height = node.GetDimensions()[:2]
            factor = max(np.ptp(xy[:, 0]) / max(width, 1), np.ptp(xy[:, 1]) / max(height, 1)) * 1.02
            if factor > 1.0:
                fov = node.GetFieldOfView()
                node.SetFieldOfView(fov[0] * factor, fov[1] * factor, fov[2])
        finally:
            self._fitting = False
        self._auto_fit[view.get_singleton_tag()] = tuple(node.GetDimensions())

    def _refit_resized_views(self) -> None:
        """A view that changed size (the page's layout on load, a resized window) is fitted again. Why not keep
        a zoom the user made: Slicer changes the field of view itself while a view resizes, so a user's zoom
        cannot be told from it; a window is resized rarely, and the fit is what a new size needs."""
        if getattr(self, "_fitting", False) or self.volume_node is None:
            return
        for view in self.slice_views():
            tag = view.get_singleton_tag()
            node = view.get_view_node()
            fitted = getattr(self, "_auto_fit", {}).get(tag)
            if fitted is None:
                continue
            if tuple(node.GetDimensions()) == fitted:
                continue
            # after the resize that changed the size has finished: Slicer sets the field of view after the size
            self._auto_fit[tag] = tuple(node.GetDimensions())
            asyncio.get_event_loop().call_soon(self._refit_later, view)

    def _refit_later(self, view: Any) -> None:
        if self.volume_node is not None:
            # Slicer's fit also moves the slice to the image's centre: a resize keeps the slice the user is on.
            offset = view.get_slice_value()
            self._fit_view(view)
            view.set_slice_value(offset)
            view.schedule_render()
            self._publish_view_geometry()

    def _on_modality(self, case_modality: Any = None, **_: Any) -> None:
        """The user says what the image is: remembered for the case, and the window preset follows."""
        if self.case is None or case_modality == self.case.modality:
            return
        try:
            self.case, path = remember_modality(self.workspace, self.case, case_modality)
        except InputError as e:
            with self.state:
                self.state.case_modality = self.case.modality
            self.report(error=str(e))
            return
        self._share_case()
        with self.state:  # (its change listener applies the preset to the volume)
            self.state.wl_preset = default_preset(self.case.modality)
        self.report(
            status=f"{self.case.id} is {self.case.modality}: window '{self.state.wl_preset}' "
            f"(remembered in {self.workspace.relative(path)})."
        )

    def _share_case(self) -> None:
        """The open case as the page's other panels see it (their "cases of the same modality")."""
        if self.case is not None and self.case.id in self.cases:
            self.cases[self.case.id] = self.case

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
        self.corrections.case_closed()
        self.segments.case_closed()
        self._image = None
        self._points_cache = {}
        self.history.clear()
        self._publish_history()
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
        if self.history.unsaved:  # asked first; the picker shows the open case until the answer
            self._restore_case_id()
            self.confirm(
                f"{self.case.id} has unsaved changes ({self.history.undo_label or 'edits'}…). Open {case.id} and "
                "lose them?",
                "Open without saving",
                lambda: self._switch_case(case),
            )
            return
        await self._switch_case(case)

    async def _switch_case(self, case: Case) -> None:
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
        case = with_chosen_modality(self.workspace, case)  # the user's earlier choice beats the guess
        self._remove_case_nodes()
        self.volume_node = add_volume_node(self.rt, image, case.id)
        self.segmentation_node = add_segmentation_node(self.rt, f"{case.id} segmentation", self.volume_node)
        self.segmentation_node.GetDisplayNode().SetOpacity2DFill(0.35)  # the image stays readable under it
        segmentation = self.segmentation_node.GetSegmentation()
        self._observed.append((segmentation, segmentation.AddObserver(vtkSegmentation.SegmentAdded, self._on_added)))
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
        self._share_case()
        labels = list(case.labels.values())
        name = labels[0] if len(labels) == 1 else "object"
        with self.state:
            self.state.case_id = case.id
            self.state.segment_name = name
            self.state.n_points = 0
            self.state.point_count = self.mode.count_text(0)
            self.state.wl_preset = default_preset(case.modality)
            self.state.modalities = sorted({*MODALITY_CHOICES, case.modality})  # a catalogue's own name shows too
            self.state.case_modality = case.modality
            self.state.status = f"Opened {case.id} ({case.modality}). Press 'Place points' and click in the views."
            self.state.error = ""
        self._on_wl_preset(self.state.wl_preset)
        self._show_volume()
        self._publish_view_geometry()
        restore_saved_work(self)  # what was saved for this case comes back (saved_work.py)
        self.segments.adopt_unknown()  # segments the case opened with (saved work loaded back): not an action
        self.history.clear()
        self._points_cache = {key: self._points_of(key) for key in self.points_nodes}
        self.segments.publish()
        self._publish_history()

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

    def _on_points_changed(self, caller: Any = None, *_: Any) -> None:
        if not self.restoring:  # a click placed, a point dragged or removed: one undoable action
            key = next((k for k, node in self.points_nodes.items() if node is caller), self.mode.key)
            if key in self.points_nodes:
                before, after = self._points_cache.get(key, np.zeros((0, 3))), self._points_of(key)
                what = self.modes[key].points_what
                label = "place" if len(after) > len(before) else "move" if len(after) == len(before) else "remove"
                # what follows the points (box mode: a dragged corner moves the box) is part of the same action
                also_before, also_after = self.modes[key].points_moved(before, after)
                self.history.record(
                    f"{label} {what}", {("points", key): before, **also_before}, {("points", key): after, **also_after}
                )
                self._points_cache[key] = after
                self._publish_history()
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
        """Stop placing points and stop the corrections (one place mode at a time)."""
        if self.state.placing or self.state.correcting:
            self.slicer.markups_logic.disable_place_mode()
        with self.state:
            self.state.placing = False
            self.state.correcting = ""

    def clear_points(self) -> None:
        """Remove the current mode's points (asked first when something is unsaved; undoable)."""
        node = self.points_node
        if node is None or self.defined_points() == 0:
            return
        if self.history.unsaved:
            n = self.defined_points()
            self.confirm(
                f"Clear the {n} {self.mode.points_what}? There are unsaved changes (Undo brings the points back).",
                "Clear",
                self._clear_points,
            )
            return
        self._clear_points()

    def _clear_points(self) -> None:
        if self.points_node is not None:
            self.points_node.RemoveAllControlPoints()
            self._on_points_changed(self.points_node)

    def _points_of(self, key: str) -> np.ndarray:
        node = self.points_nodes.get(key)
        return points_of_node(node)[0] if node is not None else np.zeros((0, 3))

    def _set_points(self, key: str, points: np.ndarray) -> None:
        node = self.points_nodes.get(key)
        if node is None:
            return
        mode = self.modes[key]
        with self.placing_paused(node):
            node.RemoveAllControlPoints()
            for n, p in enumerate(np.asarray(points, float).reshape(-1, 3), start=1):
                node.AddControlPoint(vtk.vtkVector3d(*p.tolist()), mode.label_format.replace("%d", str(n)))
        self._points_cache[key] = self._points_of(key)

    @contextlib.contextmanager
    def placing_paused(self, node: Any) -> Iterator[None]:
        """Change ``node``'s points with its place mode (and the point being placed) out of the way."""
        was = (self.state.placing and node is self.points_node) or (
            bool(self.state.correcting) and node is self.corrections.node
        )
        if was:
            self.slicer.markups_logic.disable_place_mode()
        was_restoring, self.restoring = self.restoring, True
        try:
            # the half-placed point (no position yet) goes: it would be counted as the list's next point
            for n in reversed(range(node.GetNumberOfControlPoints())):
                if node.GetNthControlPointPositionStatus(n) != node.PositionDefined:
                    node.RemoveNthControlPoint(n)
            yield
        finally:
            self.restoring = was_restoring
            if was:
                self.slicer.markups_logic.place_node(node, persistent=True)

    # --- undo / redo --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def change(
        self, label: str, *, points: tuple[str, ...] = (), roi: bool = False, segments: Any = ()
    ) -> Iterator[None]:
        """One undoable action: what ``points`` (mode keys), the box (``roi``), ``segments`` and the active
        segment were before the block and after it; segments the block adds are found by themselves. Nothing is
        recorded when the block raises (the logic left the scene as it was)."""
        keys: list[Hashable] = [("active",), *(("points", k) for k in points), *(("segment", s) for s in segments)]
        if roi:
            keys.append(("roi",))
        ids_before = set(self.segments.ids())
        before = {k: self.capture(k) for k in keys}
        yield
        added = [s for s in self.segments.ids() if s not in ids_before]
        keys += [("segment", s) for s in added]
        before.update({("segment", s): None for s in added})
        after = {k: self.capture(k) for k in keys}
        self.history.record(label, before, after)
        for k in points:
            self._points_cache[k] = self._points_of(k)
        self._publish_history()
        self.resume_placing()

    def resume_placing(self) -> None:
        """Clicks go to the list being placed again. Why: Slicer's markups logic makes every markups node added
        to the scene the one clicks go to (a new box, the temporary nodes Save writes)."""
        if self.state.placing and self.points_node is not None:
            self.slicer.markups_logic.place_node(self.points_node, persistent=True)
        elif self.state.correcting and self.corrections.node is not None:
            self.slicer.markups_logic.place_node(self.corrections.node, persistent=True)

    def capture(self, key: Hashable) -> Any:
        kind = key[0]
        if kind == "active":
            return self.segments.active
        if kind == "points":
            return self._points_of(key[1])
        if kind == "segment":
            return self.segments.snapshot(key[1])
        if kind == "roi":
            return self.box_mode.box() if self.box_mode is not None else None
        raise KeyError(key)

    def _apply(self, state: dict[Hashable, Any]) -> None:
        """Put back what an action changed (its ``before`` for undo, its ``after`` for redo)."""
        self.restoring = True
        try:
            for key, value in state.items():
                if key[0] == "points":
                    self._set_points(key[1], value)
                elif key[0] == "segment":
                    self.segments.restore(key[1], value)
                    self.corrections.sessions.pop(key[1], None)
                elif key[0] == "roi" and self.box_mode is not None:
                    self.box_mode.set_box(value)
            active = state.get(("active",), self.segments.active)
            self.segments.set_active(active if active in self.segments.ids() else None)
        finally:
            self.restoring = False
        self._on_points_changed()
        self.resume_placing()
        self.render_views()

    def undo(self) -> None:
        if self.state.busy:
            return
        action = self.history.undo()
        if action is not None:
            self._apply(action.before)
            self.report(status=f"Undone: {action.label}.")
        self._publish_history()

    def redo(self) -> None:
        if self.state.busy:
            return
        action = self.history.redo()
        if action is not None:
            self._apply(action.after)
            self.report(status=f"Redone: {action.label}.")
        self._publish_history()

    def _publish_history(self) -> None:
        with self.state:
            self.state.can_undo = self.history.can_undo
            self.state.can_redo = self.history.can_redo
            self.state.undo_label = self.history.undo_label
            self.state.redo_label = self.history.redo_label
            self.state.unsaved = self.history.unsaved

    @property
    def box_mode(self) -> Any:
        return next((m for m in self.modes.values() if hasattr(m, "set_box")), None)

    # --- segments -----------------------------------------------------------------------------------

    def _on_added(self, *_: Any) -> None:
        """A segment appeared. The modes adopt theirs at once; one added by someone else (the training panel's
        model) is adopted after the current step, once its voxels are written, as an undoable action."""
        if not self.restoring:
            asyncio.get_event_loop().call_soon(self._adopt_added)

    def _adopt_added(self) -> None:
        if self.segmentation_node is None or all(s in self.segments.records for s in self.segments.ids()):
            return
        before_active = self.segments.active
        added = self.segments.adopt_unknown()
        before = {("active",): before_active, **{("segment", s): None for s in added}}
        after = {k: self.capture(k) for k in before}
        self.history.record(f"add '{self.segments.name(added[-1])}'", before, after)
        self._publish_history()
        self.render_views()

    def active_segment_changed(self) -> None:
        """The corrections follow the active segment: its clicks are shown; with none, they stop."""
        if self.segments.active is None and self.state.correcting:
            self.disable_placing()
        self.corrections.show_clicks()

    def image(self) -> Image:
        """The open case's image (kept while the case is open: the corrections read it at every click)."""
        if self._image is None or self._image[0] is not self.volume_node:
            self._image = (self.volume_node, image_of_node(self.volume_node))
        return self._image[1]

    # --- asking first -------------------------------------------------------------------------------

    def confirm(self, text: str, action: str, then: Callable[[], Any]) -> None:
        """Ask before losing work: the dialog shows ``text``; its ``action`` button runs ``then``."""
        self._confirmed = then
        with self.state:
            self.state.confirm_text = text
            self.state.confirm_action = action
            self.state.confirm_open = True

    async def confirm_yes(self) -> None:
        then, self._confirmed = self._confirmed, None
        with self.state:
            self.state.confirm_open = False
        if then is not None:
            done = then()
            if asyncio.iscoroutine(done):
                await done

    def confirm_no(self) -> None:
        self._confirmed = None
        with self.state:
            self.state.confirm_open = False
        self.report(status="Nothing changed.")

    # --- save -----------------------------------------------------------------------------------------

    async def save(self, name: Any = None, *, overwrite: bool = False) -> None:
        """Write the active segment and the marks it was made from (without a segment: the current mode's points)
        as ``<name>.seg.nrrd`` and ``<name>.mrk.json`` (and what belongs with them: ``<name>_slice_boxes.json``,
        the corrective clicks as ``<name>_add.mrk.json`` / ``<name>_remove.mrk.json``) into the case's folder.
        An existing name is overwritten only after asking."""
        if self.case is None:
            return
        if name is None:
            name = self.state.save_name
        if not isinstance(name, str):
            self.report(error=f"Annotation name: expected text, got {type(name).__name__}.", where="save")
            return
        try:
            existing = self._existing_files(name)
        except InputError as e:
            self.report(error=str(e), where="save")
            return
        if existing and not overwrite:
            self.confirm(
                f"'{safe_name(name, 'annotation name')}' is already saved for {self.case.id} "
                f"({', '.join(p.name for p in existing)}). Overwrite it?",
                "Overwrite",
                lambda: self.save(name, overwrite=True),
            )
            return
        await self.show_busy("Saving…")
        try:
            written = self.save_annotations(name)
            self.history.mark_saved()
            self._publish_history()
            self.report(status="Saved " + ", ".join(self.workspace.relative(p) for p in written) + ".")
        except InputError as e:
            self.report(error=str(e), where="save")
        finally:
            self.set_busy(False)

    def _existing_files(self, name: str) -> list[Path]:
        stem = safe_name(name, "annotation name")
        paths = [self.workspace.path(self.case.id, stem, suffix) for suffix in (".mrk.json", ".seg.nrrd")]
        return [p for p in paths if p.exists()]

    def save_annotations(self, name: str) -> list[Path]:
        """All files or none: the segment first, then its marks (points, or box mode's ROI), then the documents
        and clicks that belong to it; a failure removes what was written. Files of an earlier save under the
        same name that do not belong to this segment are removed afterwards (a name holds one annotation)."""
        name = safe_name(name, "annotation name")
        sid = self.segments.active
        path = {suffix: self.workspace.path(self.case.id, name, suffix) for suffix in SAVE_SUFFIXES}
        temporary: list[Any] = []
        nodes: dict[str, Any] = {}
        documents: list[tuple[Path, dict[str, Any]]] = []
        if sid is None:  # no segment yet: the current mode's marks alone
            mode = self.mode
            if self.defined_points() == 0:
                raise InputError(f"Nothing to save: place the {mode.points_what} first.")
            nodes[".mrk.json"] = mode.save_plan(name).node
        else:
            record = self.segments.record(sid)
            seg = add_segmentation_node(self.rt, f"{name} (saved)", self.volume_node)
            temporary.append(seg)
            seg.GetSegmentation().CopySegmentFromSegmentation(self.segmentation_node.GetSegmentation(), sid)
            nodes[".seg.nrrd"] = seg
            if record.box is not None:
                temporary.append(add_roi_node(self.rt, record.box, name))
                nodes[".mrk.json"] = temporary[-1]
            elif record.points is not None and len(record.points):
                label = self.modes[record.mode].label_format if record.mode in self.modes else "P%d"
                labels = [label.replace("%d", str(n)) for n in range(1, len(record.points) + 1)]
                temporary.append(add_points_node(self.rt, record.points, labels, name))
                nodes[".mrk.json"] = temporary[-1]
            for positive, suffix in ((True, "_add.mrk.json"), (False, "_remove.mrk.json")):
                clicks = [c for c in record.clicks if c.positive == positive]
                if clicks:
                    points = np.array([c.point for c in clicks], float)
                    labels = [f"{'+' if positive else '-'}{n}" for n in range(1, len(clicks) + 1)]
                    temporary.append(add_points_node(self.rt, points, labels, f"{name}{suffix[:-9]}"))
                    nodes[suffix] = temporary[-1]
            documents = [(path[suffix], document) for suffix, document in record.documents]
        self.workspace.case_folder(self.case.id, create=True)
        written: list[Path] = []
        try:
            try:
                if ".seg.nrrd" in nodes:
                    written.append(write_segmentation(path[".seg.nrrd"], nodes[".seg.nrrd"]))
                for suffix in (".mrk.json", "_add.mrk.json", "_remove.mrk.json"):
                    if suffix in nodes:
                        written.append(write_node_file(nodes[suffix], path[suffix]))
                for target, document in documents:
                    with atomic_output(target) as tmp:
                        tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
                    written.append(target)
            except BaseException:
                for p in written:
                    p.unlink(missing_ok=True)
                raise
        finally:
            for node in temporary:
                remove_node(self.slicer.scene, node)
            self.resume_placing()
        for p in path.values():
            if p not in written:
                p.unlink(missing_ok=True)
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
