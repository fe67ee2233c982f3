"""Geodesic (minimal-cost) paths between voxels, for scribbles between opposite extreme points.

Why ``skimage.graph.MCP_Geometric``: it is compiled (Cython), 26-connected, weights each step by its
length in mm through ``sampling`` and stops once the end is reached. ``route_through_array`` wraps the same
class but re-creates it per call and cannot stop early; no hand-written Dijkstra was needed (measured in
``docs/extreme_points.md``).

Why the cost is not gradient magnitude alone (the paper's choice): on real lesions, minimal-gradient paths
leave the object and run through flat background around it (17 % of path voxels inside the tumour on BraTS
pat0001 FLAIR, 2 % on the PET lesion of STS_001). A length term, ``cost = 1 + w·|∇I| / g_ref``, makes the
path prefer the straight line between the two clicks unless an edge is in the way.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from ...core.errors import InputError
from .random_walker import list_kernel


def gradient_magnitude(image: np.ndarray, spacing: np.ndarray, sigma_mm: float = 0.0) -> np.ndarray:
    """|∇I| per mm (central differences), after an optional Gaussian smoothing of ``sigma_mm``."""
    data = np.asarray(image, dtype=np.float32)
    sp = np.asarray(spacing, dtype=float)
    if sigma_mm > 0:
        data = ndimage.gaussian_filter(data, sigma=sigma_mm / sp, mode="nearest")
    grads = np.gradient(data, *sp)
    g = np.zeros(data.shape, np.float32)
    for d in grads:
        g += d.astype(np.float32) ** 2
    return np.sqrt(g, out=g)


def subsampled_percentile(values: np.ndarray, q: float | list[float], n: int = 200_000) -> np.ndarray | float:
    """Percentile(s) of about ``n`` evenly strided values: exact enough for scaling, and fast on big boxes."""
    flat = np.asarray(values).ravel()
    result = np.percentile(flat[:: max(1, flat.size // n)], q)
    return float(result) if np.ndim(result) == 0 else result


def path_cost(
    image: np.ndarray,
    spacing: np.ndarray,
    *,
    gradient_weight: float = 1.0,
    sigma_mm: float = 0.0,
    reference_percentile: float = 90.0,
) -> np.ndarray:
    """Cost per mm of travel: ``1 + w · |∇I| / g_ref``, ``g_ref`` = a high percentile of |∇I| in the array.

    Normalising by a percentile of the array's own gradients makes ``w`` independent of the intensity unit
    (SUV, HU, z-scores); ``w = 0`` gives straight lines, ``w → ∞`` the paper's gradient-only cost.
    """
    g = gradient_magnitude(image, spacing, sigma_mm)
    ref = subsampled_percentile(g, reference_percentile)
    cost = np.ones_like(g)
    if ref > 0 and gradient_weight > 0:
        cost += np.float32(gradient_weight / ref) * g
    return cost


def shortest_path(
    cost: np.ndarray, start: tuple[int, int, int], end: tuple[int, int, int], spacing: np.ndarray
) -> np.ndarray:
    """Voxels (N, 3) of the 26-connected minimal-cost path from ``start`` to ``end`` (both included)."""
    cost = np.asarray(cost)
    for name, p in (("start", start), ("end", end)):
        if np.any(np.asarray(p) < 0) or np.any(np.asarray(p) >= cost.shape):
            raise InputError(f"Path {name} {tuple(p)} lies outside the cost array {cost.shape}.")
    mcp = MCP_Geometric(cost, fully_connected=True, sampling=tuple(float(s) for s in spacing))
    mcp.find_costs([tuple(int(v) for v in start)], [tuple(int(v) for v in end)], find_all_ends=True)
    return np.asarray(mcp.traceback(tuple(int(v) for v in end)), dtype=np.int64).reshape(-1, 3)


def _sweeps_numpy(
    image: np.ndarray, dist: np.ndarray, inv_g: float, steps: np.ndarray, alpha: float, iterations: int
) -> None:
    """In place: the C kernel's ``geo_sweeps`` (forward and backward along k, then j, then i; same float order)."""
    n = image.shape
    inv = np.float32(inv_g)
    for _ in range(iterations):
        for axis in range(3):
            step_cost = np.float32(alpha * steps[axis])
            for forward in (True, False):
                order = range(1, n[axis]) if forward else range(n[axis] - 2, -1, -1)
                for m in order:
                    cur = tuple(m if a == axis else slice(None) for a in range(3))
                    pre = tuple((m - 1 if forward else m + 1) if a == axis else slice(None) for a in range(3))
                    cand = dist[pre] + np.abs(image[cur] - image[pre]) * inv
                    cand += step_cost
                    np.minimum(dist[cur], cand, out=dist[cur])


def geodesic_distance(
    image: np.ndarray,
    spacing: np.ndarray,
    sources: np.ndarray,
    *,
    length_weight: float = 1.0,
    iterations: int = 2,
    backend: str = "auto",
) -> np.ndarray:
    """Geodesic distance (float32, mm-like units) from the ``sources`` voxels, the metric Grow from seeds grows by.

    A step between 6-neighbours costs ``|ΔI| / g + length_weight · h`` (h = the step in mm, g = the mean
    |ΔI| per mm of the array, so the intensity term is unit-free and ``length_weight = 1`` weighs one mean
    gradient step like one mm of length). Computed by alternating forward/backward sweeps along each axis
    (``iterations`` rounds: exact for paths that turn at most that many times per axis, close otherwise),
    compiled when the kernel is built, the same updates in numpy otherwise. Voxels no source reaches: inf.
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    sp = np.asarray(spacing, dtype=float)
    g = [float(np.mean(np.abs(np.diff(data, axis=a)))) / sp[a] for a in range(3) if data.shape[a] > 1]
    ref = max(float(np.mean(g)) if g else 0.0, 1e-12)
    dist = np.where(np.asarray(sources, bool), np.float32(0), np.float32(np.inf)).astype(np.float32)
    use_numpy = backend == "numpy" or (backend == "auto" and os.environ.get("WEAKANNOTATE_RW_BACKEND") == "numpy")
    lib = None if use_numpy else list_kernel()
    if lib is not None:
        args = (float(1.0 / ref), *(float(v) for v in sp), float(length_weight))
        lib.geo_sweeps(*data.shape, data, *args, dist, int(iterations))
    else:
        _sweeps_numpy(data, dist, 1.0 / ref, sp, length_weight, iterations)
    return dist
