"""Geometry and image I/O on the real cases: exact voxel → RAS mapping, round trips, Slicer's own reader, bad input.

Reference for "exact": SimpleITK's ``TransformContinuousIndexToPhysicalPoint`` (LPS), converted to RAS by
negating x and y. All MRML is the real Slicer core from the slicer-core wheels.
"""

from __future__ import annotations

import gzip
import locale
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_geometry, rotation_matrix
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.geometry import LPS_TO_RAS, Geometry
from WeakAnnotateLib.files.image_io import Image, read_image, read_mask, write_image
from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, geometry_of_node, image_of_node

TOL_MM = 1e-4

# id -> (spacing i, j, k in mm, sign of det(direction)): facts about the files, checked against our reader.
GEOMETRY_CASES = {
    "ts_ct_sm": ((3.0, 3.0, 3.0), +1),  # LPS direction diag(-1, -1, 1): i and j flipped
    "ts_mr_sm": ((3.0, 3.0, 3.0), +1),
    "ts_ct_dicom": ((0.977, 0.977, 2.0), +1),  # a DICOM series folder
    "brats_brats_2013_pat0001_1_Flair": ((1.0, 1.0, 1.0), +1),
    "ibsi_STS_001_CT": ((0.977, 0.977, 3.27), +1),
    "ibsi_STS_001_MR_T1": ((0.977, 0.977, 3.27), +1),
    "ibsi_STS_001_PET": ((4.6875, 4.6875, 3.27), +1),
    "pyrad_brain1": ((0.781, 0.781, 6.5), -1),  # NRRD, j flipped: left-handed
    "sct_t2_cord": ((1.0, 1.0, 1.0), -1),  # permuted axes, left-handed direction
    "sct_t1_cord": ((1.0, 1.0, 1.0), +1),
}


def _sitk_read(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _corners_and_random(shape: tuple[int, int, int], n: int = 50, seed: int = 0) -> np.ndarray:
    """(k, j, i) rows: the 8 corner voxels, then ``n`` random voxels."""
    k, j, i = (np.asarray(shape) - 1).tolist()
    corners = [[a, b, c] for a in (0, k) for b in (0, j) for c in (0, i)]
    rng = np.random.default_rng(seed)
    random = np.stack([rng.integers(0, s, n) for s in shape], axis=1)
    return np.vstack([np.array(corners), random]).astype(np.int64)


def _sitk_ras(image: sitk.Image, index_kji: np.ndarray) -> np.ndarray:
    lps = np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in row[::-1]]) for row in index_kji])
    return lps * np.array([-1.0, -1.0, 1.0])


def _expected_ijk_to_ras(spacing, origin_lps, direction_lps) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ np.asarray(direction_lps, float).reshape(3, 3) @ np.diag(spacing)
    m[:3, 3] = LPS_TO_RAS @ np.asarray(origin_lps, float)
    return m


# --- reading the real cases -------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", list(GEOMETRY_CASES), ids=list(GEOMETRY_CASES))
def test_read_image_matches_simpleitk_at_corners_and_random_voxels(case_by_id, case_id):
    case = case_by_id(case_id)
    image = read_image(case.image)
    reference = _sitk_read(case.image)

    assert image.array.shape == tuple(reference.GetSize())[::-1]
    np.testing.assert_array_equal(image.array, sitk.GetArrayViewFromImage(reference))

    index = _corners_and_random(image.geometry.shape)
    ours = image.geometry.index_to_ras(index)
    theirs = _sitk_ras(reference, index)
    assert np.abs(ours - theirs).max() <= TOL_MM

    spacing, handedness = GEOMETRY_CASES[case_id]
    np.testing.assert_allclose(image.geometry.spacing, spacing, atol=1e-3)
    assert np.sign(np.linalg.det(image.geometry.direction)) == handedness


