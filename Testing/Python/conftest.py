"""Shared fixtures: the real data catalogue (``shared/data``), cases by id, and a fresh headless Slicer core.

The data live beside the checkout (``/work/shared/data`` for ``/work/main``) and are never copied into the
repository; tests write only under pytest's ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.files.cases import Case, default_data_dir, load_cases

# Testing/Python/conftest.py -> parents[0] Testing/Python, [1] Testing, [2] the checkout, [3] its parent.
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared" / "data"


def find_data_dir() -> Path | None:
    """``shared/data`` beside the checkout, else wherever ``WeakAnnotateLib.files.cases`` finds it."""
    if (_BESIDE_CHECKOUT / "cases.json").is_file():
        return _BESIDE_CHECKOUT
    return default_data_dir()


@lru_cache(maxsize=1)
def _catalogue(root: str) -> dict[str, Case]:
    return {c.id: c for c in load_cases(root)}


def case_by_id_in(data_dir: Path, case_id: str) -> Case:
    """The catalogue entry ``case_id`` of ``data_dir/cases.json`` (a KeyError names the known ids)."""
    cases = _catalogue(str(data_dir))
    if case_id not in cases:
        raise KeyError(f"case {case_id!r} not in {data_dir / 'cases.json'}; known: {sorted(cases)[:10]}...")
    return cases[case_id]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = find_data_dir()
    if root is None:
        pytest.skip(
            f"real data not found: expected {_BESIDE_CHECKOUT}/cases.json (or $WEAKANNOTATE_DATA); "
            "these tests need the shared data set"
        )
    return root


@pytest.fixture(scope="session")
def case_by_id(data_dir: Path) -> Callable[[str], Case]:
    """``case_by_id("ibsi_STS_001_PET")`` → :class:`WeakAnnotateLib.files.cases.Case` (image/mask paths, labels)."""

    def get(case_id: str) -> Case:
        return case_by_id_in(data_dir, case_id)

    return get


@pytest.fixture
def runtime():
    """A fresh headless Slicer core (scene + module logics from the slicer-core wheels) for one test."""
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    return new_headless_runtime()


@pytest.fixture(scope="module")
def module_runtime():
    """One headless Slicer core shared by a module's tests that only add nodes they do not inspect globally."""
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    return new_headless_runtime()


def load_scripted_module(monkeypatch: pytest.MonkeyPatch, path: Path, name: str, runtime: Any) -> types.ModuleType:
    """A Slicer module file (WeakAnnotate.py, ExtremePointSeg.py) loaded as it is, on ``runtime``'s scene, with
    stand-ins for only what desktop Slicer has and the slicer-core wheel lacks (they need Qt): the scripted-module
    base classes, the ``parameterNodeWrapper`` decorator and an empty ``qt``. Its Logic class is what the panel's
    widgets call, so tests drive that."""
    import slicer
    from WeakAnnotateLib.scene import slicer_runtime

    class _Base:
        def __init__(self, parent: Any = None, *_: Any) -> None:
            self.parent = parent

    template = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(template, cls, type(cls, (_Base,), {}))
    template.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    for module in (template, wrapper, types.ModuleType("qt")):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", template, raising=False)
    monkeypatch.setattr(slicer, "parameterNodeWrapper", wrapper, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", runtime.scene, raising=False)
    monkeypatch.setattr(slicer_runtime, "get_runtime", lambda: runtime)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rotation_matrix(axis: np.ndarray | tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rodrigues' rotation by ``degrees`` about ``axis`` (any length)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(degrees)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(t) * k + (1.0 - np.cos(t)) * (k @ k)


def oblique_geometry(
    shape: tuple[int, int, int] = (23, 31, 37),
    spacing: tuple[float, float, float] = (0.7, 1.3, 2.9),
    *,
    degrees: float = 20.0,
    left_handed: bool = False,
) -> Geometry:
    """A truly oblique, anisotropic grid: identity rotated ``degrees`` about (1, 2, 3), optionally mirrored."""
    d = rotation_matrix((1.0, 2.0, 3.0), degrees)
    if left_handed:
        d = d @ np.diag([1.0, 1.0, -1.0])
    return Geometry.from_spacing_origin_direction(spacing, (-12.5, 33.25, 101.75), d, shape)
