"""Simulated annotations on real masks: each must be exactly what the reference mask implies.

Expected values are computed here independently from the mask (numpy only), never with the code under test.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from conftest import case_by_id_in, find_data_dir, oblique_geometry
from scipy.spatial import cKDTree
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.evaluation.annotation_set import AnnotationSet
from WeakAnnotateLib.evaluation.simulate import (
    axis_end_names,
    box_index_bounds,
    box_mask,
    extreme_point_indices,
    extreme_points,
    slice_boxes,
    surface_points,
    surface_voxels,
    tight_box,
)
from WeakAnnotateLib.files.image_io import read_image
from WeakAnnotateLib.scene.markups_io import read_box, read_points

# key -> (case id, label or None for every nonzero voxel, expected labels of the six extreme points)
MASKS = {
    # LPS-identity grid: i runs to the patient's left, j to posterior, k to superior.
    "pet_sts001": ("ibsi_STS_001_PET", None, ["right", "left", "anterior", "posterior", "inferior", "superior"]),
    "brats_whole_tumour": (
        "brats_brats_2013_pat0001_1_Flair",
        None,
        ["right", "left", "anterior", "posterior", "inferior", "superior"],
    ),
    # Permuted, left-handed: RAS columns of i, j, k are -A, +S, +R.
    "sct_t2_cord": ("sct_t2_cord", None, ["anterior", "posterior", "inferior", "superior", "left", "right"]),
    # LPS diag(-1, -1, 1) = RAS identity.
    "ts_liver": ("ts_ct_sm", 5, ["left", "right", "posterior", "anterior", "inferior", "superior"]),
}
KEYS = list(MASKS)
OPPOSITE = {"right": ("left", 0), "anterior": ("posterior", 1), "superior": ("inferior", 2)}


@cache
def _load(key: str) -> tuple[np.ndarray, Geometry]:
    root = find_data_dir()
    if root is None:
        pytest.skip("real data not found (shared/data)")
    case_id, label, _ = MASKS[key]
    image = read_image(case_by_id_in(root, case_id).mask)
    mask = image.array != 0 if label is None else image.array == label
    mask.setflags(write=False)
    return mask, image.geometry


@pytest.fixture(params=KEYS, ids=KEYS)
def real_mask(request, data_dir):
    mask, geometry = _load(request.param)
    return request.param, mask, geometry


def _independent_surface(mask: np.ndarray) -> np.ndarray:
    """Object voxels with a 6-neighbour outside the object, image borders counting as outside (no scipy)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_neighbours_in = np.ones_like(mask)
    for axis in range(3):
        for shift in (-1, 1):
            all_neighbours_in &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return inner & ~all_neighbours_in


# --- extreme points -------------------------------------------------------------------------------------------


def test_extreme_points_lie_on_the_object_at_its_extent(real_mask):
    key, mask, g = real_mask
    points, labels = extreme_points(mask, g)
    assert points.shape == (6, 3)
    index = g.ras_to_index(points)
    assert mask[tuple(index.T)].all()
    # Exactly at voxel centres.
    assert np.abs(g.index_to_ras(index) - points).max() <= 1e-9

    coords = np.argwhere(mask)
    for n, (axis, end) in enumerate([(2, "min"), (2, "max"), (1, "min"), (1, "max"), (0, "min"), (0, "max")]):
        expected = getattr(coords[:, axis], end)()
        assert index[n, axis] == expected, (key, n)
        # The chosen voxel is the face voxel nearest to the face's centroid (ties allowed).
        face = coords[coords[:, axis] == expected]
        d2 = ((face - face.mean(axis=0)) ** 2).sum(axis=1)
        assert ((index[n] - face.mean(axis=0)) ** 2).sum() == pytest.approx(d2.min(), abs=1e-9), (key, n)
    np.testing.assert_array_equal(extreme_point_indices(mask), index)


