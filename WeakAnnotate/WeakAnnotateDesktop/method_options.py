"""A training method's own fields as a panel edits them: no Qt, so the hub's Logic (and its tests) use it headless.

The fields are the method's descriptor's (:meth:`~WeakAnnotateLib.methods.base.TrainingMethodInfo.fields`).
A panel shows each in a widget (:func:`widget_kind`), keeps what the user set for every method in one JSON
string of its parameter node (:func:`read_store`, :func:`write_store`: switching methods loses nothing, and
the scene saves it), and turns a method's values into the job spec's section (:func:`section_values`): every
field explicit, list fields parsed from their text, a value that does not fit reported with the field's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.base import FieldInfo, TrainingMethodInfo

LIST_ITEM_TYPES = {"list[int]": int, "list[float]": float, "list[str]": str}
_ITEM_WORDS = {int: "whole numbers", float: "numbers", str: "names"}


def shares_common_fields(info: TrainingMethodInfo) -> bool:
    """Whether the panel's common fields (epochs, learning rate, patch and batch size, device) go into the
    method's job; a standalone job (its own spec and loop) has all its settings among its own fields."""
    return not info.standalone


def widget_kind(field: FieldInfo) -> str:
    """The widget a field is edited with: "choice" (a combo box of its choices), "bool", "int", "float", or
    "text" (strings, and lists typed as comma-separated values)."""
    if field.choices:
        return "choice"
    if field.type in ("bool", "int", "float"):
        return field.type
    return "text"


def list_text(values: Iterable[Any]) -> str:
    """A list as a panel's line edit shows it: ``[1.0, 3.0]`` → ``"1.0, 3.0"``."""
    return ", ".join(str(v) for v in values)


def decimals_for(value: float, least: int = 3, most: int = 10) -> int:
    """Decimals a spin box needs to show ``value`` unrounded (1e-4 → 4, 0.5 → 3)."""
    text = f"{abs(float(value)):.{most}f}".rstrip("0")
    return max(least, min(most, len(text.split(".")[1])))


def _fits(field: FieldInfo, value: Any) -> bool:
    """Whether a kept value can be shown in the field's widget (a scene from an older version may hold others)."""
    if field.choices:
        return value in field.choices
    if field.type == "bool":
        return isinstance(value, bool)
    if field.type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if field.type == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if field.type in LIST_ITEM_TYPES:
        return isinstance(value, (str, list))
    return isinstance(value, str)


def form_values(fields: Iterable[FieldInfo], kept: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a method's form shows: the kept value of each field where it fits its widget, else the default;
    lists as text."""
    out = {}
    for f in fields:
        value = (kept or {}).get(f.name, f.default)
        if not _fits(f, value):
            value = f.default
        if f.type in LIST_ITEM_TYPES and isinstance(value, list):
            value = list_text(value)
        out[f.name] = value
    return out


def _list_item(item: type, part: Any) -> Any:
    if isinstance(part, bool):
        raise ValueError(part)
    if item is str:
        return str(part)
    if item is int:
        return part if isinstance(part, int) else int(str(part).strip())
    return float(part) if isinstance(part, (int, float)) else float(str(part).strip())


def _list_value(field: FieldInfo, value: Any) -> list[Any]:
    item = LIST_ITEM_TYPES[field.type]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        parts: list[Any] = [p.strip() for p in text.split(",")]
        parts = [p for p in parts if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        return [_list_item(item, p) for p in parts]
    except (TypeError, ValueError):
        raise InputError(
            f"{field.name}: expected {_ITEM_WORDS[item]} separated by commas, got {json.dumps(value)}."
        ) from None


def _scalar_value(field: FieldInfo, value: Any) -> Any:
    kind = field.type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return value if isinstance(value, int) else int(str(value).strip())
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value) if isinstance(value, (int, float)) else float(str(value).strip())
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        words = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "text"}[kind]
        raise InputError(f"{field.name}: expected {words}, got {json.dumps(value)}.") from None
    return value  # a type the panel does not know: passed on for the spec check to judge


def parse_value(field: FieldInfo, value: Any) -> Any:
    """One field's value for the job spec (list text parsed); an InputError naming the field if it does not fit."""
    parsed = _list_value(field, value) if field.type in LIST_ITEM_TYPES else _scalar_value(field, value)
    if field.choices and parsed not in field.choices:
        raise InputError(f"{field.name}: use one of {', '.join(map(str, field.choices))}, got {json.dumps(parsed)}.")
    return parsed


def section_values(fields: Iterable[FieldInfo], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The job spec's section of a method: every field (its default where ``values`` has none), parsed.

    Values of fields the method does not have (kept from an older version) are dropped.
    """
    return {f.name: parse_value(f, (values or {}).get(f.name, f.default)) for f in fields}


def read_store(text: str) -> dict[str, dict[str, Any]]:
    """The values kept per method in a parameter node's JSON string ("" or unreadable: none)."""
    try:
        doc = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): dict(v) for k, v in doc.items() if isinstance(v, dict)}


def write_store(text: str, method: str, values: Mapping[str, Any]) -> str:
    """``text`` with ``method``'s values replaced (the other methods' kept as they are)."""
    store = read_store(text)
    store[method] = dict(values)
    return json.dumps(store, sort_keys=True)
