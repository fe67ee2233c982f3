"""Six extreme-point clicks → a 3D segmentation (Roth et al., "Going to extremes", steps 1–2).

The pipeline, on (array, geometry) with points in RAS mm:

1. validate the clicks (exactly 6, inside the image, no two in one voxel, a non-zero extent on every axis)
   and pair them by geometry, whatever their order or labels: of the 15 ways to split six points into three
   pairs, the one whose three difference vectors span the largest volume (|det|) — long, mutually
   orthogonal pairs, which is what opposite extreme points are;
2. the box the six points span (the object's box) — everything beyond it grown by ``box_margin_mm`` is
   background by definition of extreme points; the paper's 20 mm padded box is the crop returned;
3. intensities scaled to [0, 1] by the 1st–99th percentiles of the padded box (so β means the same for SUV,
   HU and z-scores);
4. a geodesic path between each pair with cost ``1 + w·|∇I|/g_ref`` (a length term; the paper's cost is
   gradient magnitude alone, which goes around lesions), ends trimmed (clicks lie on the boundary);
5. foreground seeds = the trimmed paths dilated by an ellipsoid of radii ``fg_fraction × half-extent``
   per axis (half-extent = half the six points' box, in mm); background seeds = voxels farther than
   ``bg_fraction`` × half-extent (per axis) from the paths, plus everything outside the margin box. The
   paper's radii (2 and 30 voxels at 1 mm) were set for spleen and liver; a 2 cm PET lesion on a 5 mm
   grid needs radii that follow spacing and object size;
6. random walker (β = 130, paper) with Grady's prior model (γ = 0.1, P(fg | intensity) from histograms of
   the seeds: without it a thin cross of seeds under-segments wherever the edge is weak), solved matrix-free
   on the unseeded voxels only (:mod:`.random_walker`, compiled kernel when built), warm-started from the
   previous solution when a point moves (:class:`ExtremePointSegmenter`);
7. mask = P(foreground) > 0.5, pasted back on the full grid.

Measurements behind every default are in ``docs/extreme_points.md``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.draw import line_nd

from ...core.errors import InputError
from ...core.geometry import Geometry
from ...data.dataset import read_extreme_points
from ...files.image_io import Image
from ...scene.mrml_adapter import (
    image_of_node,
    points_of_node,
    points_tag_value,
    scene_change,
    set_segment_mask,
    stored_points,
)
from .geodesic import path_cost, shortest_path, subsampled_percentile
from .random_walker import BACKGROUND, FOREGROUND, UNKNOWN, random_walker

POINTS_TAG = "WeakAnnotate.ExtremePoints"
_PATH_FULL_RES_VOXELS = 60_000  # measured: MCP_Geometric ~1 µs per voxel it settles; bigger regions use step 2
_AXIS_NAMES = ("k (slice)", "j (row)", "i (column)")


@dataclass(frozen=True)
class ExtremePointParams:
    """Parameters; the paper's value is kept where it worked (see the module docstring and the docs)."""

    padding_mm: float = 20.0  # paper: box + 20 mm
    beta: float = 130.0  # paper
    tol: float = 1e-3  # CG relative residual (scikit-image's default)
    gradient_weight: float = 1.0  # path cost = 1 + w·|∇I|/g_ref (paper: |∇I| alone)
    gradient_sigma_mm: float = 1.0  # smoothing before the gradient, so noise does not steer the path
    trim_fraction: float = 0.2  # this fraction of each path's length at both ends is no seed
    fg_fraction: float = 0.15  # fg = paths dilated by this × half-extent per axis (paper: r = 2 voxels)
    bg_fraction: float = 0.8  # bg = farther than this × half-extent per axis from the paths (paper: r = 30)
    box_margin_mm: float = 3.0  # background beyond the six points' box grown by this (≥ 1 voxel)
    prior_weight: float = 0.1  # γ of Grady's prior model (intensity likelihood from the seeds); 0 = paper
    prior_bins: int = 32  # histogram bins on the [0, 1]-scaled intensities
    refine_passes: int = 0  # GrabCut-like passes: re-estimate the intensity model from the last result, re-solve
    fill_holes: bool = False  # fill enclosed holes of the mask (necrotic cores)