def test_flipped_and_permuted_axes_are_kept_as_in_the_file(case_by_id):
    """ts_ct_sm has LPS direction diag(-1,-1,1) = RAS identity; sct_t2 is permuted (RAS columns -A, S, R)."""
    ct = read_image(case_by_id("ts_ct_sm").image).geometry
    np.testing.assert_allclose(ct.direction, np.eye(3), atol=1e-6)
    t2 = read_image(case_by_id("sct_t2_cord").image).geometry
    np.testing.assert_allclose(t2.direction, [[0, 0, 1], [-1, 0, 0], [0, 1, 0]], atol=1e-6)
    brain = read_image(case_by_id("pyrad_brain1").image).geometry
    np.testing.assert_allclose(brain.direction, np.diag([-1.0, 1.0, 1.0]), atol=1e-6)


def test_dicom_series_file_path_reads_its_folder(case_by_id, tmp_path):
    """A ``.dcm`` file stands for its series: the whole folder is read, not the one slice."""
    folder = case_by_id("ts_ct_dicom").image
    for f in sorted(folder.iterdir()):
        os.symlink(f, tmp_path / f"{f.name}.dcm")
    from_folder = read_image(folder)
    from_file = read_image(sorted(tmp_path.iterdir())[3])
    np.testing.assert_array_equal(from_folder.array, from_file.array)
    assert from_folder.geometry.same_grid(from_file.geometry, tol_mm=1e-9)
    assert from_folder.array.shape == (20, 512, 512)


# --- truly oblique grids written by SimpleITK ---------------------------------------------------------------


@pytest.fixture(scope="module")
def oblique_sitk(data_dir) -> sitk.Image:
    """sct_t2 (permuted, left-handed) rotated 20° about an oblique axis, with anisotropic spacing."""
    from conftest import case_by_id_in

    image = sitk.ReadImage(str(case_by_id_in(data_dir, "sct_t2_cord").image))
    direction = rotation_matrix((1.0, 2.0, 3.0), 20.0) @ np.asarray(image.GetDirection()).reshape(3, 3)
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing((0.7, 1.3, 2.9))
    image.SetOrigin((-12.5, 33.25, 101.75))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_oblique_anisotropic_file_reads_back_exactly(oblique_sitk, tmp_path, suffix):
    path = tmp_path / f"oblique{suffix}"
    sitk.WriteImage(oblique_sitk, str(path))
    expected = _expected_ijk_to_ras(oblique_sitk.GetSpacing(), oblique_sitk.GetOrigin(), oblique_sitk.GetDirection())
    # The grid is really oblique: no voxel axis within 10° of a patient axis.
    assert np.abs(expected[:3, :3] / np.linalg.norm(expected[:3, :3], axis=0)).max() < np.cos(np.deg2rad(10))

    image = read_image(path)
    assert np.abs(image.geometry.ijk_to_ras - expected).max() <= TOL_MM  # NIfTI stores float32
    np.testing.assert_allclose(image.geometry.spacing, (0.7, 1.3, 2.9), atol=TOL_MM)
    np.testing.assert_array_equal(image.array, sitk.GetArrayViewFromImage(oblique_sitk))
    index = _corners_and_random(image.geometry.shape)
    assert np.abs(image.geometry.index_to_ras(index) - _sitk_ras(oblique_sitk, index)).max() <= TOL_MM


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int16])
def test_write_image_round_trip_is_exact(tmp_path, suffix, dtype):
    geometry = oblique_geometry(left_handed=True)
    rng = np.random.default_rng(3)
    array = (rng.normal(size=geometry.shape) * 50).astype(dtype)
    path = write_image(tmp_path / f"out{suffix}", array, geometry)
    assert path == tmp_path / f"out{suffix}"
    back = read_image(path)
    assert back.array.dtype == array.dtype
    np.testing.assert_array_equal(back.array, array)
    assert np.abs(back.geometry.ijk_to_ras - geometry.ijk_to_ras).max() <= TOL_MM
    assert back.geometry.same_grid(geometry, tol_mm=TOL_MM)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no .partial left behind


