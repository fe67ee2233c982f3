"""The modules' self-tests (WeakAnnotateLib/selftests.py) on the headless Slicer core.

Desktop Slicer runs the same bodies through each module's ScriptedLoadableModuleTest.
"""

from __future__ import annotations

import pytest
from WeakAnnotateLib.apps import selftests
from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime


@pytest.mark.parametrize(
    ("module", "test"),
    [(module, test) for module, tests in selftests.SELFTESTS.items() for test in tests],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_module_selftest(module, test):
    test(new_headless_runtime())


def test_every_module_has_selftests():
    assert set(selftests.SELFTESTS) == {"WeakAnnotate", "ExtremePointSeg", "BoxCorrection", "SurfaceTemplate"}
    names = selftests.run_module_selftests("BoxCorrection", new_headless_runtime())
    assert names == ["test_box_roi_node"]
    with pytest.raises(KeyError, match="No self-tests for module"):
        selftests.run_module_selftests("Nope", new_headless_runtime())


def test_synthetic_sample_is_usable_without_data(monkeypatch, tmp_path):
    # Desktop Slicer without shared/data falls back to a synthetic oblique, anisotropic phantom.
    monkeypatch.setenv("WEAKANNOTATE_DATA", str(tmp_path))  # no cases.json there
    monkeypatch.setattr(selftests, "default_data_dir", lambda: None)
    image, mask = selftests.sample()
    assert image.name == "synthetic" and mask.any()
    assert abs(image.geometry.spacing - [0.9, 1.1, 2.5]).max() < 1e-12
    for tests in selftests.SELFTESTS.values():
        for test in tests:
            test(new_headless_runtime())
