"""Markups (.mrk.json) and segmentations (.seg.nrrd, label maps) through the real Slicer core.

Files are written and read by Slicer's own storage nodes; the tests check the numbers that come back, the
LPS convention on disk, the messages for the wrong kind of file, and that failures leave nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import vtk
from conftest import oblique_geometry, rotation_matrix
from WeakAnnotateLib.core.colors import PALETTE, segment_color
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.image_io import read_image, write_image
from WeakAnnotateLib.scene.markups_io import (
    load_box_node,
    load_points_node,
    markups_type,
    read_box,
    read_points,
    write_box,
    write_points,
)
from WeakAnnotateLib.scene.mrml_adapter import (
    Box,
    add_segmentation_node,
    scene_change,
    segment_ids,
    segment_mask,
    set_segment_mask,
)
from WeakAnnotateLib.scene.segmentation_io import (
    labelmap_from_segmentation,
    read_segmentation,
    segmentation_from_labelmap,
    write_segmentation,
)
from WeakAnnotateLib.scene.slicer_runtime import get_runtime

TOL_MM = 1e-4
POINTS = np.array([[1.123456789, -2.5, 3.3], [10.0, 20.0, -30.123456789], [-101.25, 0.0, 77.7], [0.001, -0.002, 0.003]])


def _no_partial_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if "partial" in p.name]


def _oblique_box() -> Box:
    return Box(
        center=np.array([1.5, 2.25, -3.125]),
        size=np.array([10.0, 20.0, 5.5]),
        axes=rotation_matrix((1.0, 2.0, 3.0), 20.0),
    )


# --- points ---------------------------------------------------------------------------------------------------


def test_points_round_trip_and_file_is_lps(tmp_path):
    labels = ["a", "b", "c", "d"]
    path = write_points(tmp_path / "p.mrk.json", POINTS, labels, "clicks")
    assert path == tmp_path / "p.mrk.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mrk.json"]

    doc = json.loads(path.read_text(encoding="utf-8"))
    (markup,) = doc["markups"]
    assert markup["type"] == "Fiducial"
    assert markup["coordinateSystem"] == "LPS"
    on_disk = np.array([cp["position"] for cp in markup["controlPoints"]])
    np.testing.assert_allclose(on_disk, POINTS * np.array([-1.0, -1.0, 1.0]), atol=1e-9)
    assert [cp["label"] for cp in markup["controlPoints"]] == labels

    points, read_labels = read_points(path, count=4)
    assert np.abs(points - POINTS).max() <= TOL_MM
    assert read_labels == labels
    assert markups_type(path) == "Fiducial"


def test_points_with_required_count_are_fixed_in_the_file(tmp_path):
    path = write_points(tmp_path / "six.mrk.json", np.arange(18.0).reshape(6, 3), required=6)
    markup = json.loads(path.read_text(encoding="utf-8"))["markups"][0]
    assert markup["fixedNumberOfControlPoints"] is True
    points, labels = read_points(path, count=6)
    np.testing.assert_allclose(points, np.arange(18.0).reshape(6, 3), atol=1e-9)
    assert labels == [f"points-{n}" for n in range(1, 7)]


def test_read_points_wrong_count(tmp_path):
    path = write_points(tmp_path / "five.mrk.json", np.zeros((5, 3)))
    with pytest.raises(InputError, match="Exactly 6") as e:
        read_points(path, count=6, what="extreme points")
    assert "got 5" in str(e.value) and "extreme points" in str(e.value)
    with pytest.raises(InputError, match="At least 25"):
        read_points(path, min_count=25)


def test_read_points_outside_the_image(tmp_path):
    g = oblique_geometry()
    inside = g.index_to_ras(np.array([[0, 0, 0], [22, 30, 36], [11, 15, 18]]))
    path = write_points(tmp_path / "in.mrk.json", inside)
    points, _ = read_points(path, geometry=g)
    np.testing.assert_array_equal(g.ras_to_index(points), [[0, 0, 0], [22, 30, 36], [11, 15, 18]])

    outside = inside.copy()
    outside[1] = g.index_to_ras(np.array([22, 30, 38]))[0]  # two voxels past the last i
    path = write_points(tmp_path / "out.mrk.json", outside)
    with pytest.raises(InputError, match="outside the image") as e:
        read_points(path, geometry=g)
    assert "Point 2" in str(e.value)


def test_load_points_node_on_a_box_file_says_what_it_holds(runtime, tmp_path):
    path = write_box(tmp_path / "box.mrk.json", _oblique_box())
    before = runtime.scene.GetNumberOfNodes()
    with pytest.raises(InputError) as e:
        load_points_node(runtime, path)
    assert "box (ROI)" in str(e.value) and "points" in str(e.value)
    assert runtime.scene.GetNumberOfNodes() == before
    with pytest.raises(InputError, match=r"box \(ROI\)"):
        read_points(path)


def test_load_box_node_on_a_points_file_is_an_error(runtime, tmp_path):
    path = write_points(tmp_path / "p.mrk.json", POINTS)
    with pytest.raises(InputError) as e:
        load_box_node(runtime, path)
    assert "point list" in str(e.value) and "box is needed" in str(e.value)
    with pytest.raises(InputError, match="point list"):
        read_box(path)


def test_loaded_nodes_are_the_right_classes_with_the_right_content(runtime, tmp_path):
    points_node = load_points_node(runtime, write_points(tmp_path / "p.mrk.json", POINTS))
    assert points_node.GetClassName() == "vtkMRMLMarkupsFiducialNode"
    assert points_node.GetNumberOfControlPoints() == 4
    p = np.zeros(3)
    points_node.GetNthControlPointPosition(1, p)
    np.testing.assert_allclose(p, POINTS[1], atol=1e-9)
    box_node = load_box_node(runtime, write_box(tmp_path / "b.mrk.json", _oblique_box()))
    assert box_node.GetClassName() == "vtkMRMLMarkupsROINode"
    np.testing.assert_allclose(box_node.GetSize(), [10.0, 20.0, 5.5], atol=1e-9)


BAD_MARKUPS = {
    "missing": (None, "does not exist"),
    "random-bytes": (b"\x00\xff\x13garbage\x99", "corrupt"),
    "truncated-json": ('{"markups": [{"type": "Fiducial", "controlPoints": [', "corrupt"),
    "not-markups-json": ('{"hello": 1}', "corrupt or not a Slicer markups file"),
    "empty-markups-list": ('{"markups": []}', "corrupt"),
    "two-markups": ('{"markups": [{"type": "Fiducial"}, {"type": "Fiducial"}]}', "holds 2 markups"),
    "line-not-points": ('{"markups": [{"type": "Line"}]}', "a line"),
}


@pytest.mark.parametrize("kind", list(BAD_MARKUPS))
def test_bad_markups_files_are_rejected(tmp_path, kind):
    content, fragment = BAD_MARKUPS[kind]
    path = tmp_path / "bad.mrk.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    scene = get_runtime().scene
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="bad.mrk.json") as e:
        read_points(path)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError):
        read_box(path)
    assert scene.GetNumberOfNodes() == before  # rejected before Slicer loads anything


def test_markups_file_needs_the_mrk_json_suffix(tmp_path):
    good = write_points(tmp_path / "p.mrk.json", POINTS)
    renamed = tmp_path / "p.json"
    renamed.write_bytes(good.read_bytes())
    with pytest.raises(InputError, match=r"\.mrk\.json"):
        read_points(renamed)
    with pytest.raises(InputError, match=r"\.mrk\.json"):
        write_points(tmp_path / "q.json", POINTS)
    with pytest.raises(InputError, match=r"\.mrk\.json"):
        write_box(tmp_path / "b.txt", _oblique_box())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.mrk.json"]


def test_points_file_with_corrupt_control_points_is_rejected(tmp_path):
    path = tmp_path / "bad.mrk.json"
    path.write_text('{"markups": [{"type": "Fiducial", "controlPoints": "garbage"}]}', encoding="utf-8")
    with pytest.raises(InputError, match="corrupt"):
        read_points(path)


def test_failed_write_leaves_no_file_and_the_scene_unchanged(tmp_path):
    scene = get_runtime().scene
    markups_before = scene.GetNodesByClass("vtkMRMLMarkupsNode").GetNumberOfItems()
    with pytest.raises(InputError, match="does not exist"):
        write_points(tmp_path / "missing" / "p.mrk.json", POINTS)
    with pytest.raises(InputError, match="does not exist"):
        write_box(tmp_path / "missing" / "b.mrk.json", _oblique_box())
    (tmp_path / "folder.mrk.json").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_points(tmp_path / "folder.mrk.json", POINTS)
    assert not (tmp_path / "missing").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["folder.mrk.json"]
    assert list((tmp_path / "folder.mrk.json").iterdir()) == []
    # No markups node is left behind (nor its display and storage nodes: see the test below).
    assert scene.GetNodesByClass("vtkMRMLMarkupsNode").GetNumberOfItems() == markups_before


def test_markups_read_and_write_leave_the_scene_as_it_was(tmp_path):
    scene = get_runtime().scene
    before = scene.GetNumberOfNodes()
    path = write_points(tmp_path / "p.mrk.json", POINTS)
    read_points(path)
    read_box(write_box(tmp_path / "b.mrk.json", _oblique_box()))
    with pytest.raises(InputError):
        write_points(tmp_path / "missing" / "p.mrk.json", POINTS)
    with pytest.raises(InputError):
        read_points(path, count=6)
    assert scene.GetNumberOfNodes() == before


def test_successful_writes_leave_no_partial_files(tmp_path):
    write_points(tmp_path / "p.mrk.json", POINTS)
    write_box(tmp_path / "b.mrk.json", _oblique_box())
    write_points(tmp_path / "p.mrk.json", POINTS[:2])  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mrk.json", "p.mrk.json"]
    assert len(read_points(tmp_path / "p.mrk.json")[0]) == 2


# --- boxes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        Box(np.array([-20.0, 35.5, 110.25]), np.array([30.0, 12.5, 7.0]), np.eye(3)),
        _oblique_box(),
        Box(np.array([0.0, 0.0, 0.0]), np.array([3.3, 4.4, 5.5]), rotation_matrix((0.0, 0.0, 1.0), 90.0)),
    ],
    ids=["axis-aligned", "oblique", "rotated-90"],
)
def test_box_round_trip(tmp_path, box):
    path = write_box(tmp_path / "box.mrk.json", box, "my box")
    markup = json.loads(path.read_text(encoding="utf-8"))["markups"][0]
    assert markup["type"] == "ROI" and markup["coordinateSystem"] == "LPS"
    np.testing.assert_allclose(markup["center"], box.center * np.array([-1.0, -1.0, 1.0]), atol=1e-9)
    np.testing.assert_allclose(markup["size"], box.size, atol=1e-9)

    back = read_box(path)
    assert np.abs(back.center - box.center).max() <= TOL_MM
    assert np.abs(back.size - box.size).max() <= TOL_MM
    assert np.abs(back.axes - box.axes).max() <= 1e-6
    assert np.abs(back.corners() - box.corners()).max() <= TOL_MM


def test_read_box_checks_extent_and_overlap_with_the_image(tmp_path):
    g = oblique_geometry()
    flat = write_box(tmp_path / "flat.mrk.json", Box(np.zeros(3), np.array([10.0, 0.0, 5.0]), np.eye(3)))
    with pytest.raises(InputError, match="zero or negative extent"):
        read_box(flat)
    centre = g.index_to_ras(np.array([11, 15, 18]))[0]
    on_image = write_box(tmp_path / "on.mrk.json", Box(centre, np.array([10.0, 10.0, 10.0]), np.eye(3)))
    assert np.abs(read_box(on_image, geometry=g).center - centre).max() <= TOL_MM
    far = write_box(tmp_path / "far.mrk.json", Box(centre + 1000.0, np.array([10.0, 10.0, 10.0]), np.eye(3)))
    with pytest.raises(InputError, match="entirely outside the image"):
        read_box(far, geometry=g)


# --- segmentations ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_labels(data_dir):
    from conftest import case_by_id_in

    case = case_by_id_in(data_dir, "ts_ct_sm")
    return read_image(case.mask), case.labels


def test_multilabel_seg_nrrd_round_trip_is_exact(runtime, ts_labels, tmp_path):
    labels, names = ts_labels
    values = [int(v) for v in np.unique(labels.array) if v != 0]
    assert len(values) == 41
    node = segmentation_from_labelmap(runtime, labels.array, labels.geometry, name="ts", names=names)
    assert len(segment_ids(node)) == 41

    path = write_segmentation(tmp_path / "ts.seg.nrrd", node)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.seg.nrrd"]
    loaded = read_segmentation(runtime, path)
    assert loaded.GetID() != node.GetID()
    back, table = labelmap_from_segmentation(loaded, labels.geometry)
    np.testing.assert_array_equal(back, labels.array)
    assert sorted(table) == values
    assert table[5] == "liver" and table[1] == "spleen" and table[117] == "label 117"

    segmentation = loaded.GetSegmentation()
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    np.testing.assert_allclose(liver.GetColor(), segment_color("liver"), atol=1e-6)
    np.testing.assert_allclose(liver.GetColor(), (0.87, 0.51, 0.31), atol=1e-6)
    other = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("label 117"))
    assert tuple(np.round(other.GetColor(), 6)) in {tuple(np.round(c, 6)) for c in PALETTE}


def test_multilabel_nifti_label_map_round_trip_is_exact(runtime, ts_labels, tmp_path):
    labels, names = ts_labels
    node = segmentation_from_labelmap(runtime, labels.array, labels.geometry, names=names)
    path = write_segmentation(tmp_path / "ts.nii.gz", node, labels.geometry)
    on_disk = read_image(path)
    np.testing.assert_array_equal(on_disk.array, labels.array)
    assert on_disk.geometry.same_grid(labels.geometry)

    loaded = read_segmentation(runtime, path, geometry=labels.geometry, names=names)
    back, table = labelmap_from_segmentation(loaded, labels.geometry)
    np.testing.assert_array_equal(back, labels.array)
    assert table[5] == "liver"
    with pytest.raises(InputError, match="needs the image grid"):
        write_segmentation(tmp_path / "again.nii.gz", node)
    assert not (tmp_path / "again.nii.gz").exists()


def test_label_map_on_a_different_grid_is_rejected(runtime, ts_labels, tmp_path):
    labels, _ = ts_labels
    path = write_image(tmp_path / "labels.nii.gz", labels.array, labels.geometry)
    other = oblique_geometry(shape=labels.geometry.shape)
    before = runtime.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="not on the image's grid"):
        read_segmentation(runtime, path, geometry=other)
    assert runtime.scene.GetNumberOfNodes() == before


def test_label_map_whose_shape_does_not_match_rolls_the_scene_back(runtime, ts_labels):
    """segmentation_from_labelmap adds the segmentation node, then fails on the first segment: nothing stays."""
    labels, _ = ts_labels
    before = runtime.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="does not match the grid"):
        segmentation_from_labelmap(runtime, labels.array[:, :, :-1], labels.geometry)
    assert runtime.scene.GetNumberOfNodes() == before
    assert runtime.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_empty_label_map_is_rejected(runtime, tmp_path):
    g = oblique_geometry()
    before = runtime.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="empty"):
        segmentation_from_labelmap(runtime, np.zeros(g.shape, np.uint8), g)
    path = write_image(tmp_path / "empty.nii.gz", np.zeros(g.shape, np.uint8), g)
    with pytest.raises(InputError, match="empty"):
        read_segmentation(runtime, path, geometry=g)
    assert runtime.scene.GetNumberOfNodes() == before


def test_bad_segmentation_files_are_rejected(runtime, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_segmentation(runtime, tmp_path / "none.seg.nrrd")
    corrupt = tmp_path / "corrupt.seg.nrrd"
    corrupt.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(InputError, match="corrupt"):
        read_segmentation(runtime, corrupt)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(InputError, match="corrupt"):
        read_segmentation(runtime, garbage)


_READ_IN_CHILD = """
import sys
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.scene.segmentation_io import read_segmentation
from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime
try:
    read_segmentation(new_headless_runtime(), sys.argv[1])
