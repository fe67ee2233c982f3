"""Export to the ecosystem: DICOM SEG out and back in (checked with dcmqi, Slicer's own converter, as the
independent reader), and nnU-Net v2 raw datasets (checked with nnU-Net's own verify_dataset_integrity).

Real data: the DICOM CT series of ``totalseg/`` (its files carry empty SOP Class / SOP Instance / Study / Series
UIDs) and its label map ``example_seg_dicom.nii.gz`` (same voxels, y axis flipped), the IBSI sarcoma cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid
from WeakAnnotateLib.cli.main import main
from WeakAnnotateLib.data.dataset import CaseEntry, DatasetFolder
from WeakAnnotateLib.files.dicom_seg import read_dicom_seg, read_dicom_series
from WeakAnnotateLib.files.image_io import read_image, to_sitk, write_image

BIN = Path(sys.executable).parent
# Five organs of the catalogue's DICOM case, and TotalSegmentator's class 8 (a sided structure: a type modifier).
NAMES = {1: "spleen", 5: "liver", 6: "stomach", 7: "pancreas", 8: "adrenal_gland_right", 52: "aorta"}
SCT = "SCT"
ANATOMY = ("123037004", SCT, "Anatomical Structure")
EXPECTED_CODES = {  # segment → (category, type, modifier) as (value, scheme, meaning)
    "spleen": (ANATOMY, ("78961009", SCT, "Spleen"), None),
    "liver": (ANATOMY, ("10200004", SCT, "Liver"), None),
    "stomach": (ANATOMY, ("69695003", SCT, "Stomach"), None),
    # the user's choice on the command line (--terminology pancreas=Neoplasm) replaces the name's term
    "pancreas": (("49755003", SCT, "Morphologically Altered Structure"), ("108369006", SCT, "Neoplasm"), None),
    "adrenal_gland_right": (ANATOMY, ("23451007", SCT, "Adrenal gland"), ("24028007", SCT, "Right")),
    "aorta": (ANATOMY, ("15825003", SCT, "Aorta"), None),
}


def _run(*argv: str, capsys) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def dicom_case(data_dir: Path, tmp_path_factory) -> dict:
    """The series, a label map of six structures on its flipped grid, and the SEG the CLI wrote from it."""
    folder = data_dir / "totalseg" / "example_ct_dicom"
    full = sitk.ReadImage(str(data_dir / "totalseg" / "example_seg_dicom.nii.gz"))
    values = sitk.GetArrayFromImage(full)
    kept = np.where(np.isin(values, list(NAMES)), values, 0).astype(np.uint8)
    labels = sitk.GetImageFromArray(kept)
    labels.CopyInformation(full)  # same header: the y axis stays flipped with respect to the series
    work = tmp_path_factory.mktemp("dicom_seg")
    labelmap = work / "organs.nii.gz"
    sitk.WriteImage(labels, str(labelmap))
    out = work / "organs.dcm"
    names = [f"{v}={n}" for v, n in NAMES.items()]
    rc = main(
        ["export", "--format", "dicom-seg", "--image", str(folder), "--segmentation", str(labelmap)]
        + ["--names", *names, "--terminology", "pancreas=Neoplasm", "--output", str(out)]
    )
    assert rc == 0
    return {"folder": folder, "labelmap": labelmap, "labels": labels, "seg": out, "work": work}


def _on_series(image: sitk.Image, series: sitk.Image) -> np.ndarray:
    """An image resampled (nearest neighbour, physical space) onto the series' grid."""
    return sitk.GetArrayFromImage(sitk.Resample(image, series, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def test_dicom_seg_read_by_dcmqi_same_voxels_names_codes(dicom_case: dict) -> None:
    """dcmqi's segimage2itkimage reads the SEG: every segment's voxels, label, colour and codes as written."""
    series_image = read_image(dicom_case["folder"])
    series_sitk = sitk.ReadImage(
        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom_case["folder"]))
    )  # the series as ITK reads it
    expected = _on_series(dicom_case["labels"], series_sitk)
    # The label map's y axis is flipped with respect to the series: on the series' grid it is the flipped array.
    assert np.array_equal(expected, sitk.GetArrayFromImage(dicom_case["labels"])[:, ::-1, :])
    assert expected.shape == series_image.array.shape

    out = dicom_case["work"] / "dcmqi"
    out.mkdir()
    run = subprocess.run(
        [str(BIN / "segimage2itkimage"), "--inputDICOM", str(dicom_case["seg"]), "--outputDirectory", str(out)]
        + ["--outputType", "nifti"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    meta = json.loads((out / "meta.json").read_text())
    attributes = [a for group in meta["segmentAttributes"] for a in group]
    assert [a["SegmentLabel"] for a in attributes] == list(NAMES.values())
    for a in attributes:
        name = a["SegmentLabel"]
        value = next(v for v, n in NAMES.items() if n == name)
        voxels = _on_series(sitk.ReadImage(str(out / f"{a['labelID']}.nii.gz")), series_sitk) != 0
        assert np.array_equal(voxels, expected == value), name
        category, kind, modifier = EXPECTED_CODES[name]

        def triple(item: dict) -> tuple[str, str, str]:
            return (item["CodeValue"], item["CodingSchemeDesignator"], item["CodeMeaning"])

        assert triple(a["SegmentedPropertyCategoryCodeSequence"]) == category, name
        assert triple(a["SegmentedPropertyTypeCodeSequence"]) == kind, name
        got_modifier = a.get("SegmentedPropertyTypeModifierCodeSequence")
        assert (triple(got_modifier) if got_modifier else None) == modifier, name
        assert a["SegmentAlgorithmType"] == "SEMIAUTOMATIC"
    liver = next(a for a in attributes if a["SegmentLabel"] == "liver")
    assert np.allclose(liver["recommendedDisplayRGBValue"], [222, 130, 79], atol=2)  # core.colors' liver


def test_dicom_seg_refers_to_the_series_by_file_meta_uids(dicom_case: dict) -> None:
    """The series' data sets have empty SOP UIDs: the SEG refers to each image by its file meta's SOP Instance UID."""
    seg = pydicom.dcmread(dicom_case["seg"])
    files = sorted(dicom_case["folder"].iterdir())
    meta_uids = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID) for f in files}
    assert all(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) == "" for f in files[:3])
    referenced = {
        str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence
    }
    assert referenced == meta_uids
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    # The stand-in study / series UIDs are derived from the images: the same for every export of the series.
    series = read_dicom_series(dicom_case["folder"])
    assert seg.StudyInstanceUID == series.datasets[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_instance_uid
    assert read_dicom_series(dicom_case["folder"]).series_instance_uid == series.series_instance_uid
    assert any("SOP Instance UID" in n for n in series.notes)


def test_dicom_seg_back_as_segmentation_and_labelmap(dicom_case: dict, runtime, capsys, tmp_path: Path) -> None:
    """Read back: on the open series (a segmentation node with names and terms), on its own grid, as a label map."""
    from WeakAnnotateLib.scene.mrml_adapter import segment_ids, segment_mask
    from WeakAnnotateLib.scene.segmentation_io import read_segmentation
    from WeakAnnotateLib.scene.terminology import segment_terminology

    series = read_dicom_series(dicom_case["folder"])
    expected = sitk.GetArrayFromImage(dicom_case["labels"])[:, ::-1, :]
    node = read_segmentation(runtime, dicom_case["seg"], series=series)
    segmentation = node.GetSegmentation()
    ids = segment_ids(node)
    assert [segmentation.GetSegment(s).GetName() for s in ids] == list(NAMES.values())
    for sid, (value, name) in zip(ids, NAMES.items(), strict=True):
        assert np.array_equal(segment_mask(node, sid, series.geometry), expected == value), name
        codes = segment_terminology(runtime, node, sid).codes
        category, kind, modifier = EXPECTED_CODES[name]
        assert (codes.category.value, codes.type.value) == (category[0], kind[0])
        assert (codes.modifier.value if codes.modifier else None) == (modifier[0] if modifier else None)

    # Without the series: the SEG's own grid (its frames' extent; highdicom orders the slices its own way) holds
    # the same voxels in physical space.
    segments, own = read_dicom_seg(dicom_case["seg"])
    assert own.shape == series.geometry.shape and np.allclose(own.spacing, series.geometry.spacing)
    series_sitk = to_sitk(expected, series.geometry)
    for segment, value in zip(segments, NAMES, strict=True):
        on_series = _on_series(to_sitk(segment.mask.astype(np.uint8), own), series_sitk)
        assert np.array_equal(on_series != 0, expected == value), segment.name

    out = tmp_path / "back.nii.gz"
    rc, stdout, _ = _run(
        "export", "--format", "labelmap", "--image", str(dicom_case["folder"]), "--segmentation",
        str(dicom_case["seg"]), "--output", str(out), capsys=capsys,
    )  # fmt: skip
    assert rc == 0
    back = read_image(out)
    assert back.geometry.same_grid(series.geometry)
    table = {row["value"]: row["name"] for row in json.loads(stdout)["segments"]}
    for value, name in table.items():
        original = next(v for v, n in NAMES.items() if n == name)
        assert np.array_equal(back.array == value, expected == original), name


def test_dicom_seg_of_a_non_dicom_image_is_refused(data_dir: Path, capsys, tmp_path: Path) -> None:
    image = data_dir / "totalseg" / "example_ct_sm.nii.gz"
    out = tmp_path / "x.dcm"
    rc, _, err = _run(
        "export", "--format", "dicom-seg", "--image", str(image), "--segmentation",
        str(data_dir / "totalseg" / "example_seg.nii.gz"), "--output", str(out), capsys=capsys,
    )  # fmt: skip
    assert rc == 2
    assert "is not a DICOM series" in err and "seg-nrrd" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_dicom_seg_of_another_series_is_refused(dicom_case: dict, capsys, tmp_path: Path) -> None:
    """The same pixels under new SOP Instance UIDs are another series: the SEG does not belong on it."""
    other = tmp_path / "other_series"
    other.mkdir()
    series_uid = generate_uid()
    for f in sorted(dicom_case["folder"].iterdir()):
        ds = pydicom.dcmread(f)
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid
        ds.save_as(other / f.name)
    out = tmp_path / "back.nii.gz"
    rc, _, err = _run(
        "export", "--format", "labelmap", "--image", str(other), "--segmentation", str(dicom_case["seg"]),
        "--output", str(out), capsys=capsys,
    )  # fmt: skip
    assert rc == 2
    assert "drawn on another series" in err and "20 of the 20 images" in err
    assert not out.exists()


def test_export_names_a_missing_segment_in_terminology(dicom_case: dict, capsys, tmp_path: Path) -> None:
    out = tmp_path / "x.dcm"
    rc, _, err = _run(
        "export", "--format", "dicom-seg", "--image", str(dicom_case["folder"]), "--segmentation",
        str(dicom_case["labelmap"]), "--names", "1=spleen", "--terminology", "kidney=Kidney/Left",
        "--output", str(out), capsys=capsys,
    )  # fmt: skip
    assert rc == 2 and "no segment 'kidney'" in err and not out.exists()


# --- nnU-Net v2 -----------------------------------------------------------------------------------------

GTV = "GTV_Mass (soft-tissue sarcoma)"


def _pet_dataset(root: Path, case_by_id, *, references: bool = True) -> DatasetFolder:
    """Three IBSI PET cases (files stay in shared/data), one with an id nnU-Net cannot use, one without reference."""
    ds = DatasetFolder(root, "sarcoma pet")
    for n, case_id in enumerate(["ibsi_STS_001_PET", "ibsi_STS_002_PET", "ibsi_STS_003_PET", "ibsi_STS_004_PET"]):
        case = case_by_id(case_id)
        entry_id = "STS 003/PET" if n == 2 else case_id
        reference = str(case.mask) if references and n < 3 else None
        ds.add_case(CaseEntry(id=entry_id, image=str(case.image), reference=reference, modality=case.modality))
    ds.save()
    return ds


def test_nnunet_export_passes_nnunets_own_check(tmp_path: Path, case_by_id, capfd, monkeypatch) -> None:
    """nnU-Net's own check, run on threads: its spawn process pool hung a CI machine for the whole run (the
    check is the same code either way)."""
    import multiprocessing.dummy

    from nnunetv2.experiment_planning import verify_dataset_integrity as nnunet_check

    class _ThreadPools:
        @staticmethod
        def get_context(_method: str):
            return multiprocessing.dummy

    monkeypatch.setattr(nnunet_check, "multiprocessing", _ThreadPools)

    ds = _pet_dataset(tmp_path / "ds", case_by_id)
    raw = tmp_path / "nnUNet_raw"
    rc, stdout, err = _run(
        "dataset", "export", "--format", "nnunetv2", str(ds.root), str(raw), "--id", "7", capsys=capfd
    )
    assert rc == 0, err
    result = json.loads(stdout)
    folder = raw / "Dataset007_sarcoma_pet"
    assert Path(result["folder"]) == folder and sorted(p.name for p in raw.iterdir()) == [folder.name]
    assert json.loads((folder / "dataset.json").read_text()) == {
        "channel_names": {"0": "PET"},
        "labels": {"background": 0, GTV: 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
        "name": "sarcoma_pet",
        "description": f"Exported by weakannotate from {ds.root} (final labels).",
    }
    # The id with a space and a slash is renamed, and said so; the case without a reference is a test case.
    assert result["renamed"] == {"STS 003/PET": "STS_003_PET"}
    assert "'STS 003/PET' is not an nnU-Net identifier" in err and "written as 'STS_003_PET'" in err
    assert result["training"] == {
        "ibsi_STS_001_PET": "ibsi_STS_001_PET",
        "ibsi_STS_002_PET": "ibsi_STS_002_PET",
        "STS_003_PET": "STS 003/PET",
    }
    assert result["test"] == {"ibsi_STS_004_PET": "ibsi_STS_004_PET"}
    assert (folder / "imagesTs" / "ibsi_STS_004_PET_0000.nii.gz").is_file()
    assert json.loads((folder / "weakannotate_cases.json").read_text())["training"] == result["training"]
    for ident, case_id in result["training"].items():
        source = case_by_id(case_id if case_id.startswith("ibsi") else "ibsi_STS_003_PET")
        image = sitk.ReadImage(str(folder / "imagesTr" / f"{ident}_0000.nii.gz"))
        label = sitk.ReadImage(str(folder / "labelsTr" / f"{ident}.nii.gz"))
        original = sitk.ReadImage(str(source.image))
        for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
            assert getattr(image, get)() == getattr(label, get)(), (ident, get)  # identical grids
            assert np.allclose(getattr(image, get)(), getattr(original, get)(), atol=1e-6), (ident, get)
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(source.mask))) != 0
        assert np.array_equal(sitk.GetArrayFromImage(label), reference.astype(np.uint8))

    nnunet_check.verify_dataset_integrity(str(folder), 1)  # raises on any problem
    printed = capfd.readouterr().out
    assert "Error" not in printed and "Warning" not in printed, printed


