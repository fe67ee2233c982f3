"""Box correction: patches and their labels, box shrinking by hand, a real training job, the CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from WeakAnnotateLib.cli.main import main
from WeakAnnotateLib.core.box import Box
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.data.dataset import CaseEntry, DatasetFolder
from WeakAnnotateLib.evaluation.simulate import tight_box
from WeakAnnotateLib.files.image_io import read_image, read_mask, write_image
from WeakAnnotateLib.methods.box_correction.classifier import (
    BoxClassifierParams,
    LabelledVolume,
    correct_box,
    extract_patches,
    load_box_model,
    patch_labels,
    patch_starts,
    shrink_box,
    slice_box_iou,
    train_box_classifier,
)

# BraTS FLAIR shows the whole tumour; three crops train, a fourth patient is held out.
TRAIN = [("pat0001_1", "Flair"), ("pat0002_1", "Flair"), ("pat0001_1", "T1c")]
HELD_OUT = ("pat0003_1", "Flair")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- patches and shrinking, by hand ------------------------------------------------------------------------


def test_patch_starts_cover_the_crop_with_half_overlap() -> None:
    assert patch_starts(32, 16).tolist() == [0, 8, 16]
    assert patch_starts(37, 16).tolist() == [0, 8, 16, 21]  # one flush with the end
    assert patch_starts(10, 16).tolist() == [0]  # narrower than a patch: one (padded) patch


def test_patch_labels_need_more_than_half_the_patch() -> None:
    mask = np.zeros((8, 12), bool)
    mask[:, :6] = True  # columns 0..5
    # p = 4, stride 2: column origins 0, 2, 4, 6, 8 → coverage 1, 1, 0.5, 0, 0 (0.5 is not "more than half")
    labels = patch_labels(mask, 4).reshape(3, 5)
    assert labels.tolist() == [[1, 1, 0, 0, 0]] * 3
    patches, rs, cs = extract_patches(np.arange(96, dtype=np.float32).reshape(8, 12), 4)
    assert patches.shape == (15, 4, 4) and rs.tolist() == [0, 2, 4] and cs.tolist() == [0, 2, 4, 6, 8]
    assert patches[6, 0, 0] == 2 * 12 + 2  # row origin 2, column origin 2
    # a crop smaller than p is zero-padded to one patch
    small, _, _ = extract_patches(np.ones((3, 3), np.float32), 4)
    assert small.shape == (1, 4, 4) and small.sum() == 9


def test_shrink_box_to_the_foreground_patches_extent_clipped_to_the_crop() -> None:
    rs, cs = np.array([0, 8, 16, 21]), np.array([0, 8, 16])
    fg = np.zeros((4, 3), bool)
    fg[1, 1] = fg[3, 1] = True
    assert shrink_box(fg, fg.astype(float), rs, cs, 16, (37, 32)) == ((8, 8), (36, 23))
    fg[:] = False
    fg[0, 2] = True
    assert shrink_box(fg, fg.astype(float), rs, cs, 16, (37, 30)) == ((0, 16), (15, 29))  # clipped to width 30
    prob = np.zeros((4, 3))
    prob[2, 0] = 0.3  # nothing above the threshold: the most probable patch
    assert shrink_box(np.zeros((4, 3), bool), prob, rs, cs, 16, (37, 32)) == ((16, 0), (31, 15))


def test_too_few_volumes_or_bad_parameters_are_refused() -> None:
    g = Geometry.from_spacing_origin_direction((1, 1, 1), (0, 0, 0), None, (4, 20, 20))
    m = np.zeros((4, 20, 20), bool)
    m[1:3, 5:15, 5:15] = True
    vol = LabelledVolume(np.zeros((4, 20, 20), np.float32), m, g)
    with pytest.raises(InputError, match="at least 3"):
        train_box_classifier([vol, vol])
    with pytest.raises(InputError, match="patch_size"):
        train_box_classifier([vol] * 3, BoxClassifierParams(patch_size=15))


# --- real data: crops, a training job, the CLI -------------------------------------------------------------


def _crop(data_dir: Path, patient: str, seq: str, out: Path, margin: int = 12) -> tuple[Path, Path]:
    from WeakAnnotateLib.evaluation.simulate import box_index_bounds

    image = read_image(data_dir / "brats" / patient / f"{seq}_subtrMeanDivStd.nii.gz")
    mask = read_mask(data_dir / "brats" / patient / "OTMultiClass.nii.gz")
    lo, hi = box_index_bounds(tight_box(mask, image.geometry), image.geometry)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(hi + margin, np.asarray(mask.shape) - 1)
    index = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    geometry = image.geometry.crop(
        tuple(int(v) for v in lo), tuple(int(b - a + 1) for a, b in zip(lo, hi, strict=True))
    )
    img_path, mask_path = out / f"{patient}_{seq}.nii.gz", out / f"{patient}_{seq}_mask.nii.gz"
    write_image(img_path, image.array[index].astype(np.float32), geometry)
    write_image(mask_path, mask[index].astype(np.uint8), geometry)
    return img_path, mask_path


@pytest.fixture(scope="module")
def crops(data_dir: Path, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    out = tmp_path_factory.mktemp("brats_crops")
    return {f"{p}_{s}": _crop(data_dir, p, s, out) for p, s in [*TRAIN, HELD_OUT]}


def _dataset(root: Path, crops: dict[str, tuple[Path, Path]], ids: list[str]) -> Path:
    ds = DatasetFolder(root, root.name)
    for case_id in ids:
        image, mask = crops[case_id]
        ds.add_case(CaseEntry(id=case_id, image=str(image), reference=str(mask), modality="MR"))
    ds.save()
    return root


def _job(tmp: Path, dataset: Path, **fields: object) -> Path:
    spec = {"dataset": str(dataset), "output": str(tmp / "job"), "method": "box_patch_classifier", **fields}
    path = tmp / "job.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(crops, tmp_path_factory) -> Path:
    """A model trained by ``weakannotate train`` on three BraTS crops (p = 16, a few CPU-sized epochs)."""
    tmp = tmp_path_factory.mktemp("box_job")
    dataset = _dataset(tmp / "ds", crops, [f"{p}_{s}" for p, s in TRAIN])
    job = _job(tmp, dataset, epochs=4, width=8, max_patches_per_volume=2500, patch_size=16)
    assert main(["train", "--job", str(job)]) == 0
    lines = [json.loads(x) for x in (tmp / "job" / "progress.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "done"
    assert [x["epoch"] for x in lines if x["event"] == "epoch"] == [1, 2, 3, 4]
    return tmp / "job"


def test_trained_model_tightens_held_out_boxes(trained, crops) -> None:
    model = load_box_model(trained)
    assert model.info["modalities"] == ["MR"] and model.params.patch_size == 16
    image_path, mask_path = crops["_".join(HELD_OUT)]
    image = read_image(image_path)
    mask = read_mask(mask_path)
    result = correct_box(model, image.array, image.geometry, tight_box(mask, image.geometry), modality="MR")
    iou = slice_box_iou(result, mask)
    print(f"held-out {HELD_OUT}: slice-box IoU raw {iou['raw']:.3f} → corrected {iou['corrected']:.3f}")
    assert iou["corrected"] > iou["raw"] + 0.1, iou
    assert result.warnings == []
    # Speed (< 1 s per box) is a benchmark's job, not a unit test's: timing asserts are noise on shared cores.
    # every corrected box lies within its raw box; the pseudo-mask is their union and lies inside the raw one
    for s in result.slices:
        assert all(r <= c for r, c in zip(s.raw_lo, s.lo, strict=True))
        assert all(c <= r for r, c in zip(s.raw_hi, s.hi, strict=True))
    pseudo, raw = result.mask(image.geometry.shape), result.mask(image.geometry.shape, raw=True)
    assert pseudo.sum() < raw.sum() and not (pseudo & ~raw).any()


def test_box_correct_cli_end_to_end(capsys, trained, crops, tmp_path) -> None:
    from WeakAnnotateLib.scene.markups_io import write_box

    image_path, mask_path = crops["_".join(HELD_OUT)]
    image = read_image(image_path)
    box = tight_box(read_mask(mask_path), image.geometry, margin_mm=2.0)
    write_box(tmp_path / "box.mrk.json", box)
    out, pseudo = tmp_path / "boxes.json", tmp_path / "pseudo.nii.gz"
    code, stdout, err = run_cli(
        capsys, "box-correct", "--model", trained, "--image", image_path, "--box", tmp_path / "box.mrk.json",
        "--output", out, "--mask", pseudo,
    )  # fmt: skip
    assert code == 0, err
    assert err == "" and "slice boxes corrected" in stdout
    doc = json.loads(out.read_text())
    assert doc["coordinateSystem"] == "RAS" and doc["axis"] == 0 and doc["patch_size"] == 16
    first = doc["slices"][0]
    assert set(first) == {"slice_index", "raw", "corrected", "max_probability"}
    # the corrected RAS box of a slice has that slice's thickness and lies inside the raw RAS box
    c, r = first["corrected"], first["raw"]
    assert c["size"][2] == pytest.approx(image.geometry.spacing[2])
    assert all(cs <= rs + 1e-6 for cs, rs in zip(c["size"], r["size"], strict=True))
    assert read_image(pseudo).array.max() == 1
    assert not list(tmp_path.glob(".*partial*"))
    # the file reads back (as box_prior's slice_boxes annotation does) as exactly the pseudo-mask ...
    from WeakAnnotateLib.methods.box_correction.classifier import read_slice_boxes

    assert np.array_equal(read_slice_boxes(out, image.geometry), read_image(pseudo).array > 0)
    # ... and refuses another volume's grid: a shifted origin puts the RAS boxes elsewhere
    shifted = image.geometry.ijk_to_ras.copy()
    shifted[:3, 3] += 50.0
    moved = Geometry(shifted, image.geometry.shape)
    with pytest.raises(InputError, match="belong to another volume"):
        read_slice_boxes(out, moved)
    with pytest.raises(InputError, match="do not fit this image"):
        read_slice_boxes(out, Geometry(image.geometry.ijk_to_ras, (2, 2, 2)))


def test_box_correct_warns_for_another_modality(capsys, trained, crops, tmp_path) -> None:
    from WeakAnnotateLib.scene.markups_io import write_box

    image_path, mask_path = crops["_".join(HELD_OUT)]
    image = read_image(image_path)
    write_box(tmp_path / "box.mrk.json", tight_box(read_mask(mask_path), image.geometry))
    code, _, err = run_cli(
        capsys, "box-correct", "--model", trained, "--image", image_path, "--box", tmp_path / "box.mrk.json",
        "--output", tmp_path / "b.json", "--modality", "CT",
    )  # fmt: skip
    assert code == 0
    assert err.count("\n") == 1 and "warning" in err and "trained on MR" in err
    # CT-like intensities (Hounsfield units) on the same grid: the intensity check warns without --modality
    hu = tmp_path / "hu.nii.gz"
    write_image(hu, (image.array * 300.0 + 1000.0).astype(np.float32), image.geometry)
    code, _, err = run_cli(
        capsys, "box-correct", "--model", trained, "--image", hu, "--box", tmp_path / "box.mrk.json",
        "--output", tmp_path / "c.json",
    )  # fmt: skip
    assert code == 0 and "training range" in err


@pytest.mark.parametrize("kind", ["outside", "zero_extent", "not_a_model", "bad_output"])
def test_box_correct_bad_input_exits_2_with_one_line(capsys, trained, crops, tmp_path, kind) -> None:
    from WeakAnnotateLib.scene.markups_io import write_box

    image_path, _ = crops["_".join(HELD_OUT)]
    image = read_image(image_path)
    center = image.geometry.index_to_ras(np.array([[0, 0, 0]]))[0]
    box = Box(center=center, size=np.array([20.0, 20.0, 20.0]), axes=np.eye(3))
    if kind == "outside":
        box = Box(center=center + 1000.0, size=box.size, axes=box.axes)
    if kind == "zero_extent":
        box = Box(center=center + 10.0, size=np.array([20.0, 0.0, 20.0]), axes=box.axes)
    write_box(tmp_path / "box.mrk.json", box)
    model = tmp_path if kind == "not_a_model" else trained
    output = tmp_path / ("boxes.txt" if kind == "bad_output" else "boxes.json")
    code, _, err = run_cli(
        capsys, "box-correct", "--model", model, "--image", image_path, "--box", tmp_path / "box.mrk.json",
        "--output", output,
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("weakannotate box-correct: error:")
    assert not output.exists()


def test_train_job_with_too_few_labelled_volumes_exits_2(capsys, crops, tmp_path) -> None:
    dataset = _dataset(tmp_path / "ds", crops, [f"{p}_{s}" for p, s in TRAIN[:2]])
    code, _, err = run_cli(capsys, "train", "--job", _job(tmp_path, dataset))
    assert code == 2 and "at least 3" in err and err.count("\n") == 1
    assert not (tmp_path / "job").exists()
    code, _, err = run_cli(capsys, "train", "--job", _job(tmp_path, dataset, patch_size="16"))
    assert code == 2 and err.startswith("weakannotate train: error: patch_size: expected an integer")


def test_apply_to_nodes_writes_raw_and_corrected_segments(runtime, trained, crops, tmp_path) -> None:
    """The panel's Apply on a headless scene: two segments, the corrected one inside the raw one."""
    from WeakAnnotateLib.methods.box_correction.classifier import apply_to_nodes
    from WeakAnnotateLib.scene.mrml_adapter import add_roi_node, add_segmentation_node, add_volume_node, segment_mask

    image_path, mask_path = crops["_".join(HELD_OUT)]
    image = read_image(image_path)
    volume = add_volume_node(runtime, image, "flair")
    roi = add_roi_node(runtime, tight_box(read_mask(mask_path), image.geometry), "tumour box")
    seg = add_segmentation_node(runtime, "boxes", volume)
    result, ids = apply_to_nodes(runtime, volume, roi, seg, load_box_model(trained))
    raw = segment_mask(seg, ids["raw"], image.geometry)
    corrected = segment_mask(seg, ids["corrected"], image.geometry)
    assert seg.GetSegmentation().GetSegment(ids["corrected"]).GetName() == "tumour box corrected"
    assert np.array_equal(corrected, result.mask(image.geometry.shape))
    assert 0 < corrected.sum() < raw.sum() and not (corrected & ~raw).any()

    # Accept after an edit: the user erases the corrected segment's last slice and paints one extra voxel
    # outside the box in slice k0; the stored boxes follow the edit, the path is kept on the ROI node.
    from WeakAnnotateLib.methods.box_correction.classifier import accept_from_nodes, read_slice_boxes
    from WeakAnnotateLib.scene.mrml_adapter import set_segment_mask

    edited = corrected.copy()
    last = result.slices[-1].slice_index
    edited[last] = False
    k0 = result.slices[0].slice_index
    edited[k0, 0, 0] = True
    set_segment_mask(runtime, seg, edited, image.geometry, "tumour box corrected", (1.0, 1.0, 0.0))
    out = tmp_path / "tumour_slice_boxes.json"
    accepted = accept_from_nodes(volume, roi, seg, ids["corrected"], result, out)
    assert [s.slice_index for s in accepted.slices] == [s.slice_index for s in result.slices[:-1]]
    assert accepted.slices[0].lo == (0, 0) and accepted.slices[0].raw_lo == result.slices[0].raw_lo
    assert np.array_equal(read_slice_boxes(out, image.geometry), accepted.mask(image.geometry.shape))
    assert json.loads(out.read_text())["edited"] is True
    assert roi.GetAttribute("WeakAnnotate.sliceBoxes") == str(out)
    # bad input: an emptied segment or a non-JSON path write nothing and leave the ROI as it was
    set_segment_mask(runtime, seg, np.zeros_like(edited), image.geometry, "tumour box corrected", (1.0, 1.0, 0.0))
    with pytest.raises(InputError, match="empty: nothing to accept"):
        accept_from_nodes(volume, roi, seg, ids["corrected"], result, tmp_path / "other.json")
    with pytest.raises(InputError, match="saved as .json"):
        accept_from_nodes(volume, roi, seg, ids["corrected"], result, tmp_path / "other.txt")
    assert not (tmp_path / "other.json").exists() and roi.GetAttribute("WeakAnnotate.sliceBoxes") == str(out)
