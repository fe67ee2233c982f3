"""What one annotation mode of the page is: its point list, its hint, its main action and what *Save* writes.

The page's modes are the registry's annotation methods that have a ``web_mode``, in registry order
(:func:`WeakAnnotateWeb.modes.page_modes`); each is a :class:`Mode` subclass registered under its annotation
method's name with :func:`register`. The app (``app.py``) keeps what all modes share: the case, the views, one
point list per mode and its observers, *Place points* / *Undo* / *Clear*, *Save* and the status line. A mode
adds its own controls and actions and answers the app's questions (how to describe N points, what to save).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from WeakAnnotateLib.methods.base import AnnotationMethod


@dataclass
class SavePlan:
    """What *Save* writes for a mode, decided (and refused, as an InputError) before anything is written."""

    node: Any  # the markups node written as ``<name>.mrk.json`` (a point list, or box mode's ROI)
    documents: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)  # JSON files written after it
    stale: list[Path] = field(default_factory=list)  # an earlier save's files that no longer belong: removed


class Mode:
    """One annotation mode of the page. ``key`` is the annotation method's ``web_mode`` (the page's ``mode``
    state and the ``#mode-<key>`` button), ``title`` its descriptor's title."""

    method_name: ClassVar[str] = ""  # the registry's annotation method this mode is the page of
    label_format: ClassVar[str] = "P%d"  # the point labels in the views
    color: ClassVar[tuple[float, float, float] | None] = None  # the points' selected colour (None: Slicer's)
    save_name: ClassVar[str] = "points"  # the default annotation name while the user has not typed one
    action: ClassVar[str] = ""  # the main button's text, named in messages ("press Segment again")
    points_what: ClassVar[str] = "points"  # what the points are, in "Nothing to save: place the … first."

    def __init__(self, app: Any, method: AnnotationMethod) -> None:
        self.app = app
        self.method = method
        self.key = method.web_mode
        self.title = method.title

    # --- shared plumbing ------------------------------------------------------------------------------

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def points_node(self) -> Any:
        """This mode's point list in the open case (None without a case)."""
        return self.app.points_nodes.get(self.key)

    # --- what a mode says and does --------------------------------------------------------------------

    @property
    def hint(self) -> str:
        """The line under the mode switch: what to click."""
        raise NotImplementedError

    def count_text(self, n: int) -> str:
        """The point count line, e.g. "3 / 6 points"."""
        return f"{n} points"

    def describe_points(self, n: int) -> tuple[str, str]:
        """(status, error) after the point list changed to ``n`` defined points; the status is shown only
        when there is no error and at least one point."""
        return f"{n} points placed.", ""

    def build_ui(self) -> None:
        """The mode's main button and any controls of its own (shown only while the mode is on)."""
        raise NotImplementedError

    def show(self, visible: bool) -> None:
        """Show or hide what the mode put in the views (its points; box mode also its ROI)."""
        if self.points_node is not None:
            self.points_node.GetDisplayNode().SetVisibility(visible)

    def case_closed(self) -> None:
        """Forget what belongs to the case being closed (the app removes the point lists itself)."""

    def points_moved(self, before: Any, after: Any) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """The user changed this mode's points from ``before`` to ``after`` (N x 3 RAS): update what follows
        them and return its history state (before, after), recorded with the points as one undoable action."""
        return {}, {}

    def save_plan(self, name: str) -> SavePlan:
        """What *Save* writes as ``name``; an InputError refuses the save before anything is written."""
        return SavePlan(self.points_node)


MODE_CLASSES: dict[str, type[Mode]] = {}


def register(cls: type[Mode]) -> type[Mode]:
    """Class decorator: ``cls`` is the page of the annotation method ``cls.method_name``."""
    if not cls.method_name:
        raise TypeError(f"{cls.__name__}: set method_name to the registry's annotation method.")
    MODE_CLASSES[cls.method_name] = cls
    return cls
