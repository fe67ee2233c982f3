"""The form of a training method's own fields, built at run time from its descriptor (desktop Slicer only).

One widget per field (:func:`.method_options.widget_kind`): a combo box for a field with choices, a check box,
a spin box, or a line edit for text and comma-separated lists; the field's help is the tooltip and its
default the starting value. What the widgets hold goes back as plain values (lists still as text), which
:func:`.method_options.section_values` turns into the job spec's section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import qt
from WeakAnnotateLib.methods.base import FieldInfo

from .method_options import LIST_ITEM_TYPES, decimals_for, widget_kind

INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e9


def _widget(field: FieldInfo, value: Any) -> tuple[Any, str]:
    """(the widget showing ``value``, the name of its change signal)."""
    kind = widget_kind(field)
    if kind == "choice":
        w = qt.QComboBox()
        for choice in field.choices:
            w.addItem(str(choice))
        w.currentIndex = list(field.choices).index(value) if value in field.choices else 0
        return w, "currentIndexChanged(int)"
    if kind == "bool":
        w = qt.QCheckBox()
        w.checked = bool(value)
        return w, "toggled(bool)"
    if kind == "int":
        w = qt.QSpinBox()
        w.setRange(int(field.minimum) if field.minimum is not None else -INT_LIMIT, INT_LIMIT)
        w.value = int(value)
        return w, "valueChanged(int)"
    if kind == "float":
        w = qt.QDoubleSpinBox()
        w.decimals = decimals_for(value)
        w.setRange(float(field.minimum) if field.minimum is not None else -FLOAT_LIMIT, FLOAT_LIMIT)
        w.singleStep = abs(float(value)) / 10 if value else 0.1
        w.value = float(value)
        return w, "valueChanged(double)"
    w = qt.QLineEdit()
    w.text = str(value)
    return w, "textChanged(QString)"


def _read(field: FieldInfo, widget: Any) -> Any:
    kind = widget_kind(field)
    if kind == "choice":
        return field.choices[widget.currentIndex]
    if kind == "bool":
        return bool(widget.checked)
    if kind == "int":
        return int(widget.value)
    if kind == "float":
        return float(widget.value)
    return str(widget.text)


class MethodForm:
    """The rows of one method's fields in a ``qt.QFormLayout``; ``changed()`` is called on every edit."""

    def __init__(self, layout: Any, changed: Callable[[], None]) -> None:
        self.layout = layout
        self.changed = changed
        self.method = None  # the method whose fields are shown
        self._rows: list[tuple[FieldInfo, Any]] = []

    def clear(self) -> None:
        while self.layout.rowCount():
            self.layout.removeRow(0)  # deletes the row's label and widget
        self._rows = []
        self.method = None

    def show(self, method: str, fields: Iterable[FieldInfo], values: Mapping[str, Any]) -> None:
        """Replace the rows with ``method``'s fields showing ``values`` (see :func:`.method_options.form_values`)."""
        self.clear()
        self.method = method
        for field in fields:
            widget, signal = _widget(field, values[field.name])
            tip = field.help
            if field.type in LIST_ITEM_TYPES:
                tip += " (values separated by commas)"
            widget.toolTip = tip
            label = qt.QLabel(f"{field.name}:")
            label.toolTip = tip
            self.layout.addRow(label, widget)
            widget.connect(signal, lambda *_args: self.changed())
            self._rows.append((field, widget))

    def values(self) -> dict[str, Any]:
        """What the widgets hold, by field name."""
        return {field.name: _read(field, widget) for field, widget in self._rows}
