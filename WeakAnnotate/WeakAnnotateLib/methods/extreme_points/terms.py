"""Data terms shared by the six-click segmentation and the corrective clicks: intensity scaling, edge contrast,
intensity and geodesic priors, and how much a voxel looks like the known background.

All work on intensities scaled to [0, 1] (:func:`normalise_intensities`), so that every parameter means the
same for SUV, HU and z-scores. Measurements behind the choices are in ``docs/extreme_points.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geodesic import geodesic_distance, subsampled_percentile


def percentile_range(box_image: np.ndarray) -> tuple[float, float]:
    lo, hi = subsampled_percentile(box_image, [1.0, 99.0])
    return float(lo), float(hi)


def normalise_intensities(box_image: np.ndarray, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale to [0, 1] by the 1st and 99th percentiles (clipped), so that β means the same on any modality."""
    lo, hi = intensity_range if intensity_range is not None else percentile_range(box_image)
    if hi <= lo:
        hi = lo + 1.0
    out = (np.asarray(box_image, np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def mean_square_difference(image: np.ndarray) -> float:
    """Mean squared difference between 6-neighbours (on every second voxel): the image's typical local contrast."""
    total, count = 0.0, 0
    sub = tuple(slice(None, None, 2) for _ in range(3))
    for axis in range(3):
        if image.shape[axis] < 2:
            continue
        d = np.diff(image, axis=axis)[sub]
        total += float(np.square(d, dtype=np.float32).sum(dtype=np.float64))
        count += d.size
    return max(total / max(count, 1), 1e-12)


def contrast_std(image: np.ndarray, edge_contrast: float, beta: float) -> float:
    """The ``intensity_std`` that makes the random walker's weights ``exp(−c·ΔI² / ⟨ΔI²⟩)`` (c = ``edge_contrast``).

    scikit-image's weights are ``exp(−β ΔI² / (10·std))`` with std over the whole box: on a CT box (air to bone)
    the soft-tissue edges of a kidney then weigh almost nothing (Dice 0.64 / 0.68 on the two kidneys). Scaling
    by the mean squared neighbour difference (GrabCut's choice, Rother et al. 2004) makes the weights relative
    to the region's own local contrast.
    """
    return beta * mean_square_difference(image) / (10.0 * edge_contrast)


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    h, _ = np.histogram(values, bins=edges)
    h = ndimage.gaussian_filter1d(h.astype(float), 1.0, mode="nearest")
    return h / max(h.sum(), 1e-12)


def intensity_prior(
    image: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    bins: int = 32,
    *,
    fg_extra: np.ndarray | None = None,
    bg_extra: np.ndarray | None = None,
    extra_share: float = 0.5,
) -> tuple[np.ndarray, float]:
    """P(foreground | intensity) from smoothed histograms of the foreground- and background-sample intensities.

    Grady's prior model needs a density per label; histograms of the seeds' [0, 1]-scaled intensities,
    smoothed by one bin and floored, are cheap and make no assumption about their shape (PET lesions with
    a cold core, heterogeneous tumours). Both classes get equal weight (the seeds' counts are no class prior).
    ``fg_extra`` / ``bg_extra`` (corrective clicks' seeds: a few voxels against a segment's thousands) make up
    ``extra_share`` of their class's density when they hold any voxel, so that a click on a part of another
    intensity is heard.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    densities = []
    for sample, extra in ((fg, fg_extra), (bg, bg_extra)):
        h = _density(image[sample], edges)
        if extra is not None and extra.any():
            h = (
                (1.0 - extra_share) * h + extra_share * _density(image[extra], edges)
                if h.sum() > 0
                else _density(image[extra], edges)
            )
        h = h + 1e-3 / bins
        densities.append(h / h.sum())
    pf, pb = densities
    posterior = (pf / (pf + pb)).astype(np.float32)
    idx = np.clip((image * bins).astype(np.int32), 0, bins - 1)
    overlap = float(np.sqrt(pf * pb).sum())  # Bhattacharyya coefficient: 0 separable, 1 identical
    return posterior[idx], overlap


def _pool(a: np.ndarray, f: int, how) -> np.ndarray:  # noqa: ANN001
    """``f``×``f``×``f`` blocks reduced by ``how`` (np.mean, np.any); the last partial block included."""
    pad = [(0, (-n) % f) for n in a.shape]
    if any(p for _, p in pad):
        a = np.pad(a, pad, mode="edge")
    k, j, i = (n // f for n in a.shape)
    out = how(a.reshape(k, f, j, f, i, f), axis=(1, 3, 5))
    return out.astype(np.float32) if how is np.mean else out


def geodesic_prior(
    image: np.ndarray,
    spacing: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    length_weight: float = 1.0,
    factor: int = 1,
) -> np.ndarray:
    """P(foreground) from the geodesic competition of the seeds: ``D_bg / (D_fg + D_bg)``.

    The distances are the ones Grow from seeds grows by (intensity differences along the path, plus a length
    term): a voxel joined to the foreground seeds by a homogeneous path and separated from the background by an
    edge gets a high value, whatever its own intensity. This is what the random walker lacks on heterogeneous
    objects (a necrotic core, an oedema of mixed signal): its histogram prior marks the core unlikely, and its
    diffusion from thin scribbles does not reach far; here the core is joined to the rim it lies in.
    """
    if factor > 1:  # on a grid ``factor`` times coarser (an organ's box): the prior is smooth anyway
        coarse = geodesic_prior(
            _pool(image, factor, np.mean), np.asarray(spacing, float) * factor,
            _pool(fg, factor, np.any), _pool(bg, factor, np.any) & ~_pool(fg, factor, np.any), length_weight,
        )  # fmt: skip
        up = coarse.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)
        out = np.empty(image.shape, np.float32)
        out[tuple(slice(0, n) for n in up.shape)] = up[tuple(slice(0, n) for n in image.shape)]
        if any(u < n for u, n in zip(up.shape, image.shape, strict=True)):  # odd edges: the nearest coarse value
            idx = tuple(
                np.minimum(np.arange(n) // factor, c - 1) for n, c in zip(image.shape, coarse.shape, strict=True)
            )
            out = coarse[np.ix_(*idx)]
        return out
    d_fg = geodesic_distance(image, spacing, fg, length_weight=length_weight)
    d_bg = geodesic_distance(image, spacing, bg, length_weight=length_weight)
    both = d_fg + d_bg
    out = np.where(np.isfinite(both), d_bg / np.maximum(both, 1e-12), np.where(np.isfinite(d_fg), 1.0, 0.0))
    return out.astype(np.float32)


def background_typicality(image: np.ndarray, background: np.ndarray, bins: int = 256) -> np.ndarray:
    """How typical each voxel's intensity is of the ``background`` sample: the two-sided tail probability under
    its empirical distribution (1 at its median, near 0 far in either tail), float32 in [0, 1]."""
    h, _ = np.histogram(image[background], bins=bins, range=(0.0, 1.0))
    total = max(int(h.sum()), 1)
    cdf_mid = (np.cumsum(h) - h / 2.0) / total
    t = (2.0 * np.minimum(cdf_mid, 1.0 - cdf_mid)).astype(np.float32)
    return t[np.clip((image * bins).astype(np.int32), 0, bins - 1)]
