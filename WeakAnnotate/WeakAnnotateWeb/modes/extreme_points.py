"""Extreme-points mode: six clicks, *Segment* runs the ExtremePointSeg pseudo-label on them."""

from __future__ import annotations

import time

from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.colors import segment_color
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.extreme_points.segmenter import segment_from_nodes
from WeakAnnotateLib.scene.markups_io import check_point_count

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
                error = f"{e} Press 'Undo point' to remove the last one."
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
            name = self.state.segment_name or "object"
            _, result = segment_from_nodes(
                app.rt, app.volume_node, self.points_node, app.segmentation_node, name, segment_color(name)
            )
            dt = time.perf_counter() - t0
            app.report(status=f"Segment '{name}': {int(result.mask.sum())} voxels in {dt:.2f} s.")
            app.render_views()
        except InputError as e:
            app.report(error=str(e))
        finally:
            app.set_busy(False)