def test_nnunet_export_of_pseudo_labels_and_the_way_back(tmp_path: Path, case_by_id, capsys) -> None:
    """--labels pseudo; then nnU-Net's predictions (here: label files named as nnU-Net names its outputs) come
    back as the cases' predictions through the export's case map, and open as a named, coded segmentation."""
    import slicerio

    ds = _pet_dataset(tmp_path / "ds", case_by_id)
    case = case_by_id("ibsi_STS_001_PET")
    reference = read_image(case.mask)
    pseudo = tmp_path / "ds" / "pseudo.nii.gz"
    write_image(pseudo, (reference.array != 0).astype(np.uint8), reference.geometry)
    ds.case("ibsi_STS_001_PET").pseudo_label = ds.stored(pseudo)
    ds.save()
    raw = tmp_path / "raw"
    rc, stdout, err = _run(
        "dataset", "export", str(ds.root), str(raw), "--id", "12", "--labels", "pseudo", "--name", "Pseudo",
        capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    folder = raw / "Dataset012_Pseudo"
    doc = json.loads((folder / "dataset.json").read_text())
    assert doc["numTraining"] == 1 and doc["labels"] == {"background": 0, GTV: 1}
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [
        "STS_003_PET_0000.nii.gz", "ibsi_STS_002_PET_0000.nii.gz", "ibsi_STS_004_PET_0000.nii.gz",
    ]  # fmt: skip

    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for ident in ("ibsi_STS_001_PET", "STS_003_PET"):
        source = case_by_id("ibsi_STS_001_PET" if ident.startswith("ibsi") else "ibsi_STS_003_PET")
        label = read_image(source.mask)
        write_image(predictions / f"{ident}.nii.gz", label.array, label.geometry)
    rc, stdout, err = _run(
        "dataset", "import-nnunet", str(ds.root), str(predictions), "--export", str(folder), capsys=capsys
    )
    assert rc == 0, err
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["case"] for r in rows] == ["STS 003/PET", "ibsi_STS_001_PET"]
    again = DatasetFolder.load(ds.root)
    assert "predicted" in again.case("STS 003/PET").states(again.root)
    start = again.path(again.case("STS 003/PET").prediction)
    out = tmp_path / "start.seg.nrrd"
    rc, _, err = _run(
        "export", "--format", "seg-nrrd", "--image", str(case_by_id("ibsi_STS_003_PET").image), "--segmentation",
        str(start), "--names", f"1={GTV}", "--output", str(out), capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    segments = slicerio.read_segmentation(str(out), skip_voxels=True)["segments"]
    assert [s["name"] for s in segments] == [GTV]
    assert segments[0]["terminology"]["type"] == ["SCT", "108369006", "Neoplasm"]


def test_nnunet_export_refuses_bad_input(tmp_path: Path, case_by_id, capsys) -> None:
    raw = tmp_path / "raw"

    def export(ds: DatasetFolder, *extra: str) -> tuple[int, str]:
        rc, _, err = _run("dataset", "export", str(ds.root), str(raw), "--id", "3", *extra, capsys=capsys)
        return rc, err

    # No final masks.
    bare = _pet_dataset(tmp_path / "bare", case_by_id, references=False)
    rc, err = export(bare)
    assert rc == 2 and "No case of" in err and "final (reference) masks" in err and "--labels pseudo" in err
    assert not raw.exists()
    rc, err = export(bare, "--labels", "pseudo")
    assert rc == 2 and "pseudo-labels" in err and not raw.exists()

    # A label on another grid than its image (the CT contour given for the PET image).
    ds = _pet_dataset(tmp_path / "ds", case_by_id)
    ds.case("ibsi_STS_002_PET").reference = str(case_by_id("ibsi_STS_002_CT").mask)
    ds.save()
    rc, err = export(ds)
    assert rc == 2 and "Case 'ibsi_STS_002_PET'" in err and "different grid" in err
    assert not raw.exists(), "a failed export left files behind"

    # Two ids that become the same nnU-Net identifier.
    clash = _pet_dataset(tmp_path / "clash", case_by_id)
    clash.cases[0].id = "STS_003_PET"
    clash.save()
    rc, err = export(clash)
    assert rc == 2 and "both become the nnU-Net identifier 'STS_003_PET'" in err and not raw.exists()

    # An existing dataset folder of that id: refused, then replaced with --overwrite.
    good = _pet_dataset(tmp_path / "good", case_by_id)
    assert export(good)[0] == 0
    marker = raw / "Dataset003_sarcoma_pet" / "marker"
    marker.write_text("old")
    rc, err = export(good)
    assert rc == 2 and "already exists" in err and "--overwrite" in err and marker.exists()
    rc, err = export(good, "--name", "other")
    assert rc == 2 and "already exists" in err
    rc, err = export(good, "--overwrite")
    assert rc == 0 and not marker.exists() and (raw / "Dataset003_sarcoma_pet" / "dataset.json").is_file()
    rc, err = export(good, "--overwrite", "--name", "other")
    assert rc == 2 and "taken by Dataset003_sarcoma_pet" in err
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset003_sarcoma_pet"]


def test_seg_nrrd_to_dicom_seg_keeps_terms(dicom_case: dict, capsys, tmp_path: Path) -> None:
    """DICOM SEG → .seg.nrrd (Slicer's file, terms in its tags) → DICOM SEG again: same voxels, names, codes."""
    seg_nrrd = tmp_path / "organs.seg.nrrd"
    rc, _, err = _run(
        "export", "--format", "seg-nrrd", "--image", str(dicom_case["folder"]), "--segmentation",
        str(dicom_case["seg"]), "--output", str(seg_nrrd), capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    again = tmp_path / "again.dcm"
    rc, _, err = _run(
        "export", "--format", "dicom-seg", "--image", str(dicom_case["folder"]), "--segmentation", str(seg_nrrd),
        "--algorithm-type", "manual", "--output", str(again), capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    series = read_dicom_series(dicom_case["folder"])
    first, _ = read_dicom_seg(dicom_case["seg"], series)
    second, _ = read_dicom_seg(again, series)
    assert [s.name for s in second] == [s.name for s in first] == list(NAMES.values())
    for a, b in zip(first, second, strict=True):
        assert a.codes == b.codes, a.name
        assert np.array_equal(a.mask, b.mask), a.name
    assert pydicom.dcmread(again, stop_before_pixels=True).SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
