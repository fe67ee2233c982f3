"""Surface-points mode: points on the object's boundary, *Fit template* fits the active-surface template: a new
segment "<object> — template, N points" that keeps a copy of the points."""

from __future__ import annotations

import time
from typing import Any

from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.surface_template.active_surface import MIN_POINTS
from WeakAnnotateLib.methods.surface_template.nodes import surface_template_from_nodes
from WeakAnnotateLib.scene.mrml_adapter import points_of_node

from ..segments import SegmentRecord
from .base import Mode, register


@register
class SurfaceTemplateMode(Mode):
    method_name = "surface_template"
    label_format = "S%d"
    color = (0.3, 0.8, 1.0)
    save_name = "surface_points"
    action = "Fit template"
    points_what = "surface points"

    def __init__(self, app: Any, method: Any) -> None:
        super().__init__(app, method)
        self.surface: Any = None  # the last fitted ActiveSurface, warm-started by the next fit

    @property
    def hint(self) -> str:
        return f"Click at least {MIN_POINTS} points on the object's boundary, spread over it, then 'Fit template'."

    def count_text(self, n: int) -> str:
        return f"{n} (≥ {MIN_POINTS}) points"

    def describe_points(self, n: int) -> tuple[str, str]:
        more = " Press 'Fit template'." if n >= MIN_POINTS else f" At least {MIN_POINTS} are needed."
        return f"{n} surface points placed." + more, ""

    def build_ui(self) -> None:
        v3.VBtn(
            "Fit template",
            click=self.fit_template,
            id="fit-template",
            color="primary",
            block=True,
            disabled=("!case_id || busy",),
        )

    def case_closed(self) -> None:
        self.surface = None

    async def fit_template(self) -> None:
        """Fit the active-surface template to the surface points; the segment appears in the views."""
        app = self.app
        if app.case is None:
            return
        await app.show_busy("Fitting the template…")
        try:
            t0 = time.perf_counter()
            points = points_of_node(self.points_node)[0]
            name = app.segments.result_name(f"template, {len(points)} points")
            with app.change("Fit template"):
                segment_id, self.surface = surface_template_from_nodes(
                    app.rt,
                    app.volume_node,
                    self.points_node,
                    app.segmentation_node,
                    name,
                    app.segments.new_color(name),
                    surface=self.surface,
                )
                app.segments.adopt(segment_id, SegmentRecord("surface_template", self.key, points=points.copy()))
            dt = time.perf_counter() - t0
            app.report(status=f"Template '{name}' fitted to {app.defined_points()} points in {dt:.2f} s.")
            app.render_views()
        except InputError as e:
            app.report(error=str(e))
        finally:
            app.set_busy(False)
