"""The page's segment list: every result its own segment, named after how it was made, in its own colour.

A segment comes from six clicks ("GTV — 6 clicks"), a template ("GTV — template, 25 points"), a box
("GTV — box"; after *Correct boxes* also "GTV — raw boxes" and "GTV — corrected"), a model ("model <job>",
added by the training panel) or corrective clicks on any of these. Each keeps a :class:`SegmentRecord`: how it
was made and the marks it was made from (a copy of the points or the box at that moment, so moving the mode's
points later does not change what belongs to it), its corrective clicks and the documents saved with it. The
*active* segment is the one *Save* and the corrections act on.

What the list shows (colour, name, visibility, opacity, outline or fill) is the segmentation node's own display;
the list is rebuilt from the node after every change. Rename and Delete are undoable actions of the page's
history (:mod:`.history`); visibility, opacity and outline/fill are view settings, not recorded.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import vtk
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.colors import PALETTE, segment_color
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.extreme_points.corrective import CLICKS_TAG, Click, stored_clicks
from WeakAnnotateLib.methods.extreme_points.segmenter import POINTS_TAG as EXTREME_POINTS_TAG
from WeakAnnotateLib.methods.surface_template.nodes import EFFORT_CLICKS_TAG, EFFORT_SECONDS_TAG
from WeakAnnotateLib.methods.surface_template.nodes import POINTS_TAG as SURFACE_POINTS_TAG
from WeakAnnotateLib.scene.mrml_adapter import (
    image_of_node,
    segment_ids,
    segment_mask,
    set_segment_mask,
    stored_points,
)

from .history import PackedMask

# The tags a segment may carry (vtkSegment cannot list its tags): kept by undo of a deletion.
KNOWN_TAGS = (
    EXTREME_POINTS_TAG,
    SURFACE_POINTS_TAG,
    EFFORT_CLICKS_TAG,
    EFFORT_SECONDS_TAG,
    CLICKS_TAG,
    "TerminologyEntry",
    "WeakAnnotate.LabelValue",
)
DEFAULT_OPACITY = 0.35  # fill opacity: the image stays readable under a segment
NAME_DASH = "—"


@dataclass
class SegmentRecord:
    """How a segment was made and what belongs to it when saved."""

    kind: str  # "extreme_points", "surface_template", "box", "box_raw", "box_corrected", "model", "other"
    mode: str = ""  # the page mode that made it ("" for a model's or an unknown segment)
    points: np.ndarray | None = None  # the mode's points it was made from (RAS), saved as <name>.mrk.json
    box: Any = None  # box mode's ROI (a Box) it was made from, saved as <name>.mrk.json
    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file suffix, JSON) saved with it
    base: PackedMask | None = None  # the segment before its first corrective click (what the clicks correct)
    clicks: list[Click] = field(default_factory=list)  # corrective clicks, oldest first
    intensity_range: tuple[float, float] | None = None  # the six-click solve's intensity scaling, reused

    def copy(self) -> SegmentRecord:
        return replace(self, documents=list(self.documents), clicks=list(self.clicks))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentRecord):
            return False
        same_points = (self.points is None and other.points is None) or (
            self.points is not None and other.points is not None and np.array_equal(self.points, other.points)
        )
        return (
            same_points
            and (self.kind, self.mode, self.base, self.clicks, self.intensity_range)
            == (other.kind, other.mode, other.base, other.clicks, other.intensity_range)
            and _same_box(self.box, other.box)
            and [s for s, _ in self.documents] == [s for s, _ in other.documents]
        )


def _same_box(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(a.center, b.center) and np.allclose(a.size, b.size) and np.allclose(a.axes, b.axes))


@dataclass(eq=False)
class SegmentSnapshot:
    """Everything needed to put a segment back exactly: voxels, name, colour, tags, display and record."""

    name: str
    color: tuple[float, float, float]
    tags: dict[str, str]
    mask: PackedMask
    index: int
    display: tuple[bool, float, bool, bool]  # visible, fill opacity, fill shown, outline shown
    record: SegmentRecord

    @property
    def nbytes(self) -> int:
        return self.mask.nbytes + (self.record.base.nbytes if self.record.base is not None else 0) + 512

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SegmentSnapshot) and (
            self.name,
            tuple(round(c, 4) for c in self.color),
            self.tags,
            self.mask,
            self.index,
            self.display,
            self.record,
        ) == (
            other.name,
            tuple(round(c, 4) for c in other.color),
            other.tags,
            other.mask,
            other.index,
            other.display,
            other.record,
        )


def hex_color(rgb: Any) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, float(c))) * 255)):02x}" for c in rgb)


def distinct_color(name: str, used: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The name's anatomy colour when no segment uses a colour near it; else the first palette colour far from
    all used ones; else a hue of the golden-angle sequence."""

    def far(c: tuple[float, float, float]) -> bool:
        return all(float(np.abs(np.subtract(c, u)).max()) > 0.2 for u in used)

    first = segment_color(name)
    if far(first):
        return first
    for c in PALETTE:
        if far(c):
            return c
    for n in range(1, 64):
        c = colorsys.hsv_to_rgb((0.618034 * n) % 1.0, 0.75, 0.95)
        if far(c):
            return c
    return first