def test_write_image_rejects_bad_output_and_writes_nothing(tmp_path):
    geometry = oblique_geometry()
    array = np.zeros(geometry.shape, np.uint8)
    with pytest.raises(InputError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.nii.gz", array, geometry)
    with pytest.raises(InputError, match=r"\.nii\.gz"):
        write_image(tmp_path / "out.png", array, geometry)
    with pytest.raises(InputError, match="does not match"):
        write_image(tmp_path / "out.nii.gz", array[:-1], geometry)
    assert list(tmp_path.iterdir()) == []


# --- MRML volume nodes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", ["sct_t2_cord", "ibsi_STS_001_PET", "pyrad_brain1", "ts_ct_sm"])
def test_volume_node_round_trip_is_exact(runtime, case_by_id, case_id):
    image = read_image(case_by_id(case_id).image)
    node = add_volume_node(runtime, image, "vol")
    assert node.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert node.GetName() == "vol"
    back = image_of_node(node)
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    assert np.abs(geometry_of_node(node).ijk_to_ras - image.geometry.ijk_to_ras).max() <= 1e-9
    assert back.geometry.shape == image.geometry.shape


def test_labelmap_node_on_oblique_grid_round_trip_is_exact(runtime):
    geometry = oblique_geometry(left_handed=True)
    labels = np.random.default_rng(1).integers(0, 5, size=geometry.shape).astype(np.uint16)
    node = add_volume_node(runtime, Image(labels, geometry, "labels"), labelmap=True)
    assert node.GetClassName() == "vtkMRMLLabelMapVolumeNode"
    back = image_of_node(node)
    np.testing.assert_array_equal(back.array, labels)
    assert np.abs(back.geometry.ijk_to_ras - geometry.ijk_to_ras).max() <= 1e-9


def test_add_volume_node_rejects_a_2d_array_and_leaves_the_scene_as_it_was(runtime):
    before = runtime.scene.GetNumberOfNodes()
    geometry = oblique_geometry()
    fake = Image.__new__(Image)  # bypass the shape check to reach the adapter's own check
    fake.array, fake.geometry, fake.name = np.zeros((4, 5)), geometry, "flat"
    with pytest.raises(InputError, match="3D array"):
        add_volume_node(runtime, fake)
    assert runtime.scene.GetNumberOfNodes() == before


@pytest.mark.parametrize("case_id", ["sct_t2_cord", "ibsi_STS_001_PET"])
def test_slicer_archetype_reader_agrees_in_physical_space(runtime, case_by_id, case_id):
    """Slicer's reader may re-order a left-handed grid; every voxel must still land at the same RAS point."""
    path = case_by_id(case_id).image
    node = runtime.volumes_logic.AddArchetypeVolume(str(path), "slicer_read", 0)
    assert node is not None
    slicer_image = image_of_node(node)
    ours = read_image(path)
    assert sorted(slicer_image.array.shape) == sorted(ours.array.shape)

    # Every voxel of Slicer's grid: its centre in RAS falls on a voxel centre of ours, with the same value.
    index = np.argwhere(np.ones(slicer_image.array.shape, bool))
    ras = slicer_image.geometry.index_to_ras(index)
    ijk = ours.geometry.ras_to_ijk(ras)
    assert np.abs(ijk - np.rint(ijk)).max() <= 1e-6
    ours_index = ours.geometry.ras_to_index(ras)
    assert np.abs(ours.geometry.index_to_ras(ours_index) - ras).max() <= TOL_MM
    np.testing.assert_array_equal(slicer_image.array[tuple(index.T)], ours.array[tuple(ours_index.T)])
    # ... and the mapping is a bijection (each of our voxels is hit once).
    assert len(np.unique(ours_index, axis=0)) == ours.array.size


# --- RAS <-> IJK ----------------------------------------------------------------------------------------------


def _grids(case_by_id):
    yield "oblique", oblique_geometry()
    yield "oblique-left-handed", oblique_geometry(shape=(7, 50, 13), spacing=(0.4, 2.2, 5.0), left_handed=True)
    yield "sct_t2", read_image(case_by_id("sct_t2_cord").image).geometry
    yield "pet", read_image(case_by_id("ibsi_STS_001_PET").image).geometry


def test_voxel_centre_ras_comes_back_to_the_same_index(case_by_id):
    rng = np.random.default_rng(11)
    for name, g in _grids(case_by_id):
        index = np.stack([rng.integers(0, s, 500) for s in g.shape], axis=1)
        back = g.ras_to_index(g.index_to_ras(index))
        np.testing.assert_array_equal(back, index, err_msg=name)
        assert g.contains(g.index_to_ras(index)).all(), name
        # A point 0.4 voxel off the centre along any axis still belongs to that voxel.
        offset = (rng.uniform(-0.4, 0.4, size=(500, 3)) * 1.0)[:, ::-1]
        np.testing.assert_array_equal(g.ras_to_index(g.index_to_ras(index + offset)), index, err_msg=name)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("side", ["low", "high"])
def test_point_just_outside_the_grid_is_an_error(axis, side):
    g = oblique_geometry(left_handed=True)
    centre = (np.asarray(g.shape) - 1) / 2.0
    inside = centre.copy()
    inside[axis] = -0.45 if side == "low" else g.shape[axis] - 1 + 0.45
    outside = centre.copy()
    outside[axis] = -0.55 if side == "low" else g.shape[axis] - 1 + 0.55
    assert g.contains(g.index_to_ras(inside)).all()
    g.ras_to_index(g.index_to_ras(inside))  # no error half a voxel in
    ras = g.index_to_ras(outside)
    assert not g.contains(ras).any()
    with pytest.raises(InputError, match="outside the image") as e:
        g.ras_to_index(np.vstack([g.index_to_ras(centre), ras]), what="click")
    assert "Click 2" in str(e.value)
    assert "23" in str(e.value) and "37" in str(e.value)  # names the grid size


def test_geometry_lps_round_trip_and_singular_matrix():
    g = oblique_geometry(left_handed=True)
    spacing, origin, direction = g.lps()
    again = Geometry.from_lps(spacing, origin, direction, g.size_ijk)
    assert np.abs(again.ijk_to_ras - g.ijk_to_ras).max() <= 1e-12
    m = np.eye(4)
    m[2, 2] = 0.0
    with pytest.raises(InputError, match="singular"):
        Geometry(m, (2, 2, 2))


def test_same_grid_detects_a_small_shift():
    g = oblique_geometry()
    m = g.ijk_to_ras.copy()
    m[0, 3] += 0.01
    assert g.same_grid(Geometry(g.ijk_to_ras.copy(), g.shape))
    assert not g.same_grid(Geometry(m, g.shape))
    assert not g.same_grid(Geometry(g.ijk_to_ras.copy(), (23, 31, 36)))


# --- bad input --------------------------------------------------------------------------------------------------


def _bad_file(kind: str, folder: Path, real_nii_gz: Path) -> Path:
    if kind == "missing":
        return folder / "nothing_here.nii.gz"
    if kind == "random-bytes":
        p = folder / "random.nii.gz"
        p.write_bytes(np.random.default_rng(0).bytes(5000))
        return p
    if kind == "header-only":
        p = folder / "cut.nii.gz"
        p.write_bytes(real_nii_gz.read_bytes()[:200])
        return p
    if kind == "2d":
        p = folder / "slice.nii.gz"
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkInt16), str(p))
        return p
    if kind == "2d-nrrd":
        p = folder / "slice.nrrd"
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkInt16), str(p))
        return p
    if kind == "one-slice":
        p = folder / "one_slice.nii.gz"
        sitk.WriteImage(sitk.Image([20, 30, 1], sitk.sitkInt16), str(p))
        return p
    if kind == "4d":
        p = folder / "series.nii.gz"
        sitk.WriteImage(sitk.Image([20, 30, 10, 3], sitk.sitkInt16), str(p))
        return p
    if kind == "vector":
        p = folder / "rgb.nrrd"
        sitk.WriteImage(sitk.Image([20, 30, 10], sitk.sitkVectorFloat32, 3), str(p))
        return p
    if kind == "vector-nii":
        p = folder / "rgb.nii.gz"
        sitk.WriteImage(sitk.Image([20, 30, 10], sitk.sitkVectorFloat32, 3), str(p))
        return p
    if kind == "no-dicom-folder":
        p = folder / "not_dicom"
        p.mkdir()
        (p / "readme.txt").write_text("no images here")
        return p
    if kind == "empty-folder":
        p = folder / "empty"
        p.mkdir()
        return p
    raise AssertionError(kind)


