"""Annotations simulated from a reference mask, as a user would give them (and as the papers measure).

* 6 extreme points: one at the minimum and one at the maximum of the object along each voxel axis.
  The point is the centre of the extreme slice's object voxel nearest to that slice's object centroid,
  so it lies on the object's boundary, as a click would. Optional jitter moves each point by a random
  direction and a length drawn uniformly from [0, ``jitter_mm``] (seeded), kept inside the image.
* The tight 3D box: the object's voxel extent (voxel edges, not centres), aligned with the voxel axes,
  optionally grown by a margin in mm on every side.
* The tight 2D box of every slice: the object's extent in each slice along one axis.
* N surface points: object voxels with a 6-neighbour outside, spread by farthest-point sampling in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.box import Box
from ..core.errors import InputError
from ..core.geometry import Geometry

_RAS_NAMES = (("left", "right"), ("posterior", "anterior"), ("inferior", "superior"))


def check_mask(mask: np.ndarray, geometry: Geometry | None = None, what: str = "reference mask") -> np.ndarray:
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise InputError(f"The {what} must be 3D, got {mask.ndim}D.")
    if geometry is not None and mask.shape != geometry.shape:
        raise InputError(f"The {what} shape {mask.shape} does not match the image grid {geometry.shape}.")
    if not mask.any():
        raise InputError(f"The {what} is empty: it has no foreground voxel. Choose a label that is present.")
    return mask


def axis_end_names(geometry: Geometry, array_axis: int) -> tuple[str, str]:
    """Anatomical names of the low-index and high-index ends of an array axis (e.g. 'right', 'left')."""
    column = geometry.direction[:, 2 - array_axis]
    dominant = int(np.argmax(np.abs(column)))
    negative, positive = _RAS_NAMES[dominant]
    return (negative, positive) if column[dominant] > 0 else (positive, negative)


def extreme_point_indices(mask: np.ndarray) -> np.ndarray:
    """(6, 3) array indices (k, j, i): for i, j, k in turn, the object's low end then its high end."""
    mask = check_mask(mask)
    result = []
    for axis in (2, 1, 0):
        coords = np.nonzero(mask)
        along = coords[axis]
        for end in (along.min(), along.max()):
            on_face = along == end
            face = np.stack([c[on_face] for c in coords], axis=1)
            centroid = face.mean(axis=0)
            d2 = ((face - centroid) ** 2).sum(axis=1)
            best = np.flatnonzero(d2 == d2.min())
            # Ties: the lowest index in (k, j, i) order, so the result never depends on scan order.
            result.append(min(map(tuple, face[best])))
    return np.array(result, dtype=np.int64)


