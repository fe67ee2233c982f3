"""The modules' self-tests (WeakAnnotateLib/apps/selftests.py and each method's selftests.py) on the headless
Slicer core.

Desktop Slicer runs the same bodies through each module's ScriptedLoadableModuleTest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from WeakAnnotateLib.apps import selftests
from WeakAnnotateLib.evaluation import selftest_support
from WeakAnnotateLib.methods import registry
from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

ROOT = Path(__file__).resolve().parents[2]


def _module_folders() -> set[str]:
    """The Slicer module folders of the checkout: ``<Name>/<Name>.py``."""
    return {p.parent.name for p in ROOT.glob("*/*.py") if p.stem == p.parent.name}


@pytest.mark.parametrize(
    ("module", "test"),
    [(module, test) for module, tests in selftests.module_selftests().items() for test in tests],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_module_selftest(module, test):
    test(new_headless_runtime())


def test_every_module_has_selftests():
    # Every module folder has self-tests, and every module a descriptor names is a folder of the checkout.
    tests = selftests.module_selftests()
    assert set(tests) == _module_folders()
    assert {m.module for m in registry.annotation_methods() if m.module} <= _module_folders()
    names = selftests.run_module_selftests("BoxCorrection", new_headless_runtime())
    assert names == ["test_box_roi_node"]
    with pytest.raises(KeyError, match="No self-tests for module"):
        selftests.run_module_selftests("Nope", new_headless_runtime())


def test_synthetic_sample_is_usable_without_data(monkeypatch, tmp_path):
    # Desktop Slicer without shared/data falls back to a synthetic oblique, anisotropic phantom.
    monkeypatch.setenv("WEAKANNOTATE_DATA", str(tmp_path))  # no cases.json there
    monkeypatch.setattr(selftest_support, "default_data_dir", lambda: None)
    image, mask = selftest_support.sample()
    assert image.name == "synthetic" and mask.any()
    assert abs(image.geometry.spacing - [0.9, 1.1, 2.5]).max() < 1e-12
    for tests in selftests.module_selftests().values():
        for test in tests:
            test(new_headless_runtime())
