"""Voxel grids in patient space.

Conventions used everywhere in the logic layer:

* Arrays are indexed ``[k, j, i]`` (slice, row, column), as ``SimpleITK.GetArrayFromImage`` and
  ``slicer.util.arrayFromVolume`` return them.
* Points are RAS millimetres (Slicer's world space) unless a name says otherwise. Files on disk may be LPS
  (NIfTI/NRRD headers as ITK reads them, ``.mrk.json``); conversion happens only at the I/O boundary.
* A :class:`Geometry` holds the 4x4 IJK→RAS matrix (``(i, j, k)`` = column, row, slice) and the array shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Geometry:
    """The IJK→RAS matrix and the ``(K, J, I)`` array shape of one voxel grid."""

    ijk_to_ras: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        m = np.asarray(self.ijk_to_ras, dtype=float)
        if m.shape != (4, 4):
            raise InputError(f"IJK→RAS must be a 4x4 matrix, got shape {m.shape}.")
        if abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise InputError("IJK→RAS matrix is singular (zero spacing or degenerate direction).")
        m.setflags(write=False)
        object.__setattr__(self, "ijk_to_ras", m)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_spacing_origin_direction(
        cls,
        spacing: tuple[float, float, float] | np.ndarray,
        origin_ras: tuple[float, float, float] | np.ndarray,
        direction_ras: np.ndarray | None,
        shape: tuple[int, int, int],
    ) -> Geometry:
        """``spacing`` per (i, j, k); ``direction_ras`` columns are the unit i, j, k axes in RAS."""
        d = np.eye(3) if direction_ras is None else np.asarray(direction_ras, dtype=float).reshape(3, 3)
        m = np.eye(4)
        m[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=float))
        m[:3, 3] = np.asarray(origin_ras, dtype=float)
        return cls(m, shape)

    @classmethod
    def from_lps(
        cls,
        spacing: tuple[float, ...],
        origin_lps: tuple[float, ...],
        direction_lps: tuple[float, ...],
        size_ijk: tuple[int, ...],
    ) -> Geometry:
        """From ITK/SimpleITK's LPS description (``GetSpacing/GetOrigin/GetDirection/GetSize``)."""
        d = LPS_TO_RAS @ np.asarray(direction_lps, dtype=float).reshape(3, 3)
        o = LPS_TO_RAS @ np.asarray(origin_lps, dtype=float)
        return cls.from_spacing_origin_direction(spacing, o, d, tuple(int(s) for s in size_ijk)[::-1])

    # --- derived --------------------------------------------------------------------------------------
    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def array_spacing(self) -> np.ndarray:
        """Voxel size in mm along the array axes (k, j, i): use this with numpy/scipy on the array."""
        return self.spacing[::-1].copy()

    @property
    def origin(self) -> np.ndarray:
        """RAS position of voxel (0, 0, 0)'s centre."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k axes in RAS."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    def lps(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """(spacing, origin, direction) as SimpleITK expects them."""
        d = LPS_TO_RAS @ self.direction
        o = LPS_TO_RAS @ self.origin
        return tuple(self.spacing.tolist()), tuple(o.tolist()), tuple(d.ravel().tolist())

    # --- points ---------------------------------------------------------------------------------------
    def ras_to_ijk(self, points_ras: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) of RAS points, shape (N, 3)."""
        p = np.atleast_2d(np.asarray(points_ras, dtype=float))
        inv = np.linalg.inv(self.ijk_to_ras)
        return p @ inv[:3, :3].T + inv[:3, 3]

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        """RAS points of continuous (i, j, k) indices, shape (N, 3)."""
        p = np.atleast_2d(np.asarray(ijk, dtype=float))
        return p @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def index_to_ras(self, index_kji: np.ndarray) -> np.ndarray:
        """RAS centres of array indices given as (k, j, i) rows."""
        return self.ijk_to_ras_points(np.atleast_2d(np.asarray(index_kji))[:, ::-1])

    def ras_to_index(self, points_ras: np.ndarray, *, what: str = "point") -> np.ndarray:
        """Nearest array index (k, j, i) of each RAS point; a point outside the grid is an error."""
        ijk = self.ras_to_ijk(points_ras)
        index = np.rint(ijk[:, ::-1]).astype(np.int64)
        outside = np.any((index < 0) | (index >= np.asarray(self.shape)), axis=1)
        if outside.any():
            n = int(np.flatnonzero(outside)[0])
            ras = ", ".join(f"{v:.1f}" for v in np.atleast_2d(points_ras)[n])
            raise InputError(
                f"{what.capitalize()} {n + 1} at RAS ({ras}) mm lies outside the image "
                f"(voxel ({ijk[n, 0]:.1f}, {ijk[n, 1]:.1f}, {ijk[n, 2]:.1f}) of a "
                f"{self.size_ijk[0]}x{self.size_ijk[1]}x{self.size_ijk[2]} grid). "
                "Place it on the image or load the image it was placed on."
            )
        return index

    def contains(self, points_ras: np.ndarray) -> np.ndarray:
        """Whether each RAS point falls in a voxel of the grid."""
        index = np.rint(self.ras_to_ijk(points_ras)[:, ::-1])
        return np.all((index >= 0) & (index < np.asarray(self.shape)), axis=1)

    # --- comparison -----------------------------------------------------------------------------------
    def same_grid(self, other: Geometry, tol_mm: float = 1e-4) -> bool:
        """Same shape, and every voxel centre within ``tol_mm`` of the other's."""
        if self.shape != other.shape:
            return False
        # The largest corner displacement bounds the displacement of every voxel centre (affine maps).
        k, j, i = (np.asarray(self.shape) - 1).tolist()
        corners = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], dtype=float)
        return bool(np.abs(self.ijk_to_ras_points(corners) - other.ijk_to_ras_points(corners)).max() <= tol_mm)

    def describe(self) -> str:
        s = "x".join(f"{v:.3g}" for v in self.spacing)
        return f"{self.size_ijk[0]}x{self.size_ijk[1]}x{self.size_ijk[2]} voxels of {s} mm"

    def crop(self, start_kji: tuple[int, int, int], shape: tuple[int, int, int]) -> Geometry:
        """Geometry of the sub-array ``array[k0:k0+K, j0:j0+J, i0:i0+I]``."""
        m = self.ijk_to_ras.copy()
        m[:3, 3] = self.ijk_to_ras_points(np.asarray(start_kji, dtype=float)[::-1])[0]
        return Geometry(m, shape)
