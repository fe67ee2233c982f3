"""Text put into the page's template as a static attribute value (a tooltip's ``title``).

trame writes a static attribute into the Vue template as ``name="value"`` without escaping it, so a double
quote in a descriptor's help text would end the attribute (and break the whole page). The template compiler
decodes character references in attribute values, so the tooltip shows the text as written.
"""

from __future__ import annotations


def attribute_text(text: str) -> str:
    """``text`` safe inside a double-quoted template attribute: ``&`` and ``"`` as character references."""
    return str(text).replace("&", "&amp;").replace('"', "&quot;")