class SegmentList:
    """The segments of the open case's segmentation node, their records, the active one, and the list's UI."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.records: dict[str, SegmentRecord] = {}
        s = app.state
        s.segments = []
        s.active_segment = None
        s.active_name = ""
        s.active_opacity = DEFAULT_OPACITY
        s.active_fill = True
        s.active_clicks = 0
        s.change("active_segment")(self._on_active)
        s.change("active_opacity")(self._on_opacity)
        s.change("active_fill")(self._on_fill)

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def node(self) -> Any:
        return self.app.segmentation_node

    @property
    def segmentation(self) -> Any:
        return self.node.GetSegmentation()

    # --- what is there ------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return segment_ids(self.node) if self.node is not None else []

    @property
    def active(self) -> str | None:
        sid = self.state.active_segment
        return sid if isinstance(sid, str) and sid in self.ids() else None

    def name(self, sid: str) -> str:
        return self.segmentation.GetSegment(sid).GetName()

    def record(self, sid: str) -> SegmentRecord:
        if sid not in self.records:  # loaded back, added by the training panel or painted elsewhere
            self.records[sid] = self._record_from_tags(sid)
        return self.records[sid]

    def _record_from_tags(self, sid: str) -> SegmentRecord:
        """A segment the page did not make (saved work loaded back, a model's): what its tags say about how it
        was made — the six points or the surface points it was made from, its corrective clicks — so that it
        can be corrected further and saved again with its marks."""
        try:
            clicks = stored_clicks(self.node, sid)
        except InputError:  # a damaged tag: the segment is kept, its clicks are not
            clicks = []
        modes = {m.method_name: m.key for m in self.app.modes.values()}
        for kind, tag, valid in (
            ("extreme_points", EXTREME_POINTS_TAG, lambda n: n == 6),
            ("surface_template", SURFACE_POINTS_TAG, lambda n: n > 0),
        ):
            try:
                points = stored_points(self.node, sid, tag)
            except (InputError, ValueError, KeyError):
                points = None
            if points is not None and valid(len(points)):
                return SegmentRecord(kind, modes.get(kind, ""), points=np.asarray(points, float), clicks=clicks)
        kind = "model" if self.name(sid).startswith("model ") else "other"
        return SegmentRecord(kind, clicks=clicks)

    def unique_name(self, base: str, *, ignore: str | None = None) -> str:
        """``base``, or ``base (2)``, ``(3)``… when another segment has that name."""
        taken = {self.name(s) for s in self.ids() if s != ignore}
        if base not in taken:
            return base
        n = 2
        while f"{base} ({n})" in taken:
            n += 1
        return f"{base} ({n})"

    def result_name(self, how: str) -> str:
        """A new result's name: the object's name, a dash, how it was made ("GTV — 6 clicks")."""
        obj = self.state.segment_name if isinstance(self.state.segment_name, str) else ""
        return self.unique_name(f"{obj.strip() or 'object'} {NAME_DASH} {how}")

    def new_color(self, name: str) -> tuple[float, float, float]:
        used = [tuple(self.segmentation.GetSegment(s).GetColor()) for s in self.ids()]
        return distinct_color(name, used)

    # --- adding and changing --------------------------------------------------------------------------

    def adopt(self, sid: str, record: SegmentRecord, *, activate: bool = True) -> None:
        """``sid`` (just made by a mode) is a result with ``record``; it becomes the active segment."""
        self.records[sid] = record
        display = self.node.GetDisplayNode()
        display.SetSegmentOpacity2DFill(sid, DEFAULT_OPACITY)
        if activate:
            self.set_active(sid)
        else:
            self.publish()

    def adopt_unknown(self) -> list[str]:
        """Segments that appeared without a mode (a model's prediction): a record, a colour of their own."""
        new = [s for s in self.ids() if s not in self.records]
        seen: set[str] = set()
        for sid in self.ids():  # several saves of one segment load as copies of one name: numbered
            segment = self.segmentation.GetSegment(sid)
            if segment.GetName() in seen:
                segment.SetName(self.unique_name(segment.GetName(), ignore=sid))
            seen.add(segment.GetName())
        used: list[tuple[float, float, float]] = []
        for sid in self.ids():  # and get colours of their own
            segment = self.segmentation.GetSegment(sid)
            if any(float(np.abs(np.subtract(segment.GetColor(), u)).max()) <= 0.2 for u in used):
                segment.SetColor(*distinct_color(segment.GetName(), used))
            used.append(tuple(segment.GetColor()))
        for sid in new:
            self.adopt(sid, self.record(sid), activate=False)
        if new:
            self.set_active(new[-1])
        return new

    def set_active(self, sid: str | None) -> None:
        with self.state:
            self.state.active_segment = sid
        self._on_active(sid)

    def _on_active(self, active_segment: Any = None, **_: Any) -> None:
        sid = active_segment if isinstance(active_segment, str) and active_segment in self.ids() else None
        if active_segment is not None and sid is None:  # a client sends any JSON: an unknown id is ignored
            with self.state:
                self.state.active_segment = None
        self.publish()
        self.app.active_segment_changed()

    def publish(self) -> None:
        """Send the list to the page (after every change of the segments or of the active one)."""
        rows = []
        display = self.node.GetDisplayNode() if self.node is not None else None
        for sid in self.ids():
            segment = self.segmentation.GetSegment(sid)
            record = self.record(sid)
            rows.append(
                {
                    "id": sid,
                    "name": segment.GetName(),
                    "color": hex_color(segment.GetColor()),
                    "visible": bool(display.GetSegmentVisibility(sid)),
                    "kind": record.kind,
                    "clicks": len(record.clicks),
                }
            )
        active = self.active
        with self.state:
            self.state.segments = rows
            if active is None and self.state.active_segment is not None:
                self.state.active_segment = None
            self.state.active_name = self.name(active) if active else ""
            self.state.active_clicks = len(self.record(active).clicks) if active else 0
            if active and display is not None:
                self.state.active_opacity = round(float(display.GetSegmentOpacity2DFill(active)), 2)
                self.state.active_fill = bool(display.GetSegmentVisibility2DFill(active))

    def toggle_visible(self, sid: Any) -> None:
        if not isinstance(sid, str) or sid not in self.ids():
            return
        display = self.node.GetDisplayNode()
        display.SetSegmentVisibility(sid, not display.GetSegmentVisibility(sid))
        self.publish()
        self.app.render_views()

    def _on_opacity(self, active_opacity: Any = None, **_: Any) -> None:
        sid = self.active
        if sid is None or isinstance(active_opacity, bool) or not isinstance(active_opacity, (int, float)):
            return
        self.node.GetDisplayNode().SetSegmentOpacity2DFill(sid, float(np.clip(active_opacity, 0.0, 1.0)))
        self.app.render_views()

    def _on_fill(self, active_fill: Any = None, **_: Any) -> None:
        """Fill on: the filled region and its outline; off: the outline only (the image shows through)."""
        sid = self.active
        if sid is None or not isinstance(active_fill, bool):
            return
        self.node.GetDisplayNode().SetSegmentVisibility2DFill(sid, active_fill)
        self.app.render_views()

    def rename_active(self) -> None:
        sid = self.active
        name = self.state.active_name
        if sid is None:
            return
        if not isinstance(name, str) or not name.strip():
            self.app.report(error="Segment name: type a name (letters, digits, spaces).", where="segments")
            self.publish()
            return
        name = " ".join(name.split())[:120]
        if name == self.name(sid):
            return
        if name in {self.name(s) for s in self.ids() if s != sid}:
            self.app.report(error=f"A segment named {name!r} already exists; choose another name.", where="segments")
            return
        old = self.name(sid)
        with self.app.change(f"Rename '{old}'", segments=[sid]):
            self.segmentation.GetSegment(sid).SetName(name)
        self.publish()
        self.app.report(status=f"Segment '{old}' renamed to '{name}'.")

    def delete_active(self) -> None:
        sid = self.active
        if sid is None:
            return
        name = self.name(sid)
        ids = self.ids()
        rest = [s for s in ids if s != sid]
        after = rest[min(ids.index(sid), len(rest) - 1)] if rest else None
        with self.app.change(f"Delete '{name}'", segments=[sid]):
            self.segmentation.RemoveSegment(sid)
            self.records.pop(sid, None)
            self.set_active(after)
        self.app.render_views()
        self.app.report(status=f"Segment '{name}' deleted (Undo brings it back).")

    # --- snapshots (undo / redo) ------------------------------------------------------------------------

    def snapshot(self, sid: str) -> SegmentSnapshot | None:
        segment = self.segmentation.GetSegment(sid) if self.node is not None else None
        if segment is None:
            return None
        geometry = image_of_node(self.app.volume_node).geometry
        tags = {}
        for tag in KNOWN_TAGS:
            value = vtk.reference("")
            if segment.GetTag(tag, value):
                tags[tag] = str(value)
        display = self.node.GetDisplayNode()
        return SegmentSnapshot(
            name=segment.GetName(),
            color=tuple(float(c) for c in segment.GetColor()),
            tags=tags,
            mask=PackedMask.pack(segment_mask(self.node, sid, geometry)),
            index=int(self.segmentation.GetSegmentIndex(sid)),
            display=(
                bool(display.GetSegmentVisibility(sid)),
                round(float(display.GetSegmentOpacity2DFill(sid)), 4),
                bool(display.GetSegmentVisibility2DFill(sid)),
                bool(display.GetSegmentVisibility2DOutline(sid)),
            ),
            record=self.record(sid).copy(),
        )

    def restore(self, sid: str, snap: SegmentSnapshot | None) -> None:
        """Put segment ``sid`` back as ``snap`` (None: remove it), voxels exactly as they were."""
        segmentation = self.segmentation
        if snap is None:
            if segmentation.GetSegment(sid) is not None:
                segmentation.RemoveSegment(sid)
            self.records.pop(sid, None)
            return
        segment = segmentation.GetSegment(sid)
        if segment is None:
            # a temporary name first: set_segment_mask finds the segment by name, and another may have it now
            segmentation.AddEmptySegment(sid, sid, list(snap.color))
            segment = segmentation.GetSegment(sid)
        segment.SetName(sid)
        geometry = image_of_node(self.app.volume_node).geometry
        set_segment_mask(self.app.rt, self.node, snap.mask.unpack(), geometry, sid)
        segment = segmentation.GetSegment(sid)
        segment.SetName(snap.name)
        segment.SetColor(*snap.color)
        for tag in KNOWN_TAGS:
            if tag in snap.tags:
                segment.SetTag(tag, snap.tags[tag])
            elif segment.HasTag(tag):
                segment.RemoveTag(tag)
        if 0 <= snap.index < segmentation.GetNumberOfSegments():
            segmentation.SetSegmentIndex(sid, snap.index)
        display = self.node.GetDisplayNode()
        visible, opacity, fill, outline = snap.display
        display.SetSegmentVisibility(sid, visible)
        display.SetSegmentOpacity2DFill(sid, opacity)
        display.SetSegmentVisibility2DFill(sid, fill)
        display.SetSegmentVisibility2DOutline(sid, outline)
        self.records[sid] = snap.record.copy()

    def write_mask(self, sid: str, mask: np.ndarray) -> None:
        """Replace segment ``sid``'s voxels. Why the temporary name: ``set_segment_mask`` finds a segment by
        name, and segments loaded back from several saves can share one."""
        segment = self.segmentation.GetSegment(sid)
        name = segment.GetName()
        segment.SetName(sid)
        try:
            set_segment_mask(self.app.rt, self.node, mask, image_of_node(self.app.volume_node).geometry, sid)
        finally:
            self.segmentation.GetSegment(sid).SetName(name)

    def mask(self, sid: str) -> np.ndarray:
        return segment_mask(self.node, sid, image_of_node(self.app.volume_node).geometry)

    def case_closed(self) -> None:
        self.records = {}
        with self.state:
            self.state.segments = []
            self.state.active_segment = None
            self.state.active_name = ""
            self.state.active_clicks = 0

    def check_active(self) -> str:
        sid = self.active
        if sid is None:
            raise InputError("No segment: make one first (Segment, Fit template, Make box or a model).")
        return sid

    # --- page ---------------------------------------------------------------------------------------

    def build_ui(self) -> None:
        html.Div("Segments", classes="text-subtitle-2 mt-1")
        html.Div(
            "None yet: Segment, Fit template, Make box or Apply model make one.",
            v_if=("!segments.length",),
            classes="text-caption",
            id="segments-empty",
        )
        with v3.VList(density="compact", classes="py-0", id="segment-list", v_if=("segments.length",)):
            with v3.VListItem(
                v_for="s in segments",
                key="s.id",
                value=("s.id",),
                active=("s.id == active_segment",),
                click="active_segment = s.id",
                classes="px-1",
                min_height=28,
            ):
                with html.Div(classes="d-flex align-center ga-1"):
                    html.Span(
                        style=(
                            "{ background: s.color, width: '14px', height: '14px', borderRadius: '3px', "
                            "flex: 'none', opacity: s.visible ? 1 : 0.3 }",
                        ),
                        classes="segment-swatch",
                    )
                    html.Span(
                        "{{ s.name }}",
                        classes="text-body-2 segment-name",
                        style="flex: 1 1 auto; overflow-wrap: anywhere;",
                    )
                    v3.VBtn(
                        icon=("s.visible ? 'mdi-eye' : 'mdi-eye-off'",),
                        size="x-small",
                        variant="text",
                        density="compact",
                        __events=[("click_stop", "click.stop")],  # the row's own click would select it
                        click_stop=(self.toggle_visible, "[s.id]"),
                        title=("s.visible ? 'Hide' : 'Show'",),
                        classes="segment-visibility",
                    )
        with html.Div(v_if=("active_segment",), id="segment-controls", classes="mt-1"):
            with html.Div(classes="d-flex align-center ga-1"):
                v3.VTextField(
                    label="Segment name",
                    v_model=("active_name",),
                    density="compact",
                    hide_details=True,
                    id="segment-name-field",
                    keydown_enter=self.rename_active,
                )
                v3.VBtn("Rename", click=self.rename_active, size="small", id="segment-rename", disabled=("busy",))
            with html.Div(classes="d-flex align-center ga-2 mt-1"):
                v3.VSlider(
                    v_model=("active_opacity",),
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    label="Opacity",
                    density="compact",
                    hide_details=True,
                    id="segment-opacity",
                    disabled=("!active_fill",),
                )
                v3.VSwitch(
                    v_model=("active_fill",),
                    label="Fill",
                    density="compact",
                    hide_details=True,
                    color="primary",
                    id="segment-fill",
                    title="Off: outline only",
                )
                v3.VBtn(
                    "Delete",
                    click=self.delete_active,
                    size="small",
                    color="error",
                    variant="tonal",
                    id="segment-delete",
                    disabled=("busy",),
                )
            v3.VAlert(
                "{{ error }}",
                v_if=("error && error_where == 'segments'",),
                type="error",
                density="compact",
                id="segments-error",
                classes="mt-1",
            )
