"""The page's annotation modes, one file each, looked up through the method registry's ``web_mode``.

A mode module defines a :class:`~.base.Mode` subclass and registers it under its annotation method's name;
:func:`page_modes` gives the page one mode per annotation method that has a ``web_mode``, in registry order.
Adding a mode is a descriptor's ``web_mode`` plus one module here, imported below.
"""

from __future__ import annotations

from typing import Any

from WeakAnnotateLib.methods import registry

# Imported for their @register: each module adds its mode to MODE_CLASSES.
from . import box_correction, extreme_points, surface_template  # noqa: F401
from .base import MODE_CLASSES, Mode, SavePlan

__all__ = ["MODE_CLASSES", "Mode", "SavePlan", "page_modes"]


def page_modes(app: Any) -> list[Mode]:
    """One mode per annotation method with a ``web_mode``, in registry order. A method whose descriptor names
    a web mode that no module here implements is an error at start (not a silently missing button)."""
    modes = []
    for method in registry.annotation_methods():
        if not method.web_mode:
            continue
        cls = MODE_CLASSES.get(method.name)
        if cls is None:
            raise RuntimeError(
                f"Annotation method {method.name!r} has web_mode {method.web_mode!r} but WeakAnnotateWeb.modes "
                "has no mode registered for it; add a module with a @register'ed Mode subclass."
            )
        modes.append(cls(app, method))
    return modes