@dataclass
class ExtremePointResult:
    """Mask on the full grid, probability on the padded box, and what happened."""

    mask: np.ndarray  # bool, full grid
    probability: np.ndarray  # float32, the padded box
    box_start: tuple[int, int, int]  # (k, j, i) of the box's first voxel
    pairs: list[tuple[int, int]]  # indices into the input points, ordered by array axis k, j, i
    paths: list[np.ndarray]  # (N, 3) full-grid indices of each pair's geodesic path
    seeds: np.ndarray  # int8 on the padded box: 0 unknown, 1 foreground, 2 background
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def full_probability(self, shape: tuple[int, int, int]) -> np.ndarray:
        """Foreground probability on the full grid (0 outside the padded box)."""
        out = np.zeros(shape, np.float32)
        out[self.box_slices] = self.probability
        return out

    @property
    def box_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.box_start, self.probability.shape, strict=True))


# --- points -------------------------------------------------------------------------------------------


def _all_pairings(n: int = 6) -> list[list[tuple[int, int]]]:
    def rec(items: list[int]) -> list[list[tuple[int, int]]]:
        if not items:
            return [[]]
        first, rest = items[0], items[1:]
        out = []
        for m in range(len(rest)):
            pair = (first, rest[m])
            for tail in rec(rest[:m] + rest[m + 1 :]):
                out.append([pair, *tail])
        return out

    return rec(list(range(n)))


_PAIRINGS = _all_pairings()


def pair_points(
    points_mm: np.ndarray, spacing_kji: np.ndarray | None = None
) -> tuple[list[tuple[int, int]], list[int]]:
    """Split 6 points into 3 opposite pairs by geometry, and give the array axis each pair runs along.

    ``points_mm``: (6, 3) positions in any Cartesian mm frame (RAS, or array indices × spacing). The pairing
    maximises |det| of the three difference vectors; its value does not depend on the frame or the order.
    Returns the pairs ordered by array axis (k, j, i) and that axis for each. The axis assignment uses
    ``spacing_kji`` with ``points_mm`` given as array indices when not None.
    """
    p = np.asarray(points_mm, dtype=float)
    if p.shape != (6, 3):
        raise InputError(f"Exactly 6 extreme points are needed, got {len(p)}.")
    frame = p * (np.asarray(spacing_kji, float) if spacing_kji is not None else 1.0)
    best, best_det = None, -1.0
    for pairing in _PAIRINGS:
        vectors = np.array([frame[b] - frame[a] for a, b in pairing])
        det = abs(float(np.linalg.det(vectors)))
        if det > best_det * (1 + 1e-9):
            best, best_det = pairing, det
    assert best is not None
    vectors = np.array([frame[b] - frame[a] for a, b in best])
    lengths = np.linalg.norm(vectors, axis=1)
    if best_det <= 1e-6 * float(np.prod(np.maximum(lengths, 1e-12))):
        raise InputError(
            "The six points lie in one plane (or on one line); extreme points must span the object in all "
            "three directions: one click at each end along each axis."
        )
    direction = np.abs(vectors) / np.maximum(lengths[:, None], 1e-12)
    best_perm, best_score = (0, 1, 2), -1.0
    for perm in itertools.permutations(range(3)):  # perm[n] = axis of pair n
        score = sum(direction[n, perm[n]] for n in range(3))
        if score > best_score:
            best_perm, best_score = perm, score
    order = sorted(range(3), key=lambda n: best_perm[n])
    pairs = []
    for n in order:
        a, b = best[n]
        axis = best_perm[n]
        # Low end first along the pair's axis.
        pairs.append((a, b) if frame[a, axis] <= frame[b, axis] else (b, a))
    return pairs, [best_perm[n] for n in order]


