"""Corrective clicks on any segment: a positive click ("this is object") or a negative one ("this is not").

The segment the clicks correct — from six clicks, a template, a box, a model's prediction, painted by hand —
seeds the solve: its inside eroded by ``band_mm`` is foreground, its outside beyond ``band_mm`` is background,
and the band between them is unknown. Each click

* frees the segment's seeds around it (its *influence*: a ball of ``influence_factor`` × the click's distance
  to the segment's border, at least ``influence_min_mm`` and at most ``influence_max_mm``, grown by the band):
  a click far inside a missed region says the segment is wrong over that distance;
* becomes a hard seed of its sign, a ball of ``click_radius_mm`` (at least its voxel). The clicks are applied in
  order, so the latest click wins over an older click's seed it contradicts, and every click wins over the
  segment's own seeds.

The random walker then solves the band and the freed regions (:func:`~.random_walker.solve_unknowns`, whose
cost follows the unknowns, not the box) with the same terms as the six-click pipeline: edge weights relative
to the region's contrast, the intensity prior of the segment's inner and outer shells with the clicks' seeds
given half of their class's density, and the geodesic prior of the seeds. The result is a pure function of
(image, segment, clicks): a warm start (the previous click's solution) only saves iterations.

Measurements behind the defaults: ``docs/extreme_points.md`` (robot user, ``benchmarks/bench_corrective_clicks.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import vtk
from scipy import ndimage

from ...core.errors import InputError
from ...core.geometry import Geometry
from ...scene.markups_io import read_points
from ...scene.mrml_adapter import (
    geometry_of_node,
    image_of_node,
    points_of_node,
    points_tag_value,
    scene_change,
    segment_mask,
    set_segment_mask,
    stored_points,
)
from .band import dilate, ellipsoid_in_box, ellipsoid_offsets, erode, radius_voxels, stamp
from .random_walker import solve_unknowns
from .segmenter import POINTS_TAG, ExtremePointParams, ExtremePointSegmenter
from .terms import (
    contrast_std,
    geodesic_prior,
    intensity_prior,
    normalise_intensities,
    percentile_range,
)

CLICKS_TAG = "WeakAnnotate.CorrectiveClicks"


@dataclass(frozen=True)
class Click:
    """One corrective click: a RAS point and its sign (True: "this is object")."""

    point: tuple[float, float, float]
    positive: bool

    @staticmethod
    def make(point: Sequence[float], positive: bool) -> Click:
        p = np.asarray(point, float).reshape(3)
        return Click((float(p[0]), float(p[1]), float(p[2])), bool(positive))


@dataclass(frozen=True)
class CorrectionParams:
    """Parameters of the correction; the defaults were chosen on the development cases (docs)."""

    band_mm: float = 3.0  # the segment's border ± this is unknown (at least one voxel per axis)
    click_radius_mm: float = 1.0  # a click is a hard seed ball of this radius (at least its voxel)
    influence_factor: float = 2.0  # a click frees the segment's seeds within this × its distance to the border
    influence_min_mm: float = 15.0
    click_share: float = 0.5  # the clicks' seeds make up this share of their class's intensity density
    near_mm: float = 0.0  # every seed of the segment this close to a click (+ the band) is freed, whatever it is
    influence_max_mm: float = 40.0  # also the reach of a click on an empty segment
    edge_contrast: float = 1.0  # as ExtremePointParams
    beta: float = 130.0
    prior_weight: float = 0.1  # γ of the intensity prior
    geodesic_weight: float = 0.2  # γ of the geodesic prior
    geodesic_length: float = 1.0
    prior_bins: int = 32
    tol: float = 1e-3
    local: bool = True  # re-solve the segment's band only within the clicks' reach (False: everywhere)
    # Above this many voxels in the segment's box (an organ) the region solved is the clicks' reach alone, with the
    # intensity model from the segment's shells there; below it the whole box, so the model sees the whole segment
    # (with the reach alone the brain lesion's robot curve fell from 0.745 to 0.657 at ten clicks).
    local_region_voxels: int = 2_000_000


@dataclass
class CorrectionResult:
    """The corrected mask on the full grid, the probability on the solved region, and what happened."""

    mask: np.ndarray  # bool, full grid
    probability: np.ndarray  # float32 on the region
    region_start: tuple[int, int, int]
    clicks: list[Click]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def region_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.region_start, self.probability.shape, strict=True))


# --- the engine ---------------------------------------------------------------------------------------------


def _click_indices(clicks: Sequence[Click], geometry: Geometry) -> np.ndarray:
    """Array indices (N, 3) of the clicks, or an InputError naming the first one outside the image."""
    if not clicks:
        return np.zeros((0, 3), np.int64)
    points = np.array([c.point for c in clicks], float)
    if not np.all(np.isfinite(points)):
        raise InputError("Some corrective clicks have no position (NaN or infinite coordinates).")
    for n, c in enumerate(clicks):
        try:
            geometry.ras_to_index(points[n : n + 1], what="click")
        except InputError as e:
            sign = "positive" if c.positive else "negative"
            raise InputError(f"Corrective click {n + 1} ({sign}): {str(e)[len('Click 1 ') :]}") from None
    return geometry.ras_to_index(points, what="click")


def _distance_to_border(base: np.ndarray, index: np.ndarray, spacing: np.ndarray) -> float | None:
    """mm from a voxel to the nearest voxel on the other side of the segment's border; None when there is no
    other side (an empty segment, or one filling the grid). Searched in growing cubes around the voxel."""
    here = bool(base[tuple(index)])
    shape = np.asarray(base.shape)
    r = np.full(3, 8)
    while True:
        lo = np.maximum(index - r, 0)
        hi = np.minimum(index + r + 1, shape)
        whole = bool(np.all(lo == 0) and np.all(hi == shape))
        crop = base[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
        other = np.argwhere(crop != here)
        if len(other):
            d = float(np.sqrt((((other + lo - index) * spacing) ** 2).sum(axis=1)).min())
            if d <= float((r * spacing).min()) or whole:  # nothing beyond the cube can be nearer
                return d
        elif whole:
            return None
        r = r * 2


def correct_segment(
    array: np.ndarray,
    geometry: Geometry,
    base: np.ndarray,
    clicks: Sequence[Click],
    params: CorrectionParams | None = None,
    *,
    intensity_range: tuple[float, float] | None = None,
    warm: CorrectionResult | None = None,
) -> CorrectionResult:
    """The segment ``base`` (bool mask on ``geometry``) corrected by ``clicks`` (in the order they were made)."""
    p = params or CorrectionParams()
    t0 = time.perf_counter()
    array = np.asarray(array)
    base = np.asarray(base, bool)
    if array.ndim != 3 or array.shape != geometry.shape:
        raise InputError(f"Image {array.shape} does not match its grid {geometry.describe()}.")
    if base.shape != geometry.shape:
        raise InputError(f"The segment's grid {base.shape} is not the image's {geometry.shape}.")
    clicks = [c if isinstance(c, Click) else Click.make(*c) for c in clicks]
    index = _click_indices(clicks, geometry)
    if not base.any() and not any(c.positive for c in clicks):
        raise InputError(
            "The segment is empty and there is no positive click: negative clicks can only remove voxels. "
            "Place a positive click on the object."
        )
    spacing = geometry.array_spacing
    shape = np.asarray(geometry.shape)
    band = radius_voxels(p.band_mm, spacing)
    click_offsets = ellipsoid_offsets(np.maximum(p.click_radius_mm / spacing, 0.0))
    influence = []
    for c, idx in zip(clicks, index, strict=True):
        if bool(base[tuple(idx)]) == c.positive:  # the segment already agrees: only the click's neighbourhood
            reach = p.influence_min_mm
        else:
            d = _distance_to_border(base, idx, spacing)
            reach = (
                p.influence_max_mm
                if d is None
                else float(np.clip(p.influence_factor * d, p.influence_min_mm, p.influence_max_mm))
            )
        influence.append(reach + p.band_mm)

    # The region solved: the clicks' reach (the segment's band is re-solved only there), grown so that the band's
    # erosion is exact inside it; the segment's box grown by the band too unless that box is organ-sized (or there
    # are no clicks, or ``local`` is off).
    def grown(lo: np.ndarray, hi: np.ndarray, by: np.ndarray) -> tuple[slice, ...]:
        a, b = np.maximum(lo - by, 0), np.minimum(hi + by, shape - 1)
        return tuple(slice(int(x), int(y) + 1) for x, y in zip(a, b, strict=True))

    boxes = []
    segment_box, organ = None, False
    if base.any():
        k = [np.flatnonzero(base.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        seg_lo, seg_hi = np.array([v[0] for v in k]), np.array([v[-1] for v in k])
        segment_box = grown(seg_lo, seg_hi, band + 2)
        organ = int(np.prod([x.stop - x.start for x in segment_box])) > p.local_region_voxels
        if not (p.local and clicks and organ):
            boxes.append((seg_lo - band - 2, seg_hi + band + 2))
    for idx, reach in zip(index, influence, strict=True):
        r = radius_voxels(reach, spacing) + (2 * band + 2 if organ else 1)
        boxes.append((idx - r, idx + r))
    r0 = np.maximum(np.min([b[0] for b in boxes], axis=0), 0)
    r1 = np.minimum(np.max([b[1] for b in boxes], axis=0), shape - 1)
    region = tuple(slice(int(a), int(b) + 1) for a, b in zip(r0, r1, strict=True))
    rshape = tuple(int(b - a + 1) for a, b in zip(r0, r1, strict=True))
    local = index - r0

    if intensity_range is None:  # an organ's own box, so that the scaling does not follow the clicks
        intensity_range = percentile_range(array[segment_box if organ else region])
    image = normalise_intensities(array[region], intensity_range)
    b = base[region]
    inner = erode(b, band)
    outer = dilate(b, band)
    unknown = outer & ~inner
    fixed = b.astype(np.float32)  # the segment itself wherever nothing is solved
    pos_seed = np.zeros(rshape, bool)
    neg_seed = np.zeros(rshape, bool)
    balls = []
    for c, idx in zip(clicks, local, strict=True):  # in order: the latest click wins
        ball = stamp(rshape, idx[None], click_offsets)
        balls.append(ball)
        (pos_seed if c.positive else neg_seed)[ball] = True
        (neg_seed if c.positive else pos_seed)[ball] = False
    near = np.zeros(rshape, bool)
    for idx in local:
        near |= stamp(rshape, idx[None], ellipsoid_offsets((p.near_mm + p.band_mm) / spacing))
    timings = {"seeds": time.perf_counter() - t0}

    t = time.perf_counter()
    # The intensity model: the segment's inner and outer shells (away from the clicks, where the segment is
    # in question), and the clicks' own seeds.
    shell = 2 * band
    fg_sample = inner & ~erode(inner, shell) & ~near
    bg_sample = ~outer & dilate(outer, shell) & ~near
    if not fg_sample.any():
        fg_sample = inner & ~near
    hist, overlap = intensity_prior(
        image, fg_sample, bg_sample, p.prior_bins, fg_extra=pos_seed, bg_extra=neg_seed, extra_share=p.click_share
    )
    # What a click frees: its neighbourhood, and within its reach the voxels that look more like the clicks of
    # its sign than like the segment's class it contradicts (a negative click in a kidney's sinus frees the
    # sinus fat, not the parenchyma around it; one on a blurred edge frees neither the object nor its core).
    freed = near.copy()
    reached = np.zeros(rshape, bool)
    own_model, _ = intensity_prior(image, fg_sample, bg_sample, p.prior_bins)  # the segment's alone
    siding = {True: own_model >= 0.5, False: own_model < 0.5}
    for c, idx, reach, own in zip(clicks, local, influence, balls, strict=True):
        # Everything below lies in the ball, so it is computed on the ball's box (the same voxels as on the region).
        box, ball = ellipsoid_in_box(rshape, idx, reach / spacing)
        reached[box] |= ball
        # The part on the click's side of the segment's border connected to it, grown by the band so that its
        # border lies inside the unknowns (the segment's seeds would otherwise hug the very edge the random walker
        # has to find). Not further: on a thin object (a spinal cord) a negative click's bg-like part reaching
        # around through the fluid beside it, grown by the band, freed the whole cord over 18 mm.
        same_side = b[box] if b[tuple(idx)] else ~b[box]  # a click corrects the side of the segment it lies on
        labels, _ = ndimage.label((ball & siding[c.positive][box] & same_side) | own[box])
        part = np.isin(labels, np.unique(labels[own[box] & (labels > 0)]))
        freed[box] |= dilate(part, band) & ball
    if p.local and clicks:
        unknown &= reached
    unknown |= freed
    for c, ball in zip(clicks, balls, strict=True):
        fixed[ball] = 1.0 if c.positive else 0.0
        unknown[ball] = False
    if not pos_seed.any() and not (b & ~neg_seed).any():
        raise InputError(
            "The negative clicks cover all of the segment's foreground: nothing of the object would be left. "
            "Delete the segment instead, or place a positive click on the object."
        )
    fg_fixed = ~unknown & (fixed > 0.5)
    if not fg_fixed.any():
        # The clicks freed every foreground seed of a small segment: keep its voxels away from the negative
        # clicks' neighbourhoods as seeds, else all of its voxels the negative clicks do not cover.
        keep = (inner if inner.any() else b) & ~near & ~neg_seed
        if not keep.any():
            keep = b & ~neg_seed
        fixed[keep], unknown[keep] = 1.0, False
        fg_fixed = keep
    if not (~unknown & (fixed < 0.5)).any():
        raise InputError("The segment and the positive clicks fill the whole image: there is no background left.")
    prior = hist
    gamma = p.prior_weight
    if p.geodesic_weight > 0:
        geo = geodesic_prior(image, spacing, fg_fixed, ~unknown & (fixed < 0.5), p.geodesic_length)
        prior = ((p.prior_weight * prior + p.geodesic_weight * geo) / (p.prior_weight + p.geodesic_weight)).astype(
            np.float32
        )
        gamma = p.prior_weight + p.geodesic_weight
    std = contrast_std(image, p.edge_contrast, p.beta) if p.edge_contrast > 0 else float(np.std(image))
    timings["priors"] = time.perf_counter() - t

    t = time.perf_counter()
    x0 = np.where(unknown, b.astype(np.float32), fixed)
    if warm is not None:
        _paste(x0, warm.probability, np.asarray(warm.region_start) - r0)
    rw = solve_unknowns(
        image, unknown, fixed, beta=p.beta, tol=p.tol, x0=x0, intensity_std=std, prior=prior, prior_weight=gamma
    )
    timings["random_walker"] = time.perf_counter() - t
    mask = base.copy()
    mask[region] = rw.probability > 0.5
    timings["total"] = time.perf_counter() - t0
    diagnostics = {
        "timings_s": timings,
        "region_shape": rshape,
        "unknowns": rw.unknowns,
        "iterations": rw.iterations,
        "converged": rw.converged,
        "backend": rw.backend,
        "warm_start": warm is not None,
        "influence_mm": [float(v) for v in influence],
        "prior_overlap": overlap,
        "intensity_range": intensity_range,
        "params": asdict(p),
    }
    return CorrectionResult(mask, rw.probability, tuple(int(v) for v in r0), list(clicks), diagnostics)


def _paste(target: np.ndarray, source: np.ndarray, offset: np.ndarray) -> None:
    """Copy ``source`` into ``target`` where they overlap, ``source``'s origin at ``offset`` in ``target``."""
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.asarray(source.shape), np.asarray(target.shape))
    if np.all(hi > lo):
        dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        src = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, offset, strict=True))
        target[dst] = source[src]