BAD_FILES = {
    "missing": ["does not exist"],
    "random-bytes": ["Cannot read", "corrupt"],
    "header-only": ["Cannot read", "corrupt"],
    "2d": ["2D", "20x30", "3D volume is needed"],
    "2d-nrrd": ["2D", "3D volume is needed"],
    "one-slice": ["2D", "20x30x1"],
    "4d": ["4D", "20x30x10x3", "single 3D volume"],
    "vector": ["3 components", "scalar"],
    "vector-nii": ["3 components", "scalar"],
    "no-dicom-folder": ["No DICOM series"],
    "empty-folder": ["No DICOM series"],
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_read_image_rejects_bad_files_with_a_clear_message(case_by_id, tmp_path, kind):
    path = _bad_file(kind, tmp_path, case_by_id("sct_t2_cord").image)
    with pytest.raises(InputError) as e:
        read_image(path, what="reference")
    message = str(e.value)
    for fragment in BAD_FILES[kind]:
        assert fragment in message, message
    assert str(path) in message or path.name in message
    assert "\n" not in message
    # read_mask goes through the same checks
    with pytest.raises(InputError):
        read_mask(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_read_image_rejects_a_truncated_real_nifti(case_by_id, tmp_path, suffix):
    real = case_by_id("sct_t2_cord").image
    data = real.read_bytes() if suffix == ".nii.gz" else gzip.decompress(real.read_bytes())
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        read_image(path)


def test_read_image_rejects_truncated_nrrd_and_mha(case_by_id, tmp_path):
    image = sitk.ReadImage(str(case_by_id("sct_t2_cord").image))
    for name in ("cut.nrrd", "cut.mha"):
        full = tmp_path / f"full_{name}"
        sitk.WriteImage(image, str(full), useCompression=True)
        data = full.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="corrupt"):
            read_image(tmp_path / name)


def _write_dicom_series(folder: Path, series_uid: str, prefix: str, slices: int = 3) -> None:
    """A tiny CT series written slice by slice with SimpleITK's GDCM writer.

    GDCM's writer switches the process locale to "C" and leaves it there, which turns Python's preferred
    encoding into ASCII for every later test in this process: the locale is restored afterwards.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_slices(folder, series_uid, prefix, slices)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(folder: Path, series_uid: str, prefix: str, slices: int) -> None:
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    volume = sitk.GetImageFromArray(np.arange(slices * 8 * 9, dtype=np.int16).reshape(slices, 8, 9))
    volume.SetSpacing((0.5, 0.5, 2.5))
    for n in range(slices):
        s = volume[:, :, n]
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{n + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(n + 1),
            "0020|0032": f"0\\0\\{2.5 * n}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": "2.5",
        }
        for key, value in tags.items():
            s.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{prefix}_{n:03d}.dcm"))
        writer.Execute(s)


def test_dicom_folder_with_two_series_asks_for_one(tmp_path):
    """Two series in one folder: the message names both and the --series-uid option; choosing one reads it."""
    first, second = "1.2.826.0.1.3680043.2.1125.10", "1.2.826.0.1.3680043.2.1125.20"
    _write_dicom_series(tmp_path, first, "a", slices=3)
    _write_dicom_series(tmp_path, second, "b", slices=4)
    with pytest.raises(InputError, match="--series-uid") as e:
        read_image(tmp_path)
    assert "2 DICOM series" in str(e.value) and first in str(e.value) and second in str(e.value)
    with pytest.raises(InputError, match="is not in"):
        read_image(tmp_path, series_uid="1.2.3")
    chosen = read_image(tmp_path, series_uid=second)
    assert chosen.array.shape == (4, 8, 9)
    np.testing.assert_allclose(chosen.geometry.spacing, (0.5, 0.5, 2.5), atol=1e-6)


def test_a_single_dicom_file_without_suffix_opens_its_whole_series(data_dir):
    # The TotalSegmentator DICOM files carry no .dcm suffix; they are recognised by the "DICM" marker.
    folder = data_dir / "totalseg" / "example_ct_dicom"
    one_file = sorted(p for p in folder.iterdir() if p.is_file())[0]
    whole = read_image(folder)
    single = read_image(one_file)
    assert single.array.shape == whole.array.shape == (20, 512, 512)
    assert np.array_equal(single.array, whole.array)
    assert np.abs(single.geometry.ijk_to_ras - whole.geometry.ijk_to_ras).max() < 1e-9