def validate_points(points_ras: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Array indices (6, 3) of six clicks, or an :class:`InputError` naming what is wrong with them."""
    pts = np.asarray(points_ras, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"Points must be an (N, 3) array of RAS coordinates, got shape {pts.shape}.")
    if len(pts) != 6:
        raise InputError(
            f"Exactly 6 extreme points are needed (one at each end of the object along each axis), got {len(pts)}."
        )
    if not np.all(np.isfinite(pts)):
        raise InputError("Some extreme points have no position (NaN or infinite coordinates); place all six.")
    if len(geometry.shape) != 3 or min(geometry.shape) < 2:
        raise InputError(f"A 3D image is needed, got a grid of {geometry.describe()}.")
    index = geometry.ras_to_index(pts, what="extreme point")
    for a, b in itertools.combinations(range(6), 2):
        if np.array_equal(index[a], index[b]):
            raise InputError(
                f"Extreme points {a + 1} and {b + 1} fall in the same voxel (k, j, i) = {tuple(index[a].tolist())}; "
                "each click must mark a different end of the object."
            )
    extent = index.max(axis=0) - index.min(axis=0)
    for axis in range(3):
        if extent[axis] == 0:
            raise InputError(
                f"The six extreme points have zero extent along array axis {_AXIS_NAMES[axis]}: all lie in "
                f"slice {int(index[0, axis])}. Click the object's two ends along that axis too."
            )
    return index


# --- seeds --------------------------------------------------------------------------------------------


def _ellipsoid_offsets(radii_vox: np.ndarray) -> np.ndarray:
    r = np.floor(np.maximum(radii_vox, 0)).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in r], indexing="ij"), axis=-1).reshape(-1, 3)
    safe = np.maximum(radii_vox, 1e-9)
    inside = ((grid / safe) ** 2).sum(axis=1) <= 1.0 + 1e-9
    return grid[inside | np.all(grid == 0, axis=1)]


def _stamp(shape: tuple[int, ...], centres: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, bool)
    if len(centres) == 0:
        return out
    idx = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    keep = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    out[tuple(idx[keep].T)] = True
    return out


def _trim(path: np.ndarray, spacing: np.ndarray, fraction: float) -> np.ndarray:
    """The path without ``fraction`` of its length at each end (always without the two clicked voxels)."""
    if len(path) <= 2:
        return path[1:-1]
    steps = np.linalg.norm(np.diff(path, axis=0) * spacing, axis=1)
    s = np.concatenate([[0.0], np.cumsum(steps)])
    length = s[-1]
    keep = (s > fraction * length) & (s < (1 - fraction) * length)
    keep[0] = keep[-1] = False
    trimmed = path[keep]
    if len(trimmed) == 0:
        trimmed = path[[len(path) // 2]]  # a very short path: its middle voxel
    return trimmed


# --- the pipeline -------------------------------------------------------------------------------------


def _pair_path(cost: np.ndarray, a: np.ndarray, b: np.ndarray, spacing: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Geodesic path between two clicks, searched in their box grown by half the object's half-extent.

    A path that strays further than that from the straight line is not inside the object anyway, and the
    smaller search region makes Dijkstra 3–4× faster on a tumour's box. On search regions above
    ``_PATH_FULL_RES_VOXELS`` the path is found on every second voxel and its steps filled in with lines.
    """
    grow = np.maximum(np.ceil(0.5 * half / spacing).astype(int), 2)
    lo = np.maximum(np.minimum(a, b) - grow, 0)
    hi = np.minimum(np.maximum(a, b) + grow, np.asarray(cost.shape) - 1)
    sub = cost[tuple(slice(int(x), int(y) + 1) for x, y in zip(lo, hi, strict=True))]
    step = 2 if sub.size > _PATH_FULL_RES_VOXELS else 1
    if step == 1:
        return shortest_path(sub, tuple(a - lo), tuple(b - lo), spacing) + lo
    coarse = sub[::step, ::step, ::step]
    ca = np.minimum((a - lo) // step, np.asarray(coarse.shape) - 1)
    cb = np.minimum((b - lo) // step, np.asarray(coarse.shape) - 1)
    nodes = shortest_path(coarse, tuple(ca), tuple(cb), spacing * step) * step + lo
    nodes[0], nodes[-1] = a, b
    pieces = [np.stack(line_nd(p, q, endpoint=False), axis=1) for p, q in zip(nodes[:-1], nodes[1:], strict=True)]
    return np.concatenate([*pieces, b[None]]).astype(np.int64)


def normalise_intensities(box_image: np.ndarray, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale to [0, 1] by the 1st and 99th percentiles (clipped), so that β means the same on any modality."""
    lo, hi = intensity_range if intensity_range is not None else _percentile_range(box_image)
    if hi <= lo:
        hi = lo + 1.0
    out = (np.asarray(box_image, np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def _percentile_range(box_image: np.ndarray) -> tuple[float, float]:
    lo, hi = subsampled_percentile(box_image, [1.0, 99.0])
    return float(lo), float(hi)


def intensity_prior(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: int = 32) -> tuple[np.ndarray, float]:
    """P(foreground | intensity) from smoothed histograms of the foreground- and background-sample intensities.

    Grady's prior model needs a density per label; histograms of the seeds' [0, 1]-scaled intensities,
    smoothed by one bin and floored, are cheap and make no assumption about their shape (PET lesions with
    a cold core, heterogeneous tumours). Both classes get equal weight (the seeds' counts are no class prior).
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    densities = []
    for sample in (image[fg], image[bg]):
        h, _ = np.histogram(sample, bins=edges)
        h = ndimage.gaussian_filter1d(h.astype(float), 1.0, mode="nearest")
        h = h / max(h.sum(), 1e-12) + 1e-3 / bins
        densities.append(h / h.sum())
    pf, pb = densities
    posterior = (pf / (pf + pb)).astype(np.float32)
    idx = np.clip((image * bins).astype(np.int32), 0, bins - 1)
    overlap = float(np.sqrt(pf * pb).sum())  # Bhattacharyya coefficient: 0 separable, 1 identical
    return posterior[idx], overlap


class ExtremePointSegmenter:
    """Keeps the image and the last solution, so that moving one click re-solves from where it was.

    ``segment(points)`` computes from scratch; ``update(points)`` does the same but starts the random walker
    from the previous probability (mapped onto the new box), which cuts the iterations when a point moves.
    """

    def __init__(self, array: np.ndarray, geometry: Geometry, params: ExtremePointParams | None = None) -> None:
        array = np.asarray(array)
        if array.ndim != 3 or min(array.shape) < 2:
            raise InputError(f"Extreme points need a 3D image, got an array of shape {array.shape}.")
        if array.shape != geometry.shape:
            raise InputError(f"Image {array.shape} does not match its geometry {geometry.shape}.")
        self.array = array
        self.geometry = geometry
        self.params = params or ExtremePointParams()
        self.last: ExtremePointResult | None = None
        self._range: tuple[float, float] | None = None
        self._paths: dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray] = {}
        self._cost: tuple[tuple[int, ...], np.ndarray] | None = None  # path cost of the last work region

    # -- public --
    def segment(self, points_ras: np.ndarray) -> ExtremePointResult:
        self._range, self._paths, self._cost = None, {}, None
        self.last = self._run(points_ras, warm=None)
        return self.last

    def update(self, points_ras: np.ndarray) -> ExtremePointResult:
        """Re-segment after clicks moved: keeps the intensity scaling and the paths between unmoved clicks."""
        self.last = self._run(points_ras, warm=self.last)
        return self.last

    # -- internals --
    def _run(self, points_ras: np.ndarray, warm: ExtremePointResult | None) -> ExtremePointResult:
        p = self.params
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        geometry, shape = self.geometry, np.asarray(self.geometry.shape)
        spacing = geometry.array_spacing
        index = validate_points(points_ras, geometry)
        pairs, axes = pair_points(index.astype(float), spacing)

        lo, hi = index.min(axis=0), index.max(axis=0)
        pad = np.ceil(p.padding_mm / spacing).astype(int)
        b0, b1 = np.maximum(lo - pad, 0), np.minimum(hi + pad, shape - 1)
        margin = np.maximum(np.ceil(p.box_margin_mm / spacing).astype(int), 1)
        # Work region: the points' box + margin + one layer of background, inside the padded box.
        w0 = np.maximum(lo - margin - 1, b0)
        w1 = np.minimum(hi + margin + 1, b1)
        box = tuple(slice(int(a), int(b) + 1) for a, b in zip(b0, b1, strict=True))
        work = tuple(slice(int(a - o), int(b - o) + 1) for a, b, o in zip(w0, w1, b0, strict=True))
        if self._range is None:
            self._range = _percentile_range(self.array[box])
        image = normalise_intensities(self.array[box], self._range)
        timings["normalise"] = time.perf_counter() - t0

        t = time.perf_counter()
        wimage = image[work]
        # The cost depends only on the work region (the intensity range is kept across updates): reused when a
        # click moved without changing the region, and computed only if some path has to be searched.
        cost_key = (*b0.tolist(), *w0.tolist(), *w1.tolist())
        cost = self._cost[1] if self._cost is not None and self._cost[0] == cost_key else None
        local = index - w0
        half = np.maximum((hi - lo) * spacing / 2.0, spacing)  # object half-extent in mm, per axis
        paths_local, reused = [], 0
        for a, b in pairs:
            key = (tuple(index[a].tolist()), tuple(index[b].tolist()))
            cached = self._paths.get(key) if warm is not None else None
            if cached is not None and np.all(cached >= w0) and np.all(cached <= w1):
                paths_local.append(cached - w0)
                reused += 1
            else:
                if cost is None:
                    cost = path_cost(wimage, spacing, gradient_weight=p.gradient_weight, sigma_mm=p.gradient_sigma_mm)
                    self._cost = (cost_key, cost)
                paths_local.append(_pair_path(cost, local[a], local[b], spacing, half))
        self._paths = {
            (tuple(index[a].tolist()), tuple(index[b].tolist())): q + w0
            for (a, b), q in zip(pairs, paths_local, strict=True)
        }
        timings["paths"] = time.perf_counter() - t

        t = time.perf_counter()
        wshape = wimage.shape
        all_path = np.concatenate(paths_local)
        trimmed = np.concatenate([_trim(q, spacing, p.trim_fraction) for q in paths_local])
        fg_radii_mm = p.fg_fraction * half
        fg = _stamp(wshape, trimmed, _ellipsoid_offsets(fg_radii_mm / spacing))
        not_path = np.ones(wshape, bool)
        not_path[tuple(all_path.T)] = False
        dist = ndimage.distance_transform_edt(not_path, sampling=spacing / half)
        bg = dist > p.bg_fraction
        inside = np.zeros(wshape, bool)
        # Clipped at 0: near the image's edge lo − margin is negative, and a negative start would wrap around
        # (before this fix, organs cut by the field of view got background seeds over nearly the whole box).
        in0, in1 = np.maximum(lo - margin - w0, 0), hi + margin - w0
        inside[tuple(slice(int(a), int(b) + 1) for a, b in zip(in0, in1, strict=True))] = True
        bg |= ~inside
        bg &= ~fg
        seeds = np.full(image.shape, BACKGROUND, np.int8)
        wseeds = np.where(fg, FOREGROUND, np.where(bg, BACKGROUND, UNKNOWN)).astype(np.int8)
        seeds[work] = wseeds
        timings["seeds"] = time.perf_counter() - t

        t = time.perf_counter()
        x0 = None
        if warm is not None:
            x0 = self._map_previous(warm, b0, image.shape)
        std = float(np.std(image, dtype=np.float64))  # over the padded box, as scikit-image on that box
        prior, overlap = None, float("nan")
        if p.prior_weight > 0:
            prior, overlap = intensity_prior(wimage, fg, bg, p.prior_bins)
        rw = random_walker(
            wimage,
            wseeds,
            beta=p.beta,
            tol=p.tol,
            x0=None if x0 is None else x0[work],
            intensity_std=std,
            prior=prior,
            prior_weight=p.prior_weight,
        )
        iterations = rw.iterations
        for _ in range(p.refine_passes):
            # GrabCut-like: the intensity model from the last result (inside the margin box), same seeds.
            current = rw.probability > 0.5
            prior, overlap = intensity_prior(wimage, current, inside & ~current, p.prior_bins)
            rw = random_walker(
                wimage,
                wseeds,
                beta=p.beta,
                tol=p.tol,
                x0=rw.probability,
                intensity_std=std,
                prior=prior,
                prior_weight=max(p.prior_weight, 1e-6),
            )
            iterations += rw.iterations
        probability = np.zeros(image.shape, np.float32)
        probability[work] = rw.probability
        timings["random_walker"] = time.perf_counter() - t

        mask = np.zeros(self.geometry.shape, bool)
        box_mask = probability > 0.5
        if p.fill_holes:
            box_mask = ndimage.binary_fill_holes(box_mask)
        mask[box] = box_mask
        timings["total"] = time.perf_counter() - t0
        paths = [q + w0 for q in paths_local]
        diagnostics = {
            "timings_s": timings,
            "box_shape": tuple(int(n) for n in image.shape),
            "solve_shape": rw.solve_shape,
            "foreground_seeds": int(fg.sum()),
            "background_seeds": int((seeds == BACKGROUND).sum()),
            "unknowns": rw.unknowns,
            "iterations": iterations,
            "backend": rw.backend,
            "prior_overlap": overlap,
            "converged": rw.converged,
            "relative_residual": rw.relative_residual,
            "warm_start": x0 is not None,
            "paths_reused": reused,
            "intensity_range": self._range,
            "pair_axes": axes,
            "intensity_std": std,
            "params": asdict(p),
        }
        return ExtremePointResult(mask, probability, tuple(int(v) for v in b0), pairs, paths, seeds, diagnostics)

    @staticmethod
    def _map_previous(prev: ExtremePointResult, start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The previous probability on the new box (0.5 where the old box did not reach)."""
        x0 = np.full(shape, 0.5, np.float32)
        p0 = np.asarray(prev.box_start)
        lo = np.maximum(p0, start)
        hi = np.minimum(p0 + np.asarray(prev.probability.shape), start + np.asarray(shape))
        if np.all(hi > lo):
            dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))
            src = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, p0, strict=True))
            x0[dst] = prev.probability[src]
        return x0


def segment_extreme_points(
    array: np.ndarray, geometry: Geometry, points_ras: np.ndarray, params: ExtremePointParams | None = None
) -> ExtremePointResult:
    """One-shot segmentation from six extreme points (RAS mm) on an image (array [k, j, i] + geometry)."""
    return ExtremePointSegmenter(array, geometry, params).segment(points_ras)


def label_case(image: Image, annotation_path: str | Path, params: ExtremePointParams | None = None) -> np.ndarray:
    """The pseudo-label of one dataset case: its six clicks (a ``.mrk.json``) → a 0/1 mask on the image grid."""
    points = read_extreme_points(annotation_path, image.geometry)
    return segment_extreme_points(image.array, image.geometry, points, params).mask


def scribble_inside_fraction(result: ExtremePointResult, reference: np.ndarray) -> dict[str, float]:
    """Fraction of path voxels and of foreground-seed voxels that lie inside a reference mask."""
    ref = np.asarray(reference, bool)
    path = np.concatenate(result.paths)
    fg_local = np.argwhere(result.seeds == FOREGROUND) + np.asarray(result.box_start)
    bg_local = np.argwhere(result.seeds == BACKGROUND) + np.asarray(result.box_start)
    return {
        "path_inside": float(ref[tuple(path.T)].mean()),
        "fg_seeds_inside": float(ref[tuple(fg_local.T)].mean()) if len(fg_local) else float("nan"),
        "bg_seeds_outside": float(1.0 - ref[tuple(bg_local.T)].mean()) if len(bg_local) else float("nan"),
    }


# --- nodes (Slicer panel, web app) --------------------------------------------------------------------


def stored_extreme_points(segmentation_node: Any, segment_id: str) -> np.ndarray | None:
    """The RAS clicks a segment was made from (its ``WeakAnnotate.ExtremePoints`` tag), or None."""

    return stored_points(segmentation_node, segment_id, POINTS_TAG)


def segment_from_nodes(
    rt: Any,
    volume_node: Any,
    points_node: Any,
    segmentation_node: Any,
    segment_name: str,
    color: Sequence[float] | None = None,
    params: ExtremePointParams | None = None,
) -> tuple[str, ExtremePointResult]:
    """Segment from a volume node and a point list node into ``segment_name`` of ``segmentation_node``.

    Everything is computed before the scene is touched, so an error leaves the scene as it was. The points
    are stored on the segment as tag ``WeakAnnotate.ExtremePoints`` (see :func:`~.mrml_adapter.points_tag_value`).
    """

    image = image_of_node(volume_node)
    points, _labels = points_of_node(points_node)
    result = segment_extreme_points(image.array, image.geometry, points, params)
    with scene_change(rt.scene):
        segmentation = segmentation_node.GetSegmentation()
        existed = bool(segmentation.GetSegmentIdBySegmentName(segment_name))
        segment_id = set_segment_mask(rt, segmentation_node, result.mask, image.geometry, segment_name, color)
        try:
            segmentation.GetSegment(segment_id).SetTag(
                POINTS_TAG, points_tag_value(points, pairs=[list(map(int, pr)) for pr in result.pairs])
            )
        except Exception:
            if not existed:
                segmentation.RemoveSegment(segment_id)
            raise
    return segment_id, result