except InputError as e:
    print("INPUT-ERROR:", e)
    sys.exit(2)
print("LOADED")
"""


@pytest.mark.parametrize("kind", ["bad-header", "truncated"])
def test_corrupt_seg_nrrd_header_is_an_input_error_not_a_crash(runtime, ts_labels, tmp_path, kind):
    path = tmp_path / "corrupt.seg.nrrd"
    if kind == "bad-header":
        path.write_bytes(b"NRRD0004\nthis is not a segmentation\n")
    else:
        labels, _ = ts_labels
        node = segmentation_from_labelmap(runtime, labels.array, labels.geometry)
        data = write_segmentation(tmp_path / "good.seg.nrrd", node).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    # In a child process: the bug kills the interpreter, which must not take the test run with it.
    done = subprocess.run(
        [sys.executable, "-c", _READ_IN_CHILD, str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "INPUT-ERROR:" in done.stdout and "corrupt" in done.stdout


def test_failed_segmentation_write_leaves_no_file(runtime, ts_labels, tmp_path):
    labels, _ = ts_labels
    node = segmentation_from_labelmap(runtime, labels.array, labels.geometry)
    with pytest.raises(InputError, match="does not exist"):
        write_segmentation(tmp_path / "missing" / "s.seg.nrrd", node)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("left_handed", [False, True], ids=["oblique", "oblique-left-handed"])
def test_segment_mask_round_trip_on_an_oblique_grid(runtime, left_handed):
    g = oblique_geometry(left_handed=left_handed)
    k, j, i = np.indices(g.shape)
    blob = ((k - 11) / 8.0) ** 2 + ((j - 14) / 10.0) ** 2 + ((i - 20) / 12.0) ** 2 <= 1.0
    blob[0, 0, 0] = True  # a corner voxel: the extent must not be trimmed
    node = add_segmentation_node(runtime, "seg", g)
    sid = set_segment_mask(runtime, node, blob, g, "tumour")
    np.testing.assert_array_equal(segment_mask(node, sid, g), blob)

    # Replacing the voxels of an existing segment keeps one segment and gives exactly the new mask.
    shifted = np.roll(blob, 3, axis=2)
    assert set_segment_mask(runtime, node, shifted, g, "tumour", (0.1, 0.2, 0.3)) == sid
    assert segment_ids(node) == [sid]
    np.testing.assert_array_equal(segment_mask(node, sid, g), shifted)
    np.testing.assert_allclose(node.GetSegmentation().GetSegment(sid).GetColor(), (0.1, 0.2, 0.3), atol=1e-6)

    second = set_segment_mask(runtime, node, ~blob & (k < 5), g, "background")
    assert segment_ids(node) == [sid, second]
    np.testing.assert_array_equal(segment_mask(node, second, g), ~blob & (k < 5))
    np.testing.assert_array_equal(segment_mask(node, sid, g), shifted)  # untouched

    with pytest.raises(InputError, match="does not match the grid"):
        set_segment_mask(runtime, node, blob[:-1], g, "bad")
    with pytest.raises(InputError, match="not in"):
        segment_mask(node, "no-such-segment", g)


def test_segment_colours_follow_anatomy(runtime):
    g = oblique_geometry()
    labelmap = np.zeros(g.shape, np.uint8)
    labelmap[2:5, 2:5, 2:5] = 1
    labelmap[8:12, 8:12, 8:12] = 2
    labelmap[15:18, 15:18, 15:18] = 3
    node = segmentation_from_labelmap(runtime, labelmap, g, names={1: "liver", 2: "Spinal cord"})
    segmentation = node.GetSegmentation()
    colours = {segmentation.GetSegment(s).GetName(): segmentation.GetSegment(s).GetColor() for s in segment_ids(node)}
    assert set(colours) == {"liver", "Spinal cord", "label 3"}
    np.testing.assert_allclose(colours["liver"], (0.87, 0.51, 0.31), atol=1e-6)
    np.testing.assert_allclose(colours["Spinal cord"], (1.0, 0.94, 0.61), atol=1e-6)
    np.testing.assert_allclose(colours["label 3"], PALETTE[2], atol=1e-6)


# --- scene and runtime --------------------------------------------------------------------------------------


def test_scene_change_rolls_back_every_node_added_inside(runtime):
    scene = runtime.scene
    before = scene.GetNumberOfNodes()
    ids_before = {scene.GetNthNode(n).GetID() for n in range(before)}
    with pytest.raises(RuntimeError, match="boom"):
        with scene_change(scene):
            volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
            volume.CreateDefaultDisplayNodes()
            seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "s")
            seg.CreateDefaultDisplayNodes()
            assert scene.GetNumberOfNodes() >= before + 4
            raise RuntimeError("boom")
    assert scene.GetNumberOfNodes() == before
    assert {scene.GetNthNode(n).GetID() for n in range(before)} == ids_before

    with scene_change(scene):  # success keeps what was added
        scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "kept")
    assert scene.GetNumberOfNodes() == before + 1
    assert scene.GetFirstNodeByName("kept") is not None


def test_headless_runtime_registers_the_module_logics(runtime):
    for name in ("Segmentations", "Markups", "Volumes", "Terminologies"):
        assert runtime.app_logic.GetModuleLogic(name) is not None, name
    assert runtime.app_logic.GetModuleLogic("Segmentations").IsA("vtkSlicerSegmentationsModuleLogic")
    assert runtime.app_logic.GetModuleLogic("Markups").IsA("vtkSlicerMarkupsLogic")
    assert runtime.headless is True


@pytest.mark.parametrize("name", ["Colors", "SubjectHierarchy"])
def test_headless_runtime_keeps_every_logic_it_registers(runtime, name):
    import gc

    gc.collect()
    assert runtime.app_logic.GetModuleLogic(name) is not None


def test_headless_runtime_has_the_default_colour_tables(runtime):
    import gc

    gc.collect()
    assert runtime.scene.GetNodesByClass("vtkMRMLColorTableNode").GetNumberOfItems() > 0
    assert runtime.scene.GetNodeByID("vtkMRMLColorTableNodeLabels") is not None


def test_segmentation_converters_build_a_closed_surface(runtime, ts_labels):
    labels, names = ts_labels
    liver = (labels.array == 5).astype(np.uint8)
    node = segmentation_from_labelmap(runtime, liver, labels.geometry, names={1: "liver"})
    assert node.CreateClosedSurfaceRepresentation() is True
    (sid,) = segment_ids(node)
    surface = vtk.vtkPolyData()
    node.GetClosedSurfaceRepresentation(sid, surface)
    assert surface.GetNumberOfPoints() > 1000
    # The surface lies around the liver: its bounds match the mask's RAS extent to within a voxel or two.
    index = np.argwhere(liver)
    ras = labels.geometry.index_to_ras(index)
    bounds = np.array(surface.GetBounds()).reshape(3, 2)
    np.testing.assert_allclose(bounds[:, 0], ras.min(axis=0), atol=2 * 3.0)
    np.testing.assert_allclose(bounds[:, 1], ras.max(axis=0), atol=2 * 3.0)