def test_extreme_point_labels_are_anatomical_and_match_the_direction(real_mask):
    key, mask, g = real_mask
    points, labels = extreme_points(mask, g)
    assert labels == MASKS[key][2]
    by_name = dict(zip(labels, points, strict=True))
    for positive, (negative, ras_axis) in OPPOSITE.items():
        # RAS: right = +x, anterior = +y, superior = +z
        assert by_name[positive][ras_axis] > by_name[negative][ras_axis], (key, positive)
    assert [axis_end_names(g, a) for a in (2, 1, 0)] == [tuple(labels[0:2]), tuple(labels[2:4]), tuple(labels[4:6])]


@pytest.mark.parametrize("key", ["pet_sts001", "sct_t2_cord"])
def test_extreme_point_jitter(data_dir, key):
    mask, g = _load(key)
    exact, labels = extreme_points(mask, g)
    jitter = 3.0
    a, labels_a = extreme_points(mask, g, jitter_mm=jitter, seed=7)
    b, _ = extreme_points(mask, g, jitter_mm=jitter, seed=7)
    c, _ = extreme_points(mask, g, jitter_mm=jitter, seed=8)
    moved = np.linalg.norm(a - exact, axis=1)
    assert moved.max() <= jitter + 1e-6
    assert (moved > 0).any()
    assert labels_a == labels
    np.testing.assert_array_equal(a, b)  # deterministic for a seed
    assert np.abs(a - c).max() > 1e-3  # another seed, other clicks
    assert g.contains(a).all() and g.contains(c).all()
    with pytest.raises(InputError, match="Jitter"):
        extreme_points(mask, g, jitter_mm=-1.0)


def test_jitter_near_the_border_stays_inside_the_image():
    g = oblique_geometry(shape=(6, 7, 8), spacing=(1.0, 1.0, 1.0))
    mask = np.ones(g.shape, bool)  # the object fills the grid: every extreme point is on the border
    for seed in range(20):
        points, _ = extreme_points(mask, g, jitter_mm=5.0, seed=seed)
        assert g.contains(points).all()
        exact, _ = extreme_points(mask, g)
        assert np.linalg.norm(points - exact, axis=1).max() <= 5.0 + 1e-6


# --- boxes --------------------------------------------------------------------------------------------------


