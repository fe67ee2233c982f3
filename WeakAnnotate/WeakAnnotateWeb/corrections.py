"""Corrective clicks in the page: *Add* ("this is object") and *Remove* ("this is not") on the active segment.

Any segment can be corrected: six clicks, a template, a box, a model's prediction. With *Add* or *Remove* on,
a click in a slice view goes into the case's click list (shown: green +, red −) and
``extreme_points.corrective.CorrectionSession`` re-solves the segment from the segment as it was before its
first click (its record's ``base``) and all its clicks so far, warm-started from the previous click's solution.
The segment's voxels and its clicks (tag ``WeakAnnotate.CorrectiveClicks``) change together, as one undoable
action; a click the logic refuses (outside the image, removing the last foreground) is taken out again and its
message shown.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import vtk
from slicer import vtkMRMLMarkupsNode
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.extreme_points.corrective import CLICKS_TAG, CorrectionSession, clicks_tag_value
from WeakAnnotateLib.methods.extreme_points.segmenter import segment_extreme_points
from WeakAnnotateLib.scene.mrml_adapter import remove_node

from .history import PackedMask

ADD_COLOR = (0.2, 0.9, 0.3)
REMOVE_COLOR = (1.0, 0.25, 0.25)
# The two mode buttons: (mode, icon, colour while on, what a click does to the active segment)
MODE_BUTTONS = (("add", "plus", "green", "add to"), ("remove", "minus", "red", "remove from"))


class Corrections:
    """The click list of the open case, the *Add* / *Remove* modes and one warm session per segment."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.node: Any = None  # the click list shown for the active segment
        self._observer: int | None = None
        self.sessions: dict[str, CorrectionSession] = {}
        self._pending: list[asyncio.Future[Any]] = []
        app.state.correcting = ""  # "", "add" or "remove"

    @property
    def state(self) -> Any:
        return self.app.state

    # --- the click list ---------------------------------------------------------------------------------

    def ensure_node(self) -> Any:
        if self.node is None:
            node = self.app.slicer.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "corrective clicks")
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            display.SetSelectedColor(*ADD_COLOR)  # a positive click is a selected point, a negative one not
            display.SetColor(*REMOVE_COLOR)
            node.SetMarkupLabelFormat("")
            self._observer = node.AddObserver(vtkMRMLMarkupsNode.PointPositionDefinedEvent, self._on_click)
            self.node = node
            self.show_clicks()
        return self.node

    def show_clicks(self) -> None:
        """The click list shows the active segment's clicks."""
        if self.node is None:
            return
        sid = self.app.segments.active
        clicks = self.app.segments.record(sid).clicks if sid else []
        with self.app.placing_paused(self.node):
            self.node.RemoveAllControlPoints()
            for n, c in enumerate(clicks, start=1):
                self._label(self.node.AddControlPoint(vtk.vtkVector3d(*c.point), ""), n, c.positive)
        self.app.render_views()

    def _label(self, index: int, n: int, positive: bool) -> None:
        self.node.SetNthControlPointLabel(index, f"{'+' if positive else '−'}{n}")
        self.node.SetNthControlPointSelected(index, positive)
        self.node.SetNthControlPointLocked(index, True)

    def case_closed(self) -> None:
        if self.node is not None and self._observer is not None:
            self.node.RemoveObserver(self._observer)
        remove_node(self.app.slicer.scene, self.node)
        self.node = self._observer = None
        self.sessions = {}

    # --- modes ----------------------------------------------------------------------------------------

    def toggle(self, which: Any) -> None:
        """*Add* or *Remove* on (clicks in the views correct the active segment), or off when pressed again."""
        if which not in ("add", "remove"):
            return
        if self.state.correcting == which:
            self.app.disable_placing()
            self.app.report(status="Corrections stopped.")
            return
        try:
            sid = self.app.segments.check_active()
        except InputError as e:
            self.app.report(error=str(e), where="corrections")
            return
        self.app.disable_placing()
        node = self.ensure_node()
        self.app.slicer.markups_logic.place_node(node, persistent=True)
        with self.state:
            self.state.correcting = which
        what = "on the object where it is missing" if which == "add" else "where the segment is wrong"
        self.app.report(status=f"Click {what}: each click corrects '{self.app.segments.name(sid)}'.")

    # --- a click ----------------------------------------------------------------------------------------

    def _on_click(self, *_: Any) -> None:
        if self.app.restoring or self.state.correcting not in ("add", "remove"):
            return
        node = self.node
        defined = [
            i
            for i in range(node.GetNumberOfControlPoints())
            if node.GetNthControlPointPositionStatus(i) == node.PositionDefined
        ]
        if not defined:
            return
        index = defined[-1]
        point = np.zeros(3)
        node.GetNthControlPointPositionWorld(index, point)
        positive = self.state.correcting == "add"
        task = asyncio.ensure_future(self.apply_click(index, point, positive))
        self._pending.append(task)
        task.add_done_callback(self._pending.remove)

    async def apply_click(self, index: int, point: np.ndarray, positive: bool) -> None:
        app = self.app
        await app.show_busy("Correcting…")
        try:
            t0 = time.perf_counter()
            sid, result = self.correct(point, positive)
            dt = time.perf_counter() - t0
            if index < self.node.GetNumberOfControlPoints():
                self._label(index, len(result.clicks), positive)
            sign = "+" if positive else "−"
            app.report(
                status=f"Click {sign}{len(result.clicks)} on '{app.segments.name(sid)}': "
                f"{int(result.mask.sum())} voxels in {dt:.2f} s."
            )
        except InputError as e:
            self.show_clicks()  # the refused click leaves the list
            app.report(error=str(e), where="corrections")
        finally:
            app.set_busy(False)
            app.render_views()

    def session(self, sid: str) -> CorrectionSession:
        """The segment's warm session; a new one when the clicks changed behind it (undo, redo)."""
        record = self.app.segments.record(sid)
        session = self.sessions.get(sid)
        if session is None or session.clicks != record.clicks:
            image = self.app.image()
            rng = record.intensity_range
            if record.base is not None:
                base = record.base.unpack()
            elif record.clicks and record.kind == "extreme_points" and record.points is not None:
                # loaded back with its clicks: the segment they corrected is the six points' own, derived again
                six = segment_extreme_points(image.array, image.geometry, record.points)
                base, rng = six.mask, tuple(float(v) for v in six.diagnostics["intensity_range"])
                record.intensity_range = rng
            else:  # (a segment loaded with clicks but no way to derive its base: the clicks apply to it as it is)
                base = self.app.segments.mask(sid)
            session = CorrectionSession(image.array, image.geometry, base, intensity_range=rng, clicks=record.clicks)
            self.sessions[sid] = session
        return session

    def correct(self, point: np.ndarray, positive: bool) -> tuple[str, Any]:
        """One click on the active segment: solve, then write voxels and clicks as one undoable action."""
        app = self.app
        sid = app.segments.check_active()
        record = app.segments.record(sid)
        session = self.session(sid)
        result = session.add(point, positive)  # InputError: nothing changed
        del session.history[:-1]  # the warm start needs only the last solution (bounded memory)
        name = app.segments.name(sid)
        with app.change(f"{'Add' if positive else 'Remove'} click on '{name}'", segments=[sid]):
            if record.base is None:
                record.base = PackedMask.pack(session.base)
            app.segments.write_mask(sid, result.mask)
            app.segmentation_node.GetSegmentation().GetSegment(sid).SetTag(CLICKS_TAG, clicks_tag_value(result.clicks))
            record.clicks = list(result.clicks)
        app.segments.publish()
        return sid, result

    # --- page ---------------------------------------------------------------------------------------

    def build_ui(self) -> None:
        with html.Div(v_if=("active_segment",), id="corrections", classes="mt-1"):
            with html.Div(classes="d-flex align-center flex-wrap ga-2"):
                html.Span("Correct:", classes="text-body-2")
                for which, icon, colour, verb in MODE_BUTTONS:
                    v3.VBtn(
                        which.capitalize(),
                        click=(self.toggle, f"['{which}']"),
                        id=f"correct-{which}",
                        size="small",
                        prepend_icon=f"mdi-{icon}",
                        color=(f"correcting == '{which}' ? '{colour}' : undefined",),
                        disabled=("busy",),
                        title=f"Clicks in the views {verb} the active segment",
                    )
                html.Span("{{ active_clicks }} clicks", classes="text-caption", id="click-count")
            v3.VAlert(
                "{{ error }}",
                v_if=("error && error_where == 'corrections'",),
                type="error",
                density="compact",
                id="corrections-error",
                classes="mt-1",
            )
