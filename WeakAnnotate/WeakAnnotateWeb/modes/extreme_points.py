"""Extreme-points mode: six clicks, *Segment* runs the ExtremePointSeg pseudo-label on them: a new segment
"<object> — 6 clicks" that keeps a copy of the six points (what *Save* writes with it)."""

from __future__ import annotations

import time

from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.extreme_points.segmenter import segment_from_nodes
from WeakAnnotateLib.scene.markups_io import check_point_count
from WeakAnnotateLib.scene.mrml_adapter import points_of_node

from ..segments import SegmentRecord
from .base import Mode, register

EXTREME_POINTS = 6


@register
class ExtremePointsMode(Mode):
    method_name = "extreme_points"
    label_format = "P%d"
    save_name = "extreme_points"
    action = "Segment"
    points_what = "extreme points"

    @property
    def hint(self) -> str:
        return "Click the object's six ends (left/right, front/back, top/bottom) in the slice views."

    def count_text(self, n: int) -> str:
        return f"{n} / {EXTREME_POINTS} points"

    def describe_points(self, n: int) -> tuple[str, str]:
        error = ""
        if n > EXTREME_POINTS:
            try:
                check_point_count(n, count=EXTREME_POINTS, what="extreme points")
            except InputError as e:
                error = f"{e} Press Undo (Ctrl+Z) to remove the last one."
        return f"{n} / {EXTREME_POINTS} points placed." + (" Press Segment." if n == EXTREME_POINTS else ""), error

    def build_ui(self) -> None:
        v3.VBtn(
            "Segment",
            click=self.segment,
            id="segment",
            color="primary",
            block=True,
            disabled=("!case_id || busy",),
        )

    async def segment(self) -> None:
        """Run the ExtremePointSeg pseudo-label on the six points; the segment appears in the views."""
        app = self.app
        if app.case is None:
            return
        await app.show_busy("Segmenting…")
        try:
            t0 = time.perf_counter()
            name = app.segments.result_name(f"{EXTREME_POINTS} clicks")
            points = points_of_node(self.points_node)[0]
            with app.change("Segment"):
                segment_id, result = segment_from_nodes(
                    app.rt, app.volume_node, self.points_node, app.segmentation_node, name, app.segments.new_color(name)
                )
                rng = result.diagnostics.get("intensity_range")
                record = SegmentRecord(
                    "extreme_points",
                    self.key,
                    points=points.copy(),
                    intensity_range=tuple(float(v) for v in rng) if rng is not None else None,
                )
                app.segments.adopt(segment_id, record)
            dt = time.perf_counter() - t0
            app.report(status=f"Segment '{name}': {int(result.mask.sum())} voxels in {dt:.2f} s.")
            app.render_views()
        except InputError as e:
            app.report(error=str(e))
        finally:
            app.set_busy(False)