def test_tight_box_covers_exactly_the_bounding_box(real_mask):
    key, mask, g = real_mask
    coords = np.argwhere(mask)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    box = tight_box(mask, g)

    np.testing.assert_allclose(box.size, ((hi - lo + 1) * g.array_spacing)[::-1], atol=1e-9)
    assert np.linalg.det(box.axes) == pytest.approx(1.0, abs=1e-9)  # right-handed even on a left-handed grid
    bounds = box_index_bounds(box, g)
    np.testing.assert_array_equal(bounds[0], lo)
    np.testing.assert_array_equal(bounds[1], hi)

    inside = box_mask(box, g)
    expected = np.zeros_like(mask)
    expected[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    np.testing.assert_array_equal(inside, expected)
    assert inside[mask].all()


@pytest.mark.parametrize("margin", [2.0, 5.5])
def test_box_margin_grows_each_side_by_the_margin(real_mask, margin):
    key, mask, g = real_mask
    tight = tight_box(mask, g)
    grown = tight_box(mask, g, margin_mm=margin)
    np.testing.assert_allclose(grown.size - tight.size, 2.0 * margin, atol=1e-9)
    np.testing.assert_allclose(grown.center, tight.center, atol=1e-9)
    np.testing.assert_allclose(grown.axes, tight.axes, atol=1e-12)
    # Index bounds: every voxel whose centre is within `margin` mm of the tight box's faces along an axis.
    coords = np.argwhere(mask)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    extra = np.floor(margin / g.array_spacing + 0.5).astype(int)
    lo_m = np.maximum(lo - extra, 0)
    hi_m = np.minimum(hi + extra, np.asarray(g.shape) - 1)
    bounds = box_index_bounds(grown, g)
    np.testing.assert_array_equal(bounds[0], lo_m)
    np.testing.assert_array_equal(bounds[1], hi_m)
    with pytest.raises(InputError, match="margin"):
        tight_box(mask, g, margin_mm=-1.0)


def test_slice_boxes_one_per_slice_with_that_slices_extent(real_mask):
    key, mask, g = real_mask
    boxes = slice_boxes(mask, g)
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    assert [b.slice_index for b in boxes] == slices.tolist()
    for b in boxes:
        coords = np.argwhere(mask[b.slice_index])
        assert b.lo == tuple(coords.min(axis=0).tolist())
        assert b.hi == tuple(coords.max(axis=0).tolist())
        lo, hi = box_index_bounds(b.box, g)
        assert lo.tolist() == [b.slice_index, *b.lo]
        assert hi.tolist() == [b.slice_index, *b.hi]
        # One slice thick.
        assert b.box.size[2] == pytest.approx(g.spacing[2], abs=1e-9)


def test_slice_boxes_along_another_axis(data_dir):
    mask, g = _load("sct_t2_cord")
    boxes = slice_boxes(mask, g, axis=2)
    assert [b.slice_index for b in boxes] == np.flatnonzero(mask.any(axis=(0, 1))).tolist()
    for b in boxes:
        coords = np.argwhere(mask[:, :, b.slice_index])
        assert b.lo == tuple(coords.min(axis=0).tolist()) and b.hi == tuple(coords.max(axis=0).tolist())
        lo, hi = box_index_bounds(b.box, g)
        assert lo.tolist() == [b.lo[0], b.lo[1], b.slice_index]
        assert hi.tolist() == [b.hi[0], b.hi[1], b.slice_index]
    with pytest.raises(InputError, match="axis"):
        slice_boxes(mask, g, axis=3)


def test_oblique_box_mask_and_bounds():
    """On a truly oblique, anisotropic grid the tight box is still exact in index space."""
    g = oblique_geometry(left_handed=True)
    mask = np.zeros(g.shape, bool)
    mask[3:9, 10:22, 5:30] = True
    mask[4, 9, 6] = True
    box = tight_box(mask, g)
    np.testing.assert_array_equal(box_index_bounds(box, g)[0], [3, 9, 5])
    np.testing.assert_array_equal(box_index_bounds(box, g)[1], [8, 21, 29])
    expected = np.zeros_like(mask)
    expected[3:9, 9:22, 5:30] = True
    np.testing.assert_array_equal(box_mask(box, g), expected)


# --- surface points -----------------------------------------------------------------------------------------


def test_surface_voxels_match_an_independent_definition(real_mask):
    key, mask, g = real_mask
    np.testing.assert_array_equal(surface_voxels(mask), _independent_surface(mask))


@pytest.mark.parametrize("n", [25, 50])
def test_surface_points_are_distinct_surface_voxels_spread_evenly(real_mask, n):
    key, mask, g = real_mask
    points = surface_points(mask, g, n, seed=0)
    assert points.shape == (n, 3)
    index = g.ras_to_index(points)
    assert np.abs(g.index_to_ras(index) - points).max() <= 1e-9
    surface = _independent_surface(mask)
    assert surface[tuple(index.T)].all()
    assert len(np.unique(index, axis=0)) == n

    # Farthest-point sampling: the smallest distance between chosen points is at least the largest distance
    # from any surface voxel to its nearest chosen point (the covering radius).
    candidates = g.index_to_ras(np.argwhere(surface))
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=2)
    min_pair = pairwise[np.triu_indices(n, 1)].min()
    covering = cKDTree(points).query(candidates)[0].max()
    assert min_pair >= covering - 1e-9, (key, min_pair, covering)
    # ... and much better spread than random picks of the same number of surface voxels.
    rng = np.random.default_rng(0)
    random_min = []
    for _ in range(20):
        pick = candidates[rng.choice(len(candidates), n, replace=False)]
        d = np.linalg.norm(pick[:, None] - pick[None], axis=2)
        random_min.append(d[np.triu_indices(n, 1)].min())
    assert min_pair > 2.0 * np.median(random_min), (key, min_pair, np.median(random_min))

    np.testing.assert_array_equal(surface_points(mask, g, n, seed=0), points)  # deterministic


