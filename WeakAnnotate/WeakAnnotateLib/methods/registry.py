"""The method registry: every annotation method, its training methods, in one list every face reads.

Adding a method is one package ``methods/<name>/`` with a ``descriptor.py`` whose ``METHOD`` is an
:class:`~.base.AnnotationMethod`, and its name in :data:`PACKAGES`. The CLI (``weakannotate methods``, the
sub-commands), the job spec's loading and check, the worker's dispatch, prediction's network, the hub panel,
the web page and the self-tests all ask this module; nothing else lists methods.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core.errors import InputError
from .base import AnnotationMethod, TrainingMethodInfo

# The order the faces show them in: the reference last.
PACKAGES = ("extreme_points", "surface_template", "box_correction", "box_prior", "pet_boxes", "full_supervision")


def _load() -> tuple[AnnotationMethod, ...]:
    # Why import by name: the list above is the registry's one statement of which packages exist; each
    # descriptor module is light (no torch, no Slicer core).
    return tuple(importlib.import_module(f"{__package__}.{name}.descriptor").METHOD for name in PACKAGES)


METHODS: tuple[AnnotationMethod, ...] = _load()


def annotation_methods() -> tuple[AnnotationMethod, ...]:
    return METHODS


def annotation_method(name: str) -> AnnotationMethod:
    for m in METHODS:
        if m.name == name:
            return m
    raise InputError(f"unknown annotation method {name!r}; use one of {', '.join(m.name for m in METHODS)}.")


def training_methods() -> tuple[TrainingMethodInfo, ...]:
    return tuple(t for m in METHODS for t in m.training_methods)


def training_method_names() -> tuple[str, ...]:
    return tuple(t.name for t in training_methods())


def training_method(name: Any, field_name: str = "method") -> TrainingMethodInfo:
    """The training method called ``name``, or an InputError naming the field and the known methods."""
    for t in training_methods():
        if t.name == name:
            return t
    raise InputError(f"{field_name}: unknown method {name!r}; use one of {', '.join(training_method_names())}.")


def method_of_training(name: str) -> AnnotationMethod:
    """The annotation method that offers the training method ``name``."""
    for m in METHODS:
        if any(t.name == name for t in m.training_methods):
            return m
    raise InputError(f"unknown training method {name!r}; use one of {', '.join(training_method_names())}.")


def by_module(module: str) -> tuple[AnnotationMethod, ...]:
    """The annotation methods whose panel is the Slicer module ``module`` ("" → the hub's)."""
    return tuple(m for m in METHODS if m.module == module)


def by_web_mode(mode: str) -> AnnotationMethod:
    for m in METHODS:
        if m.web_mode and m.web_mode == mode:
            return m
    raise InputError(f"unknown mode {mode!r}; use one of {', '.join(m.web_mode for m in METHODS if m.web_mode)}.")


def to_json() -> list[dict[str, Any]]:
    """The registry as JSON: one object per annotation method (``weakannotate methods --json``)."""
    return [m.to_json() for m in METHODS]
