"""Point lists in the annotation panels: follow the one the user edits, and restore the one kept on a segment.

Why a debounce: dragging a point fires an event per mouse move; an update (a random walker, a template fit)
runs once, shortly after the last event of a burst, so the panel keeps up with the hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.scene.mrml_adapter import add_points_node, stored_points
from WeakAnnotateLib.scene.slicer_runtime import SlicerRuntime, get_runtime

from .timer import qt_timer

# Placing a point, dropping it after a drag, and deleting it (not every move of a drag).
POINT_EVENT_NAMES = ("PointPositionDefinedEvent", "PointEndInteractionEvent", "PointRemovedEvent")


def point_events() -> tuple[int, ...]:
    import slicer  # Why here: the event ids are the Slicer core's (desktop or headless wheel), read when used.

    return tuple(getattr(slicer.vtkMRMLMarkupsNode, name) for name in POINT_EVENT_NAMES)


class PointListWatcher:
    """Follows one point list: every placed, dropped or deleted point calls ``edited(node)`` at once, and, while
    ``active()`` holds, ``settled()`` once, ``delay_ms`` after the last event of a burst.

    ``timer``: a single-shot timer whose timeout calls ``settled`` (a ``qt.QTimer`` unless given).
    """

    def __init__(
        self,
        settled: Callable[[], None],
        delay_ms: int,
        *,
        edited: Callable[[Any], None] | None = None,
        active: Callable[[], bool] = lambda: True,
        timer: Any = None,
    ) -> None:
        self.edited = edited
        self.active = active
        self.timer = timer if timer is not None else qt_timer(delay_ms, settled, single_shot=True)
        self.node: Any = None
        self._tags: list[int] = []

    def follow(self, node: Any) -> None:
        """Observe ``node`` (None: none) instead of the list observed so far; the same node again is a no-op."""
        if node is self.node:
            return
        if self.node is not None:
            for tag in self._tags:
                self.node.RemoveObserver(tag)
        self.node, self._tags = node, []
        if node is not None:
            self._tags = [node.AddObserver(event, self._onPointEvent) for event in point_events()]

    def _onPointEvent(self, caller: Any, event: Any) -> None:
        if self.edited is not None:
            self.edited(caller)
        if self.active():
            self.timer.start()  # restarting a single-shot timer postpones it: one update per burst

    def stop(self) -> None:
        """Stop observing and drop a pending update (the widget's cleanup)."""
        self.timer.stop()
        self.follow(None)


def points_node_from_segment(
    segmentation_node: Any,
    segment_name: str,
    tag: str,
    *,
    what: str,
    hint: str,
    rt: SlicerRuntime | None = None,
) -> Any:
    """A new point list "<segment> <what>" holding the points an earlier Apply kept on the segment (its ``tag``),
    so that the segment can be edited; an InputError saying ``hint`` (what to do instead) when it has none."""
    if segmentation_node is None:
        raise InputError("Select the segmentation that holds the segment.")
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    points = stored_points(segmentation_node, segment_id, tag) if segment_id else None
    if points is None:
        raise InputError(f"Segment '{segment_name}' has no stored {what}; {hint}.")
    return add_points_node(rt or get_runtime(), points, name=f"{segment_name} {what}")