def test_surface_points_count_limits(data_dir):
    mask, g = _load("pet_sts001")
    available = int(_independent_surface(mask).sum())
    assert len(surface_points(mask, g, available)) == available
    with pytest.raises(InputError, match=f"only {available}"):
        surface_points(mask, g, available + 1)
    with pytest.raises(InputError, match="≥ 1"):
        surface_points(mask, g, 0)


# --- empty and malformed masks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m, g: extreme_points(m, g),
        lambda m, g: tight_box(m, g),
        lambda m, g: slice_boxes(m, g),
        lambda m, g: surface_points(m, g, 5),
        lambda m, g: AnnotationSet.simulate(m, g),
    ],
    ids=["extreme_points", "tight_box", "slice_boxes", "surface_points", "AnnotationSet"],
)
def test_empty_mask_is_an_error(call):
    g = oblique_geometry()
    with pytest.raises(InputError, match="empty"):
        call(np.zeros(g.shape, bool), g)
    with pytest.raises(InputError, match="does not match"):
        call(np.ones((2, 2, 2), bool), g)


# --- the annotation set, written and read back through Slicer ---------------------------------------------------


@pytest.mark.parametrize("key", ["pet_sts001", "sct_t2_cord"])
def test_annotation_set_saves_files_that_load_back_exactly(data_dir, tmp_path, key):
    mask, g = _load(key)
    annotations = AnnotationSet.simulate(mask, g, jitter_mm=2.0, margin_mm=3.0, surface_points=30, seed=5)
    written = annotations.save(tmp_path / "ann")
    folder = tmp_path / "ann"
    assert written["extreme_points"] == folder / "extreme_points.mrk.json"
    assert written["box"] == folder / "box.mrk.json"
    assert written["surface_points"] == folder / "surface_points.mrk.json"
    assert sorted(p.name for p in folder.iterdir()) == [
        "box.mrk.json",
        "extreme_points.mrk.json",
        "slice_boxes",
        "surface_points.mrk.json",
    ]
    slice_files = sorted((folder / "slice_boxes").iterdir())
    assert [p.name for p in slice_files] == [f"slice_{b.slice_index:03d}.mrk.json" for b in annotations.slice_boxes]
    assert len(slice_files) == int(mask.any(axis=(1, 2)).sum())
    assert not [p for p in folder.rglob("*") if "partial" in p.name]

    points, labels = read_points(written["extreme_points"], count=6, geometry=g)
    assert np.abs(points - annotations.extreme_points).max() <= 1e-9
    assert labels == annotations.extreme_labels == MASKS[key][2]

    # Slicer's ROI node keeps its centre in single precision (2e-5 mm at z = -793 mm): 1e-4 mm is the bar.
    box = read_box(written["box"], geometry=g)
    assert np.abs(box.center - annotations.box.center).max() <= 1e-4
    assert np.abs(box.size - annotations.box.size).max() <= 1e-9
    assert np.abs(box.axes - annotations.box.axes).max() <= 1e-9
    np.testing.assert_allclose(box.size, tight_box(mask, g).size + 6.0, atol=1e-9)
    np.testing.assert_array_equal(box_mask(box, g), box_mask(annotations.box, g))

    surface, surface_labels = read_points(written["surface_points"], count=30, geometry=g)
    assert np.abs(surface - annotations.surface_points).max() <= 1e-9
    assert surface_labels == [f"s{n}" for n in range(1, 31)]

    for path, expected in zip(slice_files, annotations.slice_boxes, strict=True):
        got = read_box(path, geometry=g)
        assert np.abs(got.center - expected.box.center).max() <= 1e-4
        assert np.abs(got.size - expected.box.size).max() <= 1e-9
        lo, hi = box_index_bounds(got, g)
        assert lo.tolist() == [expected.slice_index, *expected.lo]
        assert hi.tolist() == [expected.slice_index, *expected.hi]


def test_annotation_set_save_into_a_file_is_an_error(data_dir, tmp_path):
    mask, g = _load("pet_sts001")
    annotations = AnnotationSet.simulate(mask, g, surface_points=5)
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        annotations.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
