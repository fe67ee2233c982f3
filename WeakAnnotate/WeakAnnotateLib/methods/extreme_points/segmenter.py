"""Six extreme-point clicks → a 3D segmentation (Roth et al., "Going to extremes", steps 1–2, made robust).

The pipeline, on (array, geometry) with points in RAS mm:

1. validate the clicks (exactly 6, inside the image, no two in one voxel, a non-zero extent on every axis)
   and pair them by geometry, whatever their order or labels: of the 15 ways to split six points into three
   pairs, the one whose three difference vectors span the largest volume (|det|) — long, mutually
   orthogonal pairs, which is what opposite extreme points are;
2. the box the six points span (the object's box) — everything beyond it grown by ``box_margin_mm`` is
   background by definition of extreme points, and the only background seed; the paper's 20 mm padded box is
   the crop returned;
3. intensities scaled to [0, 1] by the 1st–99th percentiles of the padded box;
4. a scribble between each pair: the geodesic path (cost ``1 + w·|∇I|/g_ref``; the paper's cost is gradient
   magnitude alone, which goes around lesions) or the straight segment, whichever looks less like the known
   background (the padded box beyond the margin): on low-resolution PET the lesion is all edge, and the
   path runs through the flat background beside it; ends trimmed (clicks lie on the boundary);
5. foreground seeds = the trimmed scribbles dilated by an ellipsoid of radii ``fg_fraction × half-extent``;
6. random walker with edge weights relative to the region's own contrast (``edge_contrast``) and Grady's
   prior model from two priors: the seeds' intensity histograms (γ = ``prior_weight``) and the seeds'
   geodesic competition — the distance Grow from seeds grows by (γ = ``geodesic_weight``); solved
   matrix-free on the unseeded voxels only (:mod:`.random_walker`, compiled kernel when built),
   warm-started from the previous solution when a point moves (:class:`ExtremePointSegmenter`);
7. mask = P(foreground) > 0.5, pasted back on the full grid.

Measurements behind every default are in ``docs/extreme_points.md``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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
from .band import dilate, ellipsoid_offsets, erode, stamp
from .geodesic import geodesic_distance, path_cost, shortest_path
from .random_walker import BACKGROUND, FOREGROUND, UNKNOWN, random_walker, solve_unknowns
from .terms import (
    background_typicality,
    contrast_std,
    geodesic_prior,
    intensity_prior,
    normalise_intensities,
    percentile_range,
)

POINTS_TAG = "WeakAnnotate.ExtremePoints"
_PATH_FULL_RES_VOXELS = 60_000  # measured: MCP_Geometric ~1 µs per voxel it settles; bigger regions use step 2
_AXIS_NAMES = ("k (slice)", "j (row)", "i (column)")


@dataclass(frozen=True)
class ExtremePointParams:
    """Parameters; the paper's value is kept where it worked (see the module docstring and the docs)."""

    padding_mm: float = 20.0  # paper: box + 20 mm (the crop returned)
    beta: float = 130.0  # paper; used as such only with edge_contrast = 0
    edge_contrast: float = 1.0  # weights exp(−c·ΔI²/⟨ΔI²⟩) of the work region; 0 = the paper's β/(10·std)
    tol: float = 1e-3  # CG relative residual (scikit-image's default)
    gradient_weight: float = 1.0  # path cost = 1 + w·|∇I|/g_ref (paper: |∇I| alone)
    gradient_sigma_mm: float = 1.0  # smoothing before the gradient, so noise does not steer the path
    choose_scribbles: bool = True  # per pair, the path or the straight segment, the one less like the background
    trim_fraction: float = 0.2  # this fraction of each scribble's length at both ends is no seed
    fg_fraction: float = 0.15  # fg = scribbles dilated by this × half-extent per axis (paper: r = 2 voxels)
    bg_fraction: float = 0.0  # > 0: also bg farther than this × half-extent from the paths (the paper's r = 30)
    box_margin_mm: float = 3.0  # background beyond the six points' box grown by this (≥ 1 voxel)
    prior_weight: float = 0.1  # γ of the intensity prior (histograms of the seeds); 0 = paper
    geodesic_weight: float = 0.2  # γ of the geodesic prior (the seeds' geodesic competition); 0 = off
    geodesic_length: float = 1.0  # length term of the geodesic distance (1 = a mean-gradient step per mm)
    prior_bins: int = 32  # histogram bins on the [0, 1]-scaled intensities
    fill_holes: bool = False  # fill enclosed holes of the mask (tried: no change)
    fg_geodesic: float = 0.0  # > 0: fg seeds only within this × the ellipsoid's largest radius, geodesically
    prior_by_overlap: bool = False  # γ of the histograms × max(1, (1 − overlap) / overlap) (tried; docs' ablation)
    prior_combination: str = "mean"  # "mean" (γ-weighted) or "product" (logits added; tried, docs' ablation)
    prior_clip: float = 0.01  # "product": each term clipped to [this, 1 − this] first
    large_voxels: int = 2_000_000  # above this (work region / unknowns): organ scale, coarse-to-fine (docs)


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


