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

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from ...core.errors import InputError


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
