"""The Qt timer behind a debounce or a poll (the one place that makes one); tests pass a fake with the same
``start()``, ``stop()`` and ``isActive()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def qt_timer(interval_ms: int, callback: Callable[[], None], *, single_shot: bool = False) -> Any:
    """A ``qt.QTimer`` calling ``callback`` every ``interval_ms`` (once, ``interval_ms`` after the last
    ``start()``, when ``single_shot``)."""
    import qt  # Why here: only desktop Slicer has Qt; the rest of the package is usable without it.

    timer = qt.QTimer()
    timer.setSingleShot(single_shot)
    timer.setInterval(interval_ms)
    timer.connect("timeout()", callback)
    return timer