def _pair_path(
    cost: np.ndarray, a: np.ndarray, b: np.ndarray, spacing: np.ndarray, half: np.ndarray, large: bool = False
) -> np.ndarray:
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
    if large:  # an organ's box: about as many voxels as a tumour's search (brain box, three paths at step 2: 0.26 s)
        step = max(step, int(np.ceil((sub.size / _PATH_FULL_RES_VOXELS) ** (1 / 3))))
    if step == 1:
        return shortest_path(sub, tuple(a - lo), tuple(b - lo), spacing) + lo
    coarse = sub[::step, ::step, ::step]
    ca = np.minimum((a - lo) // step, np.asarray(coarse.shape) - 1)
    cb = np.minimum((b - lo) // step, np.asarray(coarse.shape) - 1)
    nodes = shortest_path(coarse, tuple(ca), tuple(cb), spacing * step) * step + lo
    nodes[0], nodes[-1] = a, b
    pieces = [np.stack(line_nd(p, q, endpoint=False), axis=1) for p, q in zip(nodes[:-1], nodes[1:], strict=True)]
    return np.concatenate([*pieces, b[None]]).astype(np.int64)


def choose_scribble(
    path: np.ndarray, line: np.ndarray, typicality: np.ndarray, spacing: np.ndarray, trim: float
) -> tuple[np.ndarray, str]:
    """The geodesic path or the straight segment between two clicks: the one whose trimmed voxels look less like
    the known background (lower mean :func:`~.terms.background_typicality`); the path on a tie.

    Why: on PET (4–5 mm voxels, lesions 5–15 voxels across) the lesion is all edge, and the minimal-gradient
    path runs through the flat background beside it (STS_004/006/007/013/021/030: path voxels 0 % inside);
    the straight segment stays inside there, while along curved organs (kidney, spinal cord) the path is the
    one inside. The background beyond the margin box is the only sample known to be outside the object.
    """
    score_path = float(typicality[tuple(_trim(path, spacing, trim).T)].mean())
    score_line = float(typicality[tuple(_trim(line, spacing, trim).T)].mean())
    return (line, "line") if score_line < score_path else (path, "path")


def _combined_prior(
    image: np.ndarray, spacing: np.ndarray, fg: np.ndarray, bg: np.ndarray, p: ExtremePointParams, factor: int = 1
) -> tuple[np.ndarray | None, float, float, np.ndarray | None]:
    """Grady's prior term from the intensity histograms and the geodesic competition of the seeds, weighted by
    their γ: (prior, histogram overlap, total γ, the geodesic prior alone)."""
    prior, overlap, gamma, geo = None, float("nan"), 0.0, None
    parts = []
    if p.prior_weight > 0:
        hist, overlap = intensity_prior(image, fg, bg, p.prior_bins)
        w = p.prior_weight
        if p.prior_by_overlap:
            w = w * max(1.0, (1.0 - overlap) / max(overlap, 1e-3))
        parts.append((w, hist))
    if p.geodesic_weight > 0:
        geo = geodesic_prior(image, spacing, fg, bg, p.geodesic_length, factor)
        parts.append((p.geodesic_weight, geo))
    if parts:
        gamma = float(sum(w for w, _ in parts))
        if len(parts) == 1:
            prior = parts[0][1]
        elif p.prior_combination == "product":
            # Naive Bayes: the logits add, so a confident term outvotes an undecided one (tried; docs' ablation).
            eps = np.float32(p.prior_clip)
            logit = sum(np.log(np.clip(q, eps, 1 - eps) / np.clip(1 - q, eps, 1 - eps)) for _, q in parts)
            prior = 1.0 / (1.0 + np.exp(-logit))
        else:
            prior = sum(w * q for w, q in parts) / np.float32(gamma)
        prior = np.asarray(prior, np.float32)
    return prior, overlap, gamma, geo


# Half-width of the fine level's band in coarse voxels (±4 fine voxels); a trial with 1 lost Dice on the brain box.
_BAND = 2


def _halve(a: np.ndarray) -> np.ndarray:
    """2×2×2 block means (a last odd plane is its own block), by pairwise sums along each axis."""
    for axis in range(3):
        n = a.shape[axis]
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, n - 1, 2), slice(1, n, 2)
        pair = (a[tuple(even)] + a[tuple(odd)]) * np.float32(0.5)
        if n % 2:
            last = [slice(None)] * 3
            last[axis] = slice(n - 1, n)
            pair = np.concatenate([pair, a[tuple(last)]], axis=axis)
        a = pair
    return a


def _double(coarse: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The fine-grid values on ``box`` of an array on the 2× coarser grid (each coarse voxel → its 2×2×2 block)."""
    c0 = [s.start // 2 for s in box]
    c1 = [(s.stop - 1) // 2 + 1 for s in box]
    sub = coarse[tuple(slice(a, b) for a, b in zip(c0, c1, strict=True))]
    k, j, i = sub.shape  # one copy (three repeats made three)
    up = np.broadcast_to(sub[:, None, :, None, :, None], (k, 2, j, 2, i, 2)).reshape(2 * k, 2 * j, 2 * i)
    off = [s.start - 2 * a for s, a in zip(box, c0, strict=True)]
    return up[tuple(slice(o, o + s.stop - s.start) for o, s in zip(off, box, strict=True))]


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
        self._coarse: ExtremePointSegmenter | None = None  # the same image pooled 2×, for an organ's box
        self._geodesic: tuple[np.ndarray, np.ndarray] | None = None  # (work start, geodesic prior) of the last run

    # -- public --
    def segment(self, points_ras: np.ndarray) -> ExtremePointResult:
        self._range, self._paths, self._cost = None, {}, None
        if self._coarse is not None:
            self._coarse.last = None
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
            self._range = percentile_range(self.array[box])
        if int(np.prod(w1 - w0 + 1)) > p.large_voxels:
            try:
                return self._run_coarse_to_fine(points_ras, warm, pairs, axes, lo, hi, margin, b0, box, t0)
            except InputError:
                pass  # two clicks in one voxel of the coarse grid: the full resolution can still tell them apart
        image = normalise_intensities(self.array[box], self._range)
        # Inside the margin box (padded-box coordinates). Clipped at 0: near the image's edge lo − margin is
        # negative, and a negative start would wrap around (organs cut by the field of view once got background
        # seeds over nearly the whole box).
        in0, in1 = np.maximum(lo - margin - b0, 0), hi + margin - b0
        inside_box = np.zeros(image.shape, bool)
        inside_box[tuple(slice(int(a), int(b) + 1) for a, b in zip(in0, in1, strict=True))] = True
        timings["normalise"] = time.perf_counter() - t0

        t = time.perf_counter()
        wimage = image[work]
        large = wimage.size > p.large_voxels
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
                paths_local.append(_pair_path(cost, local[a], local[b], spacing, half, large))
        self._paths = {
            (tuple(index[a].tolist()), tuple(index[b].tolist())): q + w0
            for (a, b), q in zip(pairs, paths_local, strict=True)
        }
        scribbles, kinds = list(paths_local), ["path"] * 3
        if p.choose_scribbles:
            typicality = background_typicality(image, ~inside_box)[work]
            for n, (a, b) in enumerate(pairs):
                line = np.stack(line_nd(local[a], local[b], endpoint=True), axis=1).astype(np.int64)
                scribbles[n], kinds[n] = choose_scribble(paths_local[n], line, typicality, spacing, p.trim_fraction)
        timings["paths"] = time.perf_counter() - t

        t = time.perf_counter()
        wshape = wimage.shape
        trimmed = np.concatenate([_trim(q, spacing, p.trim_fraction) for q in scribbles])
        fg = stamp(wshape, trimmed, ellipsoid_offsets(p.fg_fraction * half / spacing))
        if p.fg_geodesic > 0:  # keep the part of the seeds' ellipsoids that no edge separates from the scribbles
            sources = np.zeros(wshape, bool)
            sources[tuple(trimmed.T)] = True
            d = geodesic_distance(wimage, spacing, sources, length_weight=p.geodesic_length)
            fg &= d <= p.fg_geodesic * float(np.max(p.fg_fraction * half))
        bg = ~inside_box[work]
        if p.bg_fraction > 0:  # the paper's "outside a dilation of the scribbles" (dropped: see the docs)
            not_path = np.ones(wshape, bool)
            not_path[tuple(np.concatenate(scribbles).T)] = False
            far = ndimage.distance_transform_edt(not_path, sampling=spacing / half) > p.bg_fraction
            bg |= far
        bg &= ~fg
        seeds = np.full(image.shape, BACKGROUND, np.int8)
        wseeds = np.where(fg, FOREGROUND, np.where(bg, BACKGROUND, UNKNOWN)).astype(np.int8)
        seeds[work] = wseeds
        timings["seeds"] = time.perf_counter() - t

        t = time.perf_counter()
        x0 = None
        if warm is not None:
            x0 = self._map_previous(warm, b0, image.shape)
        if p.edge_contrast > 0:
            std = contrast_std(wimage, p.edge_contrast, p.beta)
        else:
            std = float(np.std(image, dtype=np.float64))  # over the padded box, as scikit-image on that box
        prior, overlap, gamma, geo = _combined_prior(wimage, spacing, fg, bg, p, 2 if large else 1)
        self._geodesic = None if geo is None else (w0, geo)
        timings["priors"] = time.perf_counter() - t
        t = time.perf_counter()
        rw = random_walker(
            wimage,
            wseeds,
            beta=p.beta,
            tol=p.tol,
            x0=None if x0 is None else x0[work],
            intensity_std=std,
            prior=prior,
            prior_weight=gamma,
            band_above=p.large_voxels,
        )
        probability = np.zeros(image.shape, np.float32)
        probability[work] = rw.probability
        timings["random_walker"] = time.perf_counter() - t

        mask = np.zeros(self.geometry.shape, bool)
        box_mask = probability > 0.5
        if p.fill_holes:
            box_mask = ndimage.binary_fill_holes(box_mask)
        mask[box] = box_mask
        timings["total"] = time.perf_counter() - t0
        diagnostics = {
            "timings_s": timings,
            "box_shape": tuple(int(n) for n in image.shape),
            "solve_shape": rw.solve_shape,
            "foreground_seeds": int(fg.sum()),
            "background_seeds": int((seeds == BACKGROUND).sum()),
            "unknowns": rw.unknowns,
            "iterations": rw.iterations,
            "backend": rw.backend,
            "prior_overlap": overlap,
            "converged": rw.converged,
            "relative_residual": rw.relative_residual,
            "warm_start": x0 is not None,
            "paths_reused": reused,
            "scribbles": kinds,
            "intensity_range": self._range,
            "pair_axes": axes,
            "intensity_std": std,
            "params": asdict(p),
        }
        paths = [q + w0 for q in scribbles]
        return ExtremePointResult(mask, probability, tuple(int(v) for v in b0), pairs, paths, seeds, diagnostics)

    def _coarse_segmenter(self) -> ExtremePointSegmenter:
        """The same pipeline on the image pooled 2×2×2 (means), on the grid whose voxel centres are the blocks'."""
        if self._coarse is None:
            f = 2
            pooled = _halve(np.asarray(self.array, np.float32))
            m = self.geometry.ijk_to_ras.copy()
            m[:3, 3] = self.geometry.ijk_to_ras_points(np.full((1, 3), (f - 1) / 2.0))[0]
            m[:3, :3] = m[:3, :3] * f
            params = replace(self.params, large_voxels=2**62)
            self._coarse = ExtremePointSegmenter(pooled, Geometry(m, pooled.shape), params)
            self._coarse._range = self._range
        return self._coarse

    def _run_coarse_to_fine(
        self,
        points_ras: np.ndarray,
        warm: ExtremePointResult | None,
        pairs: list[tuple[int, int]],
        axes: list[int],
        lo: np.ndarray,
        hi: np.ndarray,
        margin: np.ndarray,
        b0: np.ndarray,
        box: tuple[slice, ...],
        t0: float,
    ) -> ExtremePointResult:
        """An organ's box: the pipeline on the 2× pooled grid, then the full resolution within three voxels of its
        boundary (:func:`~.random_walker.solve_unknowns`, the coarse answer fixed elsewhere)."""
        p = self.params
        coarse = self._coarse_segmenter()
        c = coarse.update(points_ras) if warm is not None and coarse.last is not None else coarse.segment(points_ras)
        t = time.perf_counter()
        cshape = coarse.geometry.shape
        cprob = c.full_probability(cshape)
        cseeds = np.full(cshape, BACKGROUND, np.int8)
        cseeds[c.box_slices] = c.seeds
        # The band on the coarse grid (two coarse voxels each side of its boundary); the fine level works only
        # on the band's bounding box grown by one voxel (its unknowns' neighbours): on the brain box about half
        # the padded box, and everything outside it is the coarse answer.
        cin = cprob > 0.5
        cband = dilate(cin, np.full(3, _BAND)) & ~erode(cin, np.full(3, _BAND)) & (cseeds == UNKNOWN)
        box_lo = np.array([s.start for s in box])
        box_hi = np.array([s.stop - 1 for s in box])
        probability, seeds = _double(cprob, box), _double(cseeds, box)
        f0, f1 = box_lo, box_hi  # no band (nothing to solve): the crop is the box
        if cband.any():
            k = [np.flatnonzero(cband.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
            f0 = np.maximum(np.array([v[0] for v in k]) * 2 - 1, box_lo)
            f1 = np.minimum(np.array([v[-1] for v in k]) * 2 + 2, box_hi)
        crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(f0, f1, strict=True))  # image coordinates
        local = tuple(slice(int(a - o), int(b - o) + 1) for a, b, o in zip(f0, f1, box_lo, strict=True))
        image = normalise_intensities(self.array[crop], self._range)
        up_prob, up_seeds = probability[local], seeds[local]
        unknown = _double(cband, crop) & (up_seeds == UNKNOWN)
        fixed = up_prob  # the coarse probability is already 1 on foreground seeds and 0 on background ones
        # Priors in the band: the intensity histograms of the (pooled) seeds in the crop on the full-resolution
        # intensities, and the coarse geodesic prior.
        hist, overlap = intensity_prior(image, up_seeds == FOREGROUND, up_seeds == BACKGROUND, p.prior_bins)
        prior, gamma = hist, p.prior_weight
        if coarse._geodesic is not None and p.geodesic_weight > 0:
            gw0, geo = coarse._geodesic
            cgeo = np.full(cshape, np.float32(0))
            cgeo[tuple(slice(int(a), int(a) + n) for a, n in zip(gw0, geo.shape, strict=True))] = geo
            gamma = p.prior_weight + p.geodesic_weight
            prior = ((p.prior_weight * hist + p.geodesic_weight * _double(cgeo, crop)) / gamma).astype(np.float32)
        std = contrast_std(image, p.edge_contrast, p.beta) if p.edge_contrast > 0 else float(np.std(image))
        x0 = fixed
        if warm is not None:
            x0 = np.where(unknown, self._map_previous(warm, f0, image.shape), fixed)
        rw = solve_unknowns(
            image, unknown, fixed, beta=p.beta, tol=p.tol, x0=x0, intensity_std=std, prior=prior, prior_weight=gamma
        )
        probability[local] = rw.probability
        seeds[local] = np.where(unknown, np.int8(UNKNOWN), up_seeds)
        mask = np.zeros(self.geometry.shape, bool)
        mask[box] = probability > 0.5
        timings = {"coarse": c.diagnostics["timings_s"]["total"], "band": time.perf_counter() - t}
        timings["total"] = time.perf_counter() - t0
        diagnostics = {
            "timings_s": timings,
            "box_shape": tuple(int(n) for n in probability.shape),
            "solve_shape": rw.solve_shape,
            "coarse_to_fine": True,
            "foreground_seeds": int((seeds == FOREGROUND).sum()),
            "background_seeds": int((seeds == BACKGROUND).sum()),
            "unknowns": rw.unknowns,
            "coarse_unknowns": c.diagnostics["unknowns"],
            "iterations": rw.iterations,
            "coarse_iterations": c.diagnostics["iterations"],
            "backend": rw.backend,
            "prior_overlap": overlap,
            "converged": rw.converged,
            "relative_residual": rw.relative_residual,
            "warm_start": warm is not None,
            "paths_reused": c.diagnostics["paths_reused"],
            "scribbles": c.diagnostics["scribbles"],
            "intensity_range": self._range,
            "pair_axes": axes,
            "intensity_std": std,
            "params": asdict(p),
        }
        paths = [np.minimum(q * 2, np.asarray(self.geometry.shape) - 1) for q in c.paths]
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