class CorrectionSession:
    """A segment being corrected click by click: keeps the segment the clicks apply to and the last solution.

    ``add(point, positive)`` and ``undo()`` return the result for all clicks so far, computed from the base
    segment (so the answer does not depend on the history), warm-started from the previous solution.
    """

    def __init__(
        self,
        array: np.ndarray,
        geometry: Geometry,
        base: np.ndarray,
        params: CorrectionParams | None = None,
        *,
        intensity_range: tuple[float, float] | None = None,
        clicks: Sequence[Click] = (),
    ) -> None:
        self.array, self.geometry = np.asarray(array), geometry
        self.base = np.asarray(base, bool)
        if self.base.shape != geometry.shape:
            raise InputError(f"The segment's grid {self.base.shape} is not the image's {geometry.shape}.")
        self.params = params or CorrectionParams()
        self.intensity_range = intensity_range
        self.clicks: list[Click] = list(clicks)
        self.history: list[CorrectionResult] = []

    @property
    def result(self) -> CorrectionResult | None:
        return self.history[-1] if self.history else None

    def solve(self) -> CorrectionResult:
        result = correct_segment(
            self.array,
            self.geometry,
            self.base,
            self.clicks,
            self.params,
            intensity_range=self.intensity_range,
            warm=self.result,
        )
        self.history.append(result)
        return result

    def add(self, point: Sequence[float], positive: bool) -> CorrectionResult:
        """One more click; on bad input (outside the image, the last foreground removed) nothing changes."""
        self.clicks.append(Click.make(point, positive))
        try:
            return self.solve()
        except InputError:
            self.clicks.pop()
            raise

    def undo(self) -> CorrectionResult | None:
        """Forget the last click; the previous result (None: back to the base segment)."""
        if not self.clicks:
            return None
        self.clicks.pop()
        if self.history:
            self.history.pop()
        return self.result


