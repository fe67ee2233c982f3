"""The ``weakannotate`` command: evaluate, simulate and demo, in-process and through the installed script.

Dice and IoU are checked against SimpleITK's LabelOverlapMeasuresImageFilter; surface distances against a
case whose answer is known exactly. Bad input must exit with status 2, one line on stderr, nothing written.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from WeakAnnotateLib.cli.main import main
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.evaluation.simulate import tight_box
from WeakAnnotateLib.files.image_io import read_image, write_image
from WeakAnnotateLib.scene.markups_io import read_box, read_points
from WeakAnnotateLib.scene.segmentation_io import labelmap_from_segmentation, read_segmentation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write_like(reference: sitk.Image, array: np.ndarray, path: Path) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


def _sitk_overlap(reference: Path, prediction: Path) -> tuple[float, float]:
    ref = sitk.Cast(sitk.ReadImage(str(reference)) != 0, sitk.sitkUInt8)
    pred = sitk.Cast(sitk.ReadImage(str(prediction)) != 0, sitk.sitkUInt8)
    f = sitk.LabelOverlapMeasuresImageFilter()
    f.Execute(ref, pred)
    return f.GetDiceCoefficient(), f.GetJaccardCoefficient()


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "weakannotate"
    if script.is_file():
        return [str(script)]
    found = shutil.which("weakannotate")
    return [found] if found else [sys.executable, "-m", "WeakAnnotateLib.cli.main"]


@pytest.fixture(scope="module")
def pet(data_dir):
    from conftest import case_by_id_in

    return case_by_id_in(data_dir, "ibsi_STS_001_PET")


@pytest.fixture
def eroded_prediction(pet, tmp_path) -> Path:
    """The PET reference eroded by one voxel, shifted one slice, on the same grid."""
    ref = sitk.ReadImage(str(pet.mask))
    mask = sitk.GetArrayFromImage(ref) != 0
    eroded = np.roll(ndimage.binary_erosion(mask), 1, axis=0)
    return _write_like(ref, eroded.astype(np.uint8), tmp_path / "prediction.nii.gz")


# --- evaluate -------------------------------------------------------------------------------------------------


def test_evaluate_matches_simpleitk_overlap(capsys, pet, eroded_prediction):
    code, out, err = run_cli(capsys, "evaluate", "--reference", pet.mask, "--prediction", eroded_prediction)
    assert code == 0, err
    assert err == ""
    result = json.loads(out)
    for key in ("dice", "iou", "hd95_mm", "asd_mm", "reference_voxels", "prediction_voxels"):
        assert key in result
    dice, jaccard = _sitk_overlap(pet.mask, eroded_prediction)
    assert 0.3 < dice < 0.95  # a real, imperfect prediction
    assert abs(result["dice"] - dice) <= 1e-4
    assert abs(result["iou"] - jaccard) <= 1e-4
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(pet.mask))) != 0
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(eroded_prediction))) != 0
    assert result["reference_voxels"] == int(ref.sum())
    assert result["prediction_voxels"] == int(pred.sum())
    voxel_ml = float(np.prod(sitk.ReadImage(str(pet.mask)).GetSpacing())) / 1000.0
    assert result["reference_ml"] == pytest.approx(ref.sum() * voxel_ml, rel=1e-9)
    # Distances: positive, finite, at least one in-plane voxel-ish scale and at most a few voxels.
    assert 0.0 < result["asd_mm"] <= result["hd95_mm"] < 30.0


def test_evaluate_label_of_a_multilabel_reference(capsys, data_dir, tmp_path):
    from conftest import case_by_id_in

    case = case_by_id_in(data_dir, "ts_ct_sm")
    ref = sitk.ReadImage(str(case.mask))
    labels = sitk.GetArrayFromImage(ref)
    liver = _write_like(ref, (labels == 5).astype(np.uint8), tmp_path / "liver.nii.gz")

    code, out, err = run_cli(capsys, "evaluate", "--reference", case.mask, "--prediction", liver, "--label", 5)
    assert code == 0, err
    result = json.loads(out)
    assert result["label"] == 5
    assert result["dice"] == 1.0 and result["iou"] == 1.0
    assert result["hd95_mm"] == 0.0 and result["asd_mm"] == 0.0
    assert result["reference_voxels"] == int((labels == 5).sum())

    # Without --label every organ is the reference: the liver alone is then a partial prediction.
    code, out, _ = run_cli(capsys, "evaluate", "--reference", case.mask, "--prediction", liver)
    dice, _ = _sitk_overlap(case.mask, liver)
    assert abs(json.loads(out)["dice"] - dice) <= 1e-4 and dice < 0.9

    # --prediction-label picks one value of a multi-label prediction.
    code, out, _ = run_cli(capsys, "evaluate", "--reference", liver, "--prediction", case.mask, "--prediction-label", 5)
    assert code == 0 and json.loads(out)["dice"] == 1.0


def test_evaluate_known_surface_distances(capsys, tmp_path):
    """A 40³ cube (2 mm voxels) against the cube grown by one voxel on every side."""
    g = Geometry.from_spacing_origin_direction((2.0, 2.0, 2.0), (-50.0, 20.0, 7.0), None, (50, 50, 50))
    cube = np.zeros(g.shape, np.uint8)
    cube[5:45, 5:45, 5:45] = 1
    grown = np.zeros(g.shape, np.uint8)
    grown[4:46, 4:46, 4:46] = 1
    write_image(tmp_path / "ref.nii.gz", cube, g)
    write_image(tmp_path / "pred.nii.gz", grown, g)
    code, out, err = run_cli(
        capsys, "evaluate", "--reference", tmp_path / "ref.nii.gz", "--prediction", tmp_path / "pred.nii.gz"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["hd95_mm"] == pytest.approx(2.0, abs=1e-6)
    assert 2.0 <= result["asd_mm"] <= 2.2
    # Exactly: reference surface (40³ - 38³ voxels) all 2 mm away; grown surface (42³ - 40³): faces 2 mm,
    # 12·40 edge voxels 2√2 mm, 8 corners 2√3 mm; symmetric mean over both surfaces.
    ref_surface, grown_surface = 40**3 - 38**3, 42**3 - 40**3
    total = ref_surface * 2.0 + (grown_surface - 488) * 2.0 + 480 * 2 * math.sqrt(2) + 8 * 2 * math.sqrt(3)
    assert result["asd_mm"] == pytest.approx(total / (ref_surface + grown_surface), abs=1e-5)
    assert result["dice"] == pytest.approx(2 * 40**3 / (40**3 + 42**3), abs=1e-12)
    assert result["iou"] == pytest.approx(40**3 / 42**3, abs=1e-12)
    assert result["reference_ml"] == pytest.approx(40**3 * 8 / 1000.0)


def test_evaluate_empty_prediction(capsys, pet, tmp_path):
    ref = sitk.ReadImage(str(pet.mask))
    empty = _write_like(ref, np.zeros(ref.GetSize()[::-1], np.uint8), tmp_path / "empty.nii.gz")
    code, out, err = run_cli(capsys, "evaluate", "--reference", pet.mask, "--prediction", empty)
    assert code == 0, err
    result = json.loads(out)
    assert result["dice"] == 0.0 and result["iou"] == 0.0
    assert result["hd95_mm"] is None and result["asd_mm"] is None
    assert '"hd95_mm": null' in out
    assert result["prediction_voxels"] == 0


def _bad_evaluate_inputs(kind: str, pet, data_dir: Path, folder: Path) -> tuple[list[str], list[str]]:
    """(argv after 'evaluate', fragments the one-line message must contain)."""
    ref = sitk.ReadImage(str(pet.mask))
    mask = sitk.GetArrayFromImage(ref)
    good = _write_like(ref, mask, folder / "same.nii.gz")
    if kind == "grids-differ":
        from conftest import case_by_id_in

        ct_mask = case_by_id_in(data_dir, "ibsi_STS_001_CT").mask
        return ["--reference", str(pet.mask), "--prediction", str(ct_mask)], ["different grids", "resample"]
    if kind == "grids-shifted":  # same shape, origin moved by half a voxel
        shifted = sitk.GetImageFromArray(mask)
        shifted.CopyInformation(ref)
        shifted.SetOrigin(tuple(np.asarray(ref.GetOrigin()) + (2.3, 0.0, 0.0)))
        sitk.WriteImage(shifted, str(folder / "shifted.nii.gz"))
        return ["--reference", str(pet.mask), "--prediction", str(folder / "shifted.nii.gz")], ["different grids"]
    if kind == "empty-reference":
        empty = _write_like(ref, np.zeros_like(mask), folder / "empty.nii.gz")
        return ["--reference", str(empty), "--prediction", str(good)], ["reference mask is empty"]
    if kind == "missing-reference":
        return ["--reference", str(folder / "nope.nii.gz"), "--prediction", str(good)], ["does not exist", "nope"]
    if kind == "missing-prediction":
        return ["--reference", str(good), "--prediction", str(folder / "nope.nii.gz")], [
            "Prediction file",
            "does not exist",
        ]
    if kind == "label-not-present":
        return ["--reference", str(good), "--prediction", str(good), "--label", "7"], ["Label 7", "does not occur"]
    if kind == "corrupt":
        (folder / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 20)
        return ["--reference", str(good), "--prediction", str(folder / "corrupt.nii.gz")], ["corrupt"]
    if kind == "2d":
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkUInt8), str(folder / "flat.nii.gz"))
        return ["--reference", str(folder / "flat.nii.gz"), "--prediction", str(good)], ["2D"]
    if kind == "4d":
        sitk.WriteImage(sitk.Image([20, 30, 10, 3], sitk.sitkUInt8), str(folder / "series.nii.gz"))
        return ["--reference", str(good), "--prediction", str(folder / "series.nii.gz")], ["4D"]
    raise AssertionError(kind)


BAD_EVALUATE = [
    "grids-differ",
    "grids-shifted",
    "empty-reference",
    "missing-reference",
    "missing-prediction",
    "label-not-present",
    "corrupt",
    "2d",
    "4d",
]


@pytest.mark.parametrize("kind", BAD_EVALUATE)
def test_evaluate_bad_input_exits_2_with_one_line(capsys, pet, data_dir, tmp_path, kind):
    argv, fragments = _bad_evaluate_inputs(kind, pet, data_dir, tmp_path)
    listing = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, "evaluate", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("weakannotate evaluate: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written


def test_installed_console_script(pet, eroded_prediction, tmp_path):
    command = _console_script()
    done = subprocess.run(
        [*command, "evaluate", "--reference", str(pet.mask), "--prediction", str(eroded_prediction)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dice, jaccard = _sitk_overlap(pet.mask, eroded_prediction)
    result = json.loads(done.stdout)
    assert abs(result["dice"] - dice) <= 1e-4 and abs(result["iou"] - jaccard) <= 1e-4

    done = subprocess.run(
        [*command, "evaluate", "--reference", str(tmp_path / "missing.nii.gz"), "--prediction", str(pet.mask)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("weakannotate evaluate: error:") and "does not exist" in lines[0]


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--reference", "x.nii.gz"])  # --prediction missing
    assert e.value.code == 2
    assert "--prediction" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2


# --- simulate -----------------------------------------------------------------------------------------------------


def test_simulate_writes_the_four_kinds_of_file(capsys, pet, tmp_path):
    out_dir = tmp_path / "annotations"
    code, out, err = run_cli(
        capsys,
        "simulate",
        "--mask",
        pet.mask,
        "--output-dir",
        out_dir,
        "--jitter-mm",
        2,
        "--margin-mm",
        5,
        "--surface-points",
        30,
        "--seed",
        3,
    )
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "box.mrk.json",
        "extreme_points.mrk.json",
        "slice_boxes",
        "surface_points.mrk.json",
    ]
    labels = read_image(pet.mask)
    mask, g = labels.array != 0, labels.geometry
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    assert sorted(p.name for p in (out_dir / "slice_boxes").iterdir()) == [f"slice_{s:03d}.mrk.json" for s in slices]
    assert "extreme_points" in out and "slice_boxes" in out

    points, point_labels = read_points(out_dir / "extreme_points.mrk.json", count=6, geometry=g)
    assert point_labels == ["right", "left", "anterior", "posterior", "inferior", "superior"]
    from WeakAnnotateLib.evaluation.simulate import extreme_points

    exact, _ = extreme_points(mask, g)
    assert np.linalg.norm(points - exact, axis=1).max() <= 2.0 + 1e-6
    box = read_box(out_dir / "box.mrk.json", geometry=g)
    np.testing.assert_allclose(box.size, tight_box(mask, g).size + 10.0, atol=1e-6)
    surface, _ = read_points(out_dir / "surface_points.mrk.json", count=30, geometry=g)
    assert len(np.unique(g.ras_to_index(surface), axis=0)) == 30


@pytest.mark.parametrize("kind", ["missing-mask", "label-not-present", "empty-mask", "2d-mask"])
def test_simulate_bad_input_writes_nothing(capsys, pet, tmp_path, kind):
    ref = sitk.ReadImage(str(pet.mask))
    argv = ["--mask", str(pet.mask)]
    fragment = ""
    if kind == "missing-mask":
        argv, fragment = ["--mask", str(tmp_path / "nope.nii.gz")], "does not exist"
    elif kind == "label-not-present":
        argv, fragment = ["--mask", str(pet.mask), "--label", "4"], "Label 4"
    elif kind == "empty-mask":
        empty = _write_like(ref, np.zeros(ref.GetSize()[::-1], np.uint8), tmp_path / "empty.nii.gz")
        argv, fragment = ["--mask", str(empty)], "empty"
    elif kind == "2d-mask":
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkUInt8), str(tmp_path / "flat.nii.gz"))
        argv, fragment = ["--mask", str(tmp_path / "flat.nii.gz")], "2D"
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "simulate", *argv, "--output-dir", out_dir)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weakannotate simulate: error:")
    assert fragment in lines[0], lines[0]
    assert not out_dir.exists()


# --- demo -------------------------------------------------------------------------------------------------------


def test_demo_on_a_fast_case(capsys, data_dir, pet, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--data", data_dir, "--case", "ibsi_STS_001_PET", "--output", out_dir)
    assert code == 0, err
    assert "[5/5]" in out
    names = {p.name for p in out_dir.iterdir()}
    assert {"report.md", "overlay.png", "annotations", "reference.seg.nrrd"} <= names
    assert not [p for p in out_dir.rglob("*") if "partial" in p.name]

    png = (out_dir / "overlay.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000

    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "ibsi_STS_001_PET" in report
    dice = re.search(r"Dice (\d\.\d{3})", report)
    assert dice is not None, report
    assert 0.0 < float(dice.group(1)) < 1.0  # the tight box as a segmentation: overlapping, not perfect

    annotations = {p.name for p in (out_dir / "annotations").glob("*.mrk.json")}
    assert annotations == {"extreme_points.mrk.json", "box.mrk.json", "surface_points.mrk.json"}
    labels = read_image(pet.mask)
    mask, g = labels.array != 0, labels.geometry
    points, _ = read_points(out_dir / "annotations" / "extreme_points.mrk.json", count=6, geometry=g)
    box = read_box(out_dir / "annotations" / "box.mrk.json", geometry=g)
    np.testing.assert_allclose(box.size, tight_box(mask, g).size, atol=1e-6)

    # The reference segmentation written by the demo is the mask, voxel for voxel.
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    node = read_segmentation(new_headless_runtime(), out_dir / "reference.seg.nrrd")
    back, _ = labelmap_from_segmentation(node, g)
    np.testing.assert_array_equal(back != 0, mask)


@pytest.mark.parametrize(
    ("case_id", "fragment"),
    [("no_such_case", "No case 'no_such_case'"), ("STS_001", "Did you mean ibsi_STS_001_CT")],
)
def test_demo_unknown_case_exits_2_and_writes_nothing(capsys, data_dir, tmp_path, case_id, fragment):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--data", data_dir, "--case", case_id, "--output", out_dir)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weakannotate demo: error:")
    assert fragment in lines[0]
    assert not out_dir.exists()


def test_demo_without_a_catalogue_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "demo", "--data", tmp_path, "--case", "x", "--output", tmp_path / "o")
    assert code == 2
    assert "No case catalogue found" in err
    assert not (tmp_path / "o").exists()
