"""``_()`` for the desktop package's user-facing texts: Slicer's translation inside desktop Slicer, the English
text everywhere else.

The module files use Slicer's own ``from slicer.i18n import tr as _``. This package cannot: its first-run code
(:mod:`.dependencies`, :mod:`.sample_data`) must import with the standard library alone, before anything is
installed, and importing ``slicer`` outside the application would load the whole headless Slicer core. So the
translation is looked up only when the running application has already loaded ``slicer``, with the context
Slicer's ``tr`` would use (``WeakAnnotateDesktop.<file>``, from the calling file), and a translation whose
``{placeholders}`` differ from the English text's is ignored, as ``tr`` does.

Write texts as ``_("Installing {package}…").format(package=name)``: one string literal per call (what the
translation tools extract), named placeholders, filled after translation.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a format string (not the ``{{escaped}}`` ones)."""
    return set(_PLACEHOLDER.findall(text))


def _slicer_i18n() -> Any:
    """Slicer's ``slicer.i18n`` module inside the running application, else None (tests, CLI, older Slicer)."""
    slicer = sys.modules.get("slicer")
    if slicer is None or getattr(slicer, "app", None) is None:
        return None
    try:
        import slicer.i18n as i18n  # Why here: only the running application has translations.
    except ImportError:  # Slicer before 5.4
        return None
    return i18n


def _(text: str) -> str:
    """``text`` translated to the application's language (in the calling file's context), or as it is."""
    i18n = _slicer_i18n()
    if i18n is None:
        return text
    filename = sys._getframe(1).f_code.co_filename
    try:
        context = i18n.getContext(filename) if hasattr(i18n, "getContext") else "WeakAnnotateDesktop"
        translated = i18n.translate(context, text)
    except Exception:  # noqa: BLE001 - a translation problem must never hide the English text
        return text
    if not isinstance(translated, str) or placeholders(translated) != placeholders(text):
        return text
    return translated