def segment_with_clicks(
    array: np.ndarray,
    geometry: Geometry,
    six_points: np.ndarray,
    clicks: Sequence[Click],
    params: ExtremePointParams | None = None,
    correction: CorrectionParams | None = None,
) -> tuple[Any, CorrectionResult | None]:
    """Six extreme clicks, then corrective clicks on their segment: (six-click result, correction or None)."""
    segmenter = ExtremePointSegmenter(array, geometry, params)
    six = segmenter.segment(six_points)
    if not clicks:
        return six, None
    corrected = correct_segment(
        array, geometry, six.mask, clicks, correction, intensity_range=six.diagnostics["intensity_range"]
    )
    return six, corrected


# --- clicks on the segment (tags) and nodes ------------------------------------------------------------------


def clicks_tag_value(clicks: Sequence[Click]) -> str:
    """The tag value: the points (RAS) in the order they were made and their signs."""
    return points_tag_value(
        np.array([c.point for c in clicks], float).reshape(-1, 3), positive=[c.positive for c in clicks]
    )


def clicks_from_tag(value: str) -> list[Click]:
    try:
        doc = json.loads(value)
        points = np.asarray(doc["points"], float).reshape(-1, 3)
        signs = [bool(v) for v in doc["positive"]]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"The segment's {CLICKS_TAG} tag does not hold valid clicks ({e}).") from None
    if len(signs) != len(points):
        raise InputError(f"The segment's {CLICKS_TAG} tag has {len(points)} points but {len(signs)} signs.")
    return [Click.make(q, s) for q, s in zip(points, signs, strict=True)]


