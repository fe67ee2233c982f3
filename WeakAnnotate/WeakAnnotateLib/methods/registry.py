"""The method registry: every annotation method, its training methods, in one list every face reads.

Adding a method is one package ``methods/<name>/`` with a ``descriptor.py`` whose ``METHOD`` is an
:class:`~.base.AnnotationMethod`: the registry finds every such package. The CLI (``weakannotate methods``, the
sub-commands), the job spec's loading and check, the worker's dispatch, prediction's network, the hub panel,
the web page and the self-tests all ask this module; nothing else lists methods.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .base import AnnotationMethod, TrainingMethodInfo


def packages() -> list[str]:
    """The method packages: every sub-package of ``methods/`` with a ``descriptor.py``."""
    here = Path(__file__).resolve().parent
    return sorted(p.parent.name for p in here.glob("*/descriptor.py") if (p.parent / "__init__.py").is_file())


def _load() -> tuple[AnnotationMethod, ...]:
    # Why import by name: the packages are found on disk (a new method is one package and nothing else); each
    # descriptor module is light (no torch, no Slicer core). The faces show them in the descriptors' order.
    found = [importlib.import_module(f"{__package__}.{name}.descriptor").METHOD for name in packages()]
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two method packages declare the same method name: {sorted(names)}")
    return tuple(sorted(found, key=lambda m: (m.order, m.name)))


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