def extreme_points(
    mask: np.ndarray, geometry: Geometry, *, jitter_mm: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """RAS positions (6, 3) and anatomical labels of the six extreme points of ``mask``."""
    mask = check_mask(mask, geometry)
    if jitter_mm < 0:
        raise InputError(f"Jitter must be ≥ 0 mm, got {jitter_mm}.")
    index = extreme_point_indices(mask)
    points = geometry.index_to_ras(index)
    if jitter_mm > 0:
        rng = np.random.default_rng(seed)
        direction = rng.normal(size=(6, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        points = points + direction * rng.uniform(0.0, jitter_mm, size=(6, 1))
        ijk = np.clip(geometry.ras_to_ijk(points), 0, np.asarray(geometry.size_ijk) - 1)
        points = geometry.ijk_to_ras_points(ijk)
    labels = []
    for array_axis in (2, 1, 0):
        low, high = axis_end_names(geometry, array_axis)
        labels += [low, high]
    return points, labels


def _right_handed_axes(geometry: Geometry) -> np.ndarray:
    axes = geometry.direction.copy()
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1  # a box is symmetric: flipping one axis describes the same box, right-handed
    return axes


def index_box(lo_kji: np.ndarray, hi_kji: np.ndarray, geometry: Geometry, margin_mm: float = 0.0) -> Box:
    """The box covering voxels ``lo..hi`` (inclusive, array order) edge to edge, plus a margin in mm."""
    lo_ijk = np.asarray(lo_kji, dtype=float)[::-1] - 0.5
    hi_ijk = np.asarray(hi_kji, dtype=float)[::-1] + 0.5
    size = (hi_ijk - lo_ijk) * geometry.spacing + 2.0 * margin_mm
    center = geometry.ijk_to_ras_points((lo_ijk + hi_ijk) / 2.0)[0]
    return Box(center=center, size=size, axes=_right_handed_axes(geometry))


def tight_box(mask: np.ndarray, geometry: Geometry, *, margin_mm: float = 0.0) -> Box:
    """The object's tight 3D box along the voxel axes, grown by ``margin_mm`` on every side."""
    mask = check_mask(mask, geometry)
    if margin_mm < 0:
        raise InputError(f"Box margin must be ≥ 0 mm, got {margin_mm}.")
    coords = np.argwhere(mask)
    return index_box(coords.min(axis=0), coords.max(axis=0), geometry, margin_mm)


def box_index_bounds(box: Box, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive array-index bounds (k, j, i) of the voxels whose centres the box's bounding extent covers."""
    ijk = geometry.ras_to_ijk(box.corners())
    tol = 1e-4  # voxel centres exactly on a face count as inside: float noise must not drop a slice
    lo = np.ceil(ijk.min(axis=0) - tol).astype(np.int64)[::-1]
    hi = np.floor(ijk.max(axis=0) + tol).astype(np.int64)[::-1]
    shape = np.asarray(geometry.shape)
    if np.any(hi < 0) or np.any(lo > shape - 1) or np.any(hi < lo):
        raise InputError("The box contains no voxel of the image; place it on the image it belongs to.")
    return np.maximum(lo, 0), np.minimum(hi, shape - 1)


def box_mask(box: Box, geometry: Geometry) -> np.ndarray:
    """Voxels whose centres lie inside the (possibly oblique) box."""
    lo, hi = box_index_bounds(box, geometry)
    grids = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    index = np.stack([g.ravel() for g in grids], axis=1)
    local = (geometry.index_to_ras(index) - box.center) @ box.axes
    inside = np.all(np.abs(local) <= box.size / 2 + 1e-4, axis=1)
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[tuple(index[inside].T)] = True
    return mask


@dataclass(frozen=True)
class SliceBox:
    """The object's tight box in one slice: inclusive in-plane array-index bounds, and the box in RAS."""

    slice_index: int
    lo: tuple[int, int]
    hi: tuple[int, int]
    box: Box


def slice_boxes(mask: np.ndarray, geometry: Geometry, *, axis: int = 0) -> list[SliceBox]:
    """The tight 2D box of every slice (along array ``axis``, 0 = k) that contains the object."""
    mask = check_mask(mask, geometry)
    if axis not in (0, 1, 2):
        raise InputError(f"Slice axis must be 0, 1 or 2 (array axes k, j, i), got {axis}.")
    result = []
    for s in np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))):
        coords = np.argwhere(np.take(mask, s, axis=axis))
        lo2, hi2 = coords.min(axis=0), coords.max(axis=0)
        lo, hi = np.insert(lo2, axis, s), np.insert(hi2, axis, s)
        result.append(SliceBox(int(s), tuple(map(int, lo2)), tuple(map(int, hi2)), index_box(lo, hi, geometry)))
    return result


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Object voxels with at least one 6-neighbour outside the object (image borders count as outside)."""
    padded = np.pad(mask, 1)
    return mask & ~ndimage.binary_erosion(padded)[1:-1, 1:-1, 1:-1]


def surface_points(mask: np.ndarray, geometry: Geometry, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` RAS points on the object's surface, spread evenly (farthest-point sampling in mm)."""
    mask = check_mask(mask, geometry)
    if n < 1:
        raise InputError(f"The number of surface points must be ≥ 1, got {n}.")
    candidates = np.argwhere(surface_voxels(mask))
    if n > len(candidates):
        raise InputError(f"The object's surface has only {len(candidates)} voxels; ask for at most that many points.")
    ras = geometry.index_to_ras(candidates)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(ras)))]
    d2 = ((ras - ras[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(d2))
        chosen.append(nxt)
        d2 = np.minimum(d2, ((ras - ras[nxt]) ** 2).sum(axis=1))
    return ras[chosen]