def stored_clicks(segmentation_node: Any, segment_id: str) -> list[Click]:
    """The corrective clicks kept on a segment (its ``WeakAnnotate.CorrectiveClicks`` tag), oldest first."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    value = vtk.reference("")
    if segment is None or not segment.GetTag(CLICKS_TAG, value):
        return []
    return clicks_from_tag(str(value))


def read_click_files(add: str | None, remove: str | None, geometry: Geometry) -> list[Click]:
    """The clicks of a positive and a negative ``.mrk.json`` (each in its file's order; positives first, so a
    negative click overlapping a positive one wins); each file must hold a point, each point lie in the image."""
    clicks: list[Click] = []
    for path, positive in ((add, True), (remove, False)):
        if not path:
            continue
        what = "positive click" if positive else "negative click"
        points, _ = read_points(path, what=f"{what}s")
        if len(points) == 0:
            raise InputError(f"The {what} file {path} holds no points; place at least one click or leave it out.")
        geometry.ras_to_index(points, what=what)
        clicks += [Click.make(q, positive) for q in points]
    return clicks


def clicks_of_nodes(
    add_node: Any | None, remove_node: Any | None, order: Sequence[tuple[bool, int]] | None = None
) -> list[Click]:
    """Clicks from a positive and a negative point list. ``order``: (positive, index in its list) oldest first,
    as the face recorded them; without it the positive clicks come first (then a negative click overlapping a
    positive one wins)."""
    pos = points_of_node(add_node)[0] if add_node is not None else np.zeros((0, 3))
    neg = points_of_node(remove_node)[0] if remove_node is not None else np.zeros((0, 3))
    if order is None:
        order = [(True, n) for n in range(len(pos))] + [(False, n) for n in range(len(neg))]
    out = []
    for positive, n in order:
        source = pos if positive else neg
        if not 0 <= n < len(source):
            raise InputError(f"Click order names {'positive' if positive else 'negative'} click {n + 1}, not placed.")
        out.append(Click.make(source[n], positive))
    return out


def correct_from_nodes(
    rt: Any,
    volume_node: Any,
    segmentation_node: Any,
    segment_id: str,
    clicks: Sequence[Click],
    *,
    session: CorrectionSession | None = None,
    params: CorrectionParams | None = None,
    extreme_params: ExtremePointParams | None = None,
) -> tuple[str, CorrectionResult, CorrectionSession]:
    """Correct one segment of ``segmentation_node`` with ``clicks`` (all of them so far, oldest first).

    The segment the clicks apply to: ``session.base`` when a session from an earlier call is passed; else, for
    a segment made from six clicks (its ``WeakAnnotate.ExtremePoints`` tag), the six-click segment derived again
    from those points; else the segment as it is now. Everything is computed before the scene is touched; the
    segment's voxels and its clicks (tag ``WeakAnnotate.CorrectiveClicks``) change together, or not at all.
    Returns the segment ID, the result and the session to pass to the next call (warm start, undo).
    """
    geometry = geometry_of_node(volume_node)  # InputError: no volume, or no voxels
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise InputError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.")
    if session is None or not session.geometry.same_grid(geometry):
        # Only a new session copies the voxels out of the node; a warm one already holds them.
        image = image_of_node(volume_node)
        six = stored_points(segmentation_node, segment_id, POINTS_TAG)
        if six is not None and len(six) == 6:
            first = ExtremePointSegmenter(image.array, image.geometry, extreme_params).segment(six)
            base, rng = first.mask, first.diagnostics["intensity_range"]
        else:
            base, rng = segment_mask(segmentation_node, segment_id, image.geometry), None
        session = CorrectionSession(image.array, image.geometry, base, params, intensity_range=rng)
    session.clicks = list(clicks)
    result = session.solve()
    name = segment.GetName()
    with scene_change(rt.scene):
        set_segment_mask(rt, segmentation_node, result.mask, geometry, name)
        segmentation.GetSegment(segment_id).SetTag(CLICKS_TAG, clicks_tag_value(result.clicks))
    return segment_id, result, session
