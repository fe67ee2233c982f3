"""Two-label random walker (Grady 2006) solved matrix-free, for interactive use.

Why not ``skimage.segmentation.random_walker``: it builds the sparse Laplacian of the whole array although
most voxels are seeded, solves once per label and needs gigabytes on an organ's box (20 s on the BraTS
tumour box, 119 s on a CT sarcoma box, see ``docs/extreme_points.md``). Here:

* only the unseeded voxels are unknowns, and the solve runs on the bounding box of those unknowns (plus one
  voxel of seeded neighbours): seeded voxels far from the unknowns cannot change the answer;
* the operator is a 6-connected stencil applied with array slices (no matrix is stored), in float32;
* conjugate gradient with a Jacobi (diagonal) preconditioner, stopped when ``‖b − Ax‖ ≤ tol·‖b‖``, the
  test scikit-image passes to SciPy's ``cg`` (``rtol=tol, atol=0``), with ``tol`` tightened above
  ``tol_size`` unknowns (see ``random_walker``);
* two labels need one solve: P(background) = 1 − P(foreground);
* ``x0`` warm-starts from a previous probability map (after a click moves, 2–4× fewer iterations);
* optional prior model (Grady 2005, "Multilabel random walker image segmentation using prior models"):
  ``(L_U + γ I) x = b + γ·prior`` with ``prior`` = P(foreground | intensity), the same SPD system for the same
  solver with a shifted diagonal;
* two backends with the same algorithm and stopping test: a fused compiled CG (``_rw_kernel.c``, OpenMP,
  built at install time and loaded with ctypes; three memory passes per iteration) and numpy (~24 passes per
  iteration; used where the kernel was not built, e.g. a desktop Slicer install of the .py files only).
  ``backend="auto"`` takes the kernel when present; ``WEAKANNOTATE_RW_BACKEND=numpy`` forces numpy.

The edge weights are scikit-image's, so ``beta`` means the same: ``w = exp(−β (ΔI/spacing)² / (10·std(I)))``
with ``std`` taken over the whole ``image`` passed in (or given as ``intensity_std``), plus 1e-10.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from .band import dilate, erode

UNKNOWN, FOREGROUND, BACKGROUND = 0, 1, 2
_EPS = 1e-10


@dataclass
class RandomWalkerResult:
    """Foreground probability on the image's grid and how the solve went."""

    probability: np.ndarray  # float32, shape of the image; seeds hold 1 (foreground) or 0 (background)
    iterations: int
    converged: bool
    relative_residual: float
    unknowns: int
    solve_shape: tuple[int, int, int]  # the sub-box the system was solved on
    backend: str = "numpy"  # "compiled" (the C kernel) or "numpy"


def edge_weights(
    image: np.ndarray, beta: float, spacing: np.ndarray | None = None, intensity_std: float | None = None
) -> list[np.ndarray]:
    """Weights of the edges along each array axis (shape minus one along that axis), float32, as scikit-image."""
    data = np.asarray(image, dtype=np.float32)
    std = float(np.std(data)) if intensity_std is None else float(intensity_std)
    if not np.isfinite(std) or std <= 0:
        std = 1.0  # a constant image: every weight is 1, as scikit-image gives up to eps
    scale = np.float32(-beta / (10.0 * std))
    sp = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    weights = []
    for axis in range(3):
        d = np.diff(data, axis=axis)
        d *= np.float32(1.0 / sp[axis])
        np.square(d, out=d)
        d *= scale
        np.exp(d, out=d)
        d += np.float32(_EPS)
        weights.append(d)
    return weights


def _slices(axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis] = slice(None, -1)
    hi[axis] = slice(1, None)
    return tuple(lo), tuple(hi)


class _Stencil:
    """y = W·x (the weighted sum of the 6 neighbours), with preallocated buffers."""

    def __init__(self, weights: list[np.ndarray]) -> None:
        self.weights = weights
        self.tmp = [np.empty_like(w) for w in weights]
        self.slices = [_slices(a) for a in range(3)]

    def neighbour_sum(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        out.fill(0)
        for w, tmp, (lo, hi) in zip(self.weights, self.tmp, self.slices, strict=True):
            np.multiply(w, x[hi], out=tmp)
            out[lo] += tmp
            np.multiply(w, x[lo], out=tmp)
            out[hi] += tmp
        return out

    def subtract_neighbours(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        for w, tmp, (lo, hi) in zip(self.weights, self.tmp, self.slices, strict=True):
            np.multiply(w, x[hi], out=tmp)
            out[lo] -= tmp
            np.multiply(w, x[lo], out=tmp)
            out[hi] -= tmp
        return out

    def degree(self, shape: tuple[int, ...]) -> np.ndarray:
        d = np.zeros(shape, np.float32)
        for w, (lo, hi) in zip(self.weights, self.slices, strict=True):
            d[lo] += w
            d[hi] += w
        return d


def _unknown_box(unknown: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the unknowns grown by one voxel (their seeded neighbours), clipped to the array."""
    box = []
    for axis in range(3):
        any_other = unknown.any(axis=tuple(a for a in range(3) if a != axis))
        idx = np.flatnonzero(any_other)
        box.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, unknown.shape[axis])))
    return tuple(box)


def _coarse_solution(
    image: np.ndarray,
    seeds: np.ndarray,
    beta: float,
    tol: float,
    spacing: np.ndarray | None,
    std: float,
    prior: np.ndarray | None,
    prior_weight: float,
    backend: str,
    any_seed: bool = False,
) -> np.ndarray:
    """The solve on a 2× coarser grid (2×2×2 means; a block is a seed only if all its voxels agree, or with
    ``any_seed`` if its seeds agree), upsampled."""
    shape = np.asarray(image.shape)
    even = tuple(slice(0, int(n - n % 2)) for n in shape)
    cshape = tuple(int(n // 2) for n in shape)

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[even].reshape(cshape[0], 2, cshape[1], 2, cshape[2], 2)

    coarse_image = blocks(image.astype(np.float32)).mean(axis=(1, 3, 5))
    b = blocks(seeds)
    if any_seed:  # a block with seeds of one label only is that seed (thin seed layers survive)
        has_fg = np.any(b == FOREGROUND, axis=(1, 3, 5))
        has_bg = np.any(b == BACKGROUND, axis=(1, 3, 5))
        coarse_seeds = np.where(has_fg & ~has_bg, FOREGROUND, np.where(has_bg & ~has_fg, BACKGROUND, UNKNOWN))
        coarse_seeds = coarse_seeds.astype(np.int8)
    else:
        first = b[:, :1, :, :1, :, :1]
        agree = np.all(b == first, axis=(1, 3, 5))
        coarse_seeds = np.where(agree, first[:, 0, :, 0, :, 0], UNKNOWN).astype(np.int8)
    coarse = np.full(image.shape, 0.5, np.float32)
    if not ((coarse_seeds == FOREGROUND).any() and (coarse_seeds == BACKGROUND).any()):
        return coarse
    sp = None if spacing is None else np.asarray(spacing, float) * 2.0
    coarse_prior = None if prior is None else blocks(np.asarray(prior, np.float32)).mean(axis=(1, 3, 5))
    result = random_walker(
        coarse_image,
        coarse_seeds,
        beta=beta,
        tol=tol,
        spacing=sp,
        intensity_std=std,
        prior=coarse_prior,
        prior_weight=prior_weight,
        backend=backend,
    )
    up = np.repeat(np.repeat(np.repeat(result.probability, 2, axis=0), 2, axis=1), 2, axis=2)
    coarse[even] = up
    return coarse


def check_seeds(seeds: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    seeds = np.asarray(seeds)
    if seeds.shape != tuple(image_shape):
        raise InputError(f"Seeds {seeds.shape} and image {tuple(image_shape)} must have the same shape.")
    if seeds.ndim != 3:
        raise InputError(f"The random walker needs a 3D image, got {seeds.ndim}D.")
    if not (seeds == FOREGROUND).any():
        raise InputError("The random walker got no foreground seed; there is nothing to grow from.")
    if not (seeds == BACKGROUND).any():
        raise InputError("The random walker got no background seed; every voxel would be foreground.")
    return seeds


_F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_I64P = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_I64, _F, _D = ctypes.c_int64, ctypes.c_float, ctypes.c_double


def _load_library(path: Path) -> ctypes.CDLL:
    """Load with OpenMP threads that sleep, not spin, between parallel loops (unless the user chose otherwise).

    Measured on the 2 shared cores: with the default spin-wait, a second busy process made the CG 4× slower
    than one thread (17–28 vs 3.3–4.5 ns/voxel/iteration); passive waiting kept it at 4.2–5.4. libgomp reads
    the variable once, when it is loaded, so it is set only around the load.
    """
    saved = os.environ.get("OMP_WAIT_POLICY")
    if saved is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return ctypes.CDLL(str(path))
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


@cache
def _kernel() -> ctypes.CDLL | None:
    """The compiled kernel next to this file (built by ``pip install``), or None where it was not built."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_rw_kernel{suffix}"
        if not path.is_file():
            continue
        try:
            lib = _load_library(path)
            lib.rw_kernel_version()
        except (OSError, AttributeError):
            continue
        lib.rw_edge_weights.argtypes = [_I64, _I64, _I64, _F32, _F, _F, _F, _F, _F32, _F32, _F32]
        lib.rw_edge_weights.restype = None
        lib.rw_setup.argtypes = [_I64, _I64, _I64, _F32, _F32, _F32, _U8, _F, _F32, _F32]
        lib.rw_setup.restype = None
        lib.rw_cg.argtypes = [
            *(_I64, _I64, _I64, _F32, _F32, _F32, _F, _F32, _F32, _F32, _F32, _F32, _F32),
            *(_D, ctypes.c_int, ctypes.POINTER(_D), ctypes.POINTER(_D)),
        ]
        lib.rw_cg.restype = ctypes.c_int
        lib.rw_kernel_threads.restype = ctypes.c_int
        if lib.rw_kernel_version() >= 2:
            lib.rw_cg_list.argtypes = [
                *(_I64, _I32P, _F32, _F32, _F32, _F32, _F32, _F32, _F32),
                *(_D, ctypes.c_int, ctypes.POINTER(_D), ctypes.POINTER(_D)),
            ]
            lib.rw_cg_list.restype = ctypes.c_int
            lib.geo_sweeps.argtypes = [_I64, _I64, _I64, _F32, _F, _F, _F, _F, _F, _F32, ctypes.c_int]
            lib.geo_sweeps.restype = None
        if lib.rw_kernel_version() >= 3:
            lib.rw_list_setup.argtypes = [
                *(_I64, _I64, _I64, _F32, _I32P, _I64P, _I64, _F32, _F, _F, _F, _F, _F),
                *(ctypes.c_void_p, _I32P, _F32, _F32, _F32),
            ]
            lib.rw_list_setup.restype = None
        return lib
    return None


def list_kernel() -> ctypes.CDLL | None:
    """The compiled kernel if it has the list solver and the geodesic sweeps (version 2), else None.

    A kernel built before version 2 still serves the dense solver; the list solver and the sweeps then run in
    numpy (same algorithm, same order of updates)."""
    lib = _kernel()
    return lib if lib is not None and lib.rw_kernel_version() >= 2 else None


def available_backends() -> list[str]:
    """Backends usable here, preferred first."""
    return (["compiled"] if _kernel() is not None else []) + ["numpy"]


def _choose_backend(backend: str) -> str:
    if backend == "auto":
        backend = os.environ.get("WEAKANNOTATE_RW_BACKEND", "auto")
    if backend == "auto":
        return available_backends()[0]
    if backend not in ("compiled", "numpy"):
        raise InputError(f"Unknown random-walker backend {backend!r}; use 'auto', 'compiled' or 'numpy'.")
    if backend == "compiled" and _kernel() is None:
        raise InputError("The compiled random-walker kernel is not built here; reinstall with a C compiler.")
    return backend


def _solve_compiled(
    image: np.ndarray,
    unknown: np.ndarray,
    foreground: np.ndarray,
    x0: np.ndarray | None,
    scales: np.ndarray,
    gamma: float,
    prior: np.ndarray | None,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float, float]:
    """The fused C solve on a copy padded by one seeded voxel per side; returns x, iterations, ‖r‖, ‖b‖."""
    lib = _kernel()
    assert lib is not None
    m = image.shape
    shape = tuple(n + 2 for n in m)
    inner = (slice(1, -1),) * 3
    wz, wy, wx = (np.zeros(shape, np.float32) for _ in range(3))
    data = np.ascontiguousarray(image, dtype=np.float32)
    lib.rw_edge_weights(*m, data, *(float(v) for v in scales), _EPS, wz, wy, wx)
    label = np.full(shape, BACKGROUND, np.uint8)
    label[inner] = np.where(unknown, UNKNOWN, np.where(foreground, FOREGROUND, BACKGROUND))
    inv_d = np.zeros(shape, np.float32)
    b = np.zeros(shape, np.float32)
    lib.rw_setup(*shape, wz, wy, wx, label, float(gamma), inv_d, b)
    if gamma > 0 and prior is not None:
        b[inner] += np.float32(gamma) * np.where(unknown, prior, np.float32(0)).astype(np.float32)
    x = np.zeros(shape, np.float32)
    if x0 is not None:
        x[inner] = np.where(unknown, x0, np.float32(0))
    r, p, ap = (np.empty(shape, np.float32) for _ in range(3))
    res, b_norm = _D(), _D()
    iterations = lib.rw_cg(
        *shape, wz, wy, wx, float(gamma), inv_d, b, x, r, p, ap, tol, max_iter, ctypes.byref(res), ctypes.byref(b_norm)
    )
    return x[inner], int(iterations), res.value, b_norm.value


def _solve_numpy(
    image: np.ndarray,
    unknown: np.ndarray,
    fixed: np.ndarray,
    x0: np.ndarray | None,
    scales: np.ndarray,
    gamma: float,
    prior: np.ndarray | None,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float, float]:
    """The same Jacobi-preconditioned CG with numpy array passes; returns x, iterations, ‖r‖, ‖b‖."""
    data = np.asarray(image, dtype=np.float32)
    weights = []
    for axis in range(3):
        d = np.diff(data, axis=axis)
        np.square(d, out=d)
        d *= np.float32(scales[axis])
        np.exp(d, out=d)
        d += np.float32(_EPS)
        weights.append(d)
    stencil = _Stencil(weights)
    shape = unknown.shape
    umask = unknown.astype(np.float32)
    degree = stencil.degree(shape)
    if gamma > 0:
        degree += np.float32(gamma)
    inv_d = umask / degree  # 1/degree on unknowns, 0 on seeds

    def apply(p: np.ndarray, out: np.ndarray) -> np.ndarray:
        # A p = D p − W p on the unknowns; p is zero on seeds.
        np.multiply(degree, p, out=out)
        stencil.subtract_neighbours(p, out)
        out *= umask
        return out

    scratch = np.empty(shape, np.float32)
    b = stencil.neighbour_sum(fixed, np.empty(shape, np.float32))
    if gamma > 0 and prior is not None:
        b += np.float32(gamma) * np.asarray(prior, np.float32)
    b *= umask
    b_norm = float(np.linalg.norm(b.ravel()))
    x = np.zeros(shape, np.float32)
    if x0 is not None:
        np.multiply(x0, umask, out=x)
    if b_norm == 0.0:
        x.fill(0)
        return x, 0, 0.0, 0.0
    ap = np.empty(shape, np.float32)
    r = b - apply(x, ap) if x0 is not None else b.copy()
    threshold = tol * b_norm
    z = r * inv_d
    p = z.copy()
    rz = float(np.vdot(r.ravel(), z.ravel()))
    res = float(np.linalg.norm(r.ravel()))
    iterations = 0
    rf, zf, pf, af = r.ravel(), z.ravel(), p.ravel(), ap.ravel()
    while res > threshold and iterations < max_iter:
        apply(p, ap)
        pap = float(np.dot(pf, af))
        if pap <= 0:
            break
        alpha = np.float32(rz / pap)
        np.multiply(p, alpha, out=scratch)
        x += scratch
        np.multiply(ap, alpha, out=scratch)
        r -= scratch
        iterations += 1
        res = float(np.sqrt(max(float(np.dot(rf, rf)), 0.0)))
        if res <= threshold:
            break
        np.multiply(r, inv_d, out=z)
        rz_new = float(np.dot(rf, zf))
        beta_cg = np.float32(rz_new / rz)
        rz = rz_new
        p *= beta_cg
        p += z
    return x, iterations, res, b_norm


def random_walker(
    image: np.ndarray,
    seeds: np.ndarray,
    *,
    beta: float = 130.0,
    tol: float = 1e-3,
    spacing: np.ndarray | None = None,
    x0: np.ndarray | None = None,
    intensity_std: float | None = None,
    max_iter: int = 2000,
    coarse_to_fine: int = 200_000,
    tol_size: int = 250_000,
    prior: np.ndarray | None = None,
    prior_weight: float = 0.0,
    backend: str = "auto",
    band_above: int = 0,
    band_width: int = 3,
) -> RandomWalkerResult:
    """Foreground probability of every voxel given ``seeds`` (0 unknown, 1 foreground, 2 background).

    ``spacing`` (per array axis) divides intensity differences as scikit-image's ``spacing`` does (None = 1);
    ``x0`` is a previous foreground probability on the same grid to start from. Without one, and with more
    than ``coarse_to_fine`` unknowns, the system is first solved on a grid of half the resolution and that
    solution starts the full-resolution solve (same stopping test, so the same answer; 2–3× faster).
    ``prior`` (image's shape, P(foreground) from intensity, in [0, 1]) with ``prior_weight`` γ > 0 adds Grady's
    prior-model term. ``backend``: "auto" (compiled when built), "compiled" or "numpy".

    With more than ``tol_size`` unknowns the tolerance is tightened to ``tol·sqrt(tol_size / unknowns)`` (0 = off):
    ``‖e‖ ≤ ‖r‖/λ_min`` with λ_min ~ 1/L² for a box of side L, so at a fixed relative residual the per-voxel
    (RMS) error of x grows like sqrt(unknowns); a warm start (coarse grid, previous click) leaves mostly smooth
    error, which the residual sees least. Measured on the 2.7 M-unknown organ box (docs/extreme_points.md):
    at tol 1e-3 the mask from the coarse start had Dice 0.9895 with the tol-1e-6 solution (scikit-image from
    x = 0: 0.9942); with the scaled tol (3.1e-4) 0.9974, for 26 % more iterations (188 vs 149).

    Above ``band_above`` unknowns (0 = never) and without ``x0``, only the coarse grid is solved everywhere: the
    full resolution is solved within ``band_width`` voxels of the coarse answer's boundary (P = 0.5), with the
    coarse values fixed elsewhere (:func:`solve_unknowns`, whose cost follows the unknowns). On an organ's box
    most unknowns are far from the boundary, where the coarse answer is the answer.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"The random walker needs a 3D image, got {image.ndim}D.")
    seeds = check_seeds(seeds, image.shape)
    chosen = _choose_backend(backend)
    std = float(np.std(image, dtype=np.float64)) if intensity_std is None else float(intensity_std)
    if not np.isfinite(std) or std <= 0:
        std = 1.0  # a constant image: every weight is 1, as scikit-image gives up to eps
    gamma = float(prior_weight) if prior is not None else 0.0
    if prior is not None and np.shape(prior) != image.shape:
        raise InputError(f"Prior {np.shape(prior)} must have the image's shape {image.shape}.")
    full = np.where(seeds == FOREGROUND, np.float32(1), np.float32(0)).astype(np.float32)
    unknown_full = seeds == UNKNOWN
    n_unknown = int(unknown_full.sum())
    if n_unknown == 0:
        return RandomWalkerResult(full, 0, True, 0.0, 0, (0, 0, 0), chosen)

    box = _unknown_box(unknown_full)
    unknown = unknown_full[box]
    shape = unknown.shape
    if x0 is None and band_above and n_unknown > band_above and min(shape) >= 8:
        coarse = _coarse_solution(
            image[box], seeds[box], beta, tol, spacing, std, prior, prior_weight, chosen, any_seed=True
        )
        inside = coarse > 0.5
        r = np.full(3, band_width)
        uncertain = dilate(inside, r) & ~erode(inside, r) & unknown
        fixed = np.where(unknown & ~uncertain, coarse, full[box])
        sub_prior = None if prior is None else np.asarray(prior, np.float32)[box]
        result = solve_unknowns(
            image[box], uncertain, fixed, beta=beta, tol=tol, spacing=spacing, x0=fixed, intensity_std=std,
            max_iter=max_iter, tol_size=tol_size, prior=sub_prior, prior_weight=prior_weight, backend=chosen,
        )  # fmt: skip
        full[box] = result.probability
        return RandomWalkerResult(
            full, result.iterations, result.converged, result.relative_residual, n_unknown, shape, result.backend
        )
    if x0 is None and coarse_to_fine and n_unknown > coarse_to_fine and min(shape) >= 8:
        x0 = np.zeros(image.shape, np.float32)
        x0[box] = _coarse_solution(image[box], seeds[box], beta, tol, spacing, std, prior, prior_weight, chosen)
    if x0 is not None:
        x0 = np.asarray(x0, dtype=np.float32)
        if x0.shape != image.shape:
            raise InputError(f"Warm start {x0.shape} must have the image's shape {image.shape}.")
        x0 = x0[box]
    if tol_size and n_unknown > tol_size:  # after the coarse solve, which scales its own
        tol = tol * float(np.sqrt(tol_size / n_unknown))
    sp = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    scales = -beta / (10.0 * std) / sp**2
    sub_prior = None if prior is None else np.asarray(prior, np.float32)[box]
    if chosen == "compiled":
        x, iterations, res, b_norm = _solve_compiled(
            image[box], unknown, seeds[box] == FOREGROUND, x0, scales, gamma, sub_prior, tol, max_iter
        )
    else:
        x, iterations, res, b_norm = _solve_numpy(
            image[box], unknown, full[box], x0, scales, gamma, sub_prior, tol, max_iter
        )
    np.clip(x, 0.0, 1.0, out=x)
    full[box] = np.where(unknown, x, full[box])
    converged = res <= tol * b_norm
    return RandomWalkerResult(full, iterations, converged, res / b_norm if b_norm else 0.0, n_unknown, shape, chosen)


# --- the list solver: unknowns only -----------------------------------------------------------------------


def _list_system(
    image: np.ndarray,
    unknown: np.ndarray,
    fixed: np.ndarray,
    scales: np.ndarray,
    gamma: float,
    prior: np.ndarray | None,
    compiled: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices, neighbour lists (−1 = fixed or outside), edge weights, diagonal and right-hand side
    (compiled when the kernel has ``rw_list_setup``, version 3; numpy otherwise, the same lists and values)."""
    flat = np.flatnonzero(unknown.ravel())
    n = flat.size
    index = np.full(unknown.size, -1, np.int32)
    index[flat] = np.arange(n, dtype=np.int32)
    lib = list_kernel() if compiled else None
    if lib is not None and lib.rw_kernel_version() >= 3:
        nbr = np.empty((n, 6), np.int32)
        weights = np.empty((n, 6), np.float32)
        diag = np.empty(n, np.float32)
        b = np.empty(n, np.float32)
        data = np.ascontiguousarray(image, np.float32)
        values = np.ascontiguousarray(fixed, np.float32)
        p_u = None
        if gamma > 0 and prior is not None:
            p_u = np.ascontiguousarray(np.asarray(prior, np.float32).ravel()[flat])
        lib.rw_list_setup(
            *unknown.shape, data, index, flat, n, values, *(float(v) for v in scales), _EPS, float(gamma),
            None if p_u is None else p_u.ctypes.data, nbr, weights, diag, b,
        )  # fmt: skip
        return flat, nbr, weights, diag, b
    coords = np.unravel_index(flat, unknown.shape)
    strides = np.array([unknown.shape[1] * unknown.shape[2], unknown.shape[2], 1], np.int64)
    data = np.asarray(image, np.float32).ravel()
    values = np.asarray(fixed, np.float32).ravel()
    own = data[flat]
    nbr = np.full((n, 6), -1, np.int32)
    weights = np.zeros((n, 6), np.float32)
    diag = np.full(n, np.float32(gamma), np.float32)
    b = np.zeros(n, np.float32)
    q = 0
    for axis in range(3):
        for sign in (1, -1):
            limit = unknown.shape[axis] - 1 if sign > 0 else 0
            ok = coords[axis] != limit
            src = np.flatnonzero(ok)
            other = flat[src] + sign * strides[axis]
            d = data[other] - own[src]
            w = np.exp(np.float32(scales[axis]) * d * d) + np.float32(_EPS)
            w = w.astype(np.float32)
            diag[src] += w
            m = index[other]
            is_unknown = m >= 0
            nbr[src[is_unknown], q] = m[is_unknown]
            weights[src, q] = np.where(is_unknown, w, np.float32(0))
            seeded = ~is_unknown
            b[src[seeded]] += w[seeded] * values[other[seeded]]
            q += 1
    if gamma > 0 and prior is not None:
        b += np.float32(gamma) * np.asarray(prior, np.float32).ravel()[flat]
    return flat, nbr, weights, diag, b


def _cg_list_numpy(
    nbr: np.ndarray, weights: np.ndarray, diag: np.ndarray, b: np.ndarray, x: np.ndarray, tol: float, max_iter: int
) -> tuple[int, float, float]:
    """rw_cg_list in numpy (the same Jacobi-preconditioned CG); x is updated in place."""
    n = b.size
    gather = np.where(nbr >= 0, nbr, n)  # index n reads a zero

    def apply(v: np.ndarray) -> np.ndarray:
        ext = np.append(v, np.float32(0))
        return diag * v - np.einsum("uq,uq->u", weights, ext[gather], dtype=np.float32)

    b_norm = float(np.linalg.norm(b))
    if b_norm == 0.0:
        x.fill(0)
        return 0, 0.0, 0.0
    r = b - apply(x)
    z = r / diag
    p = z.copy()
    rz = float(np.dot(r, z))
    res = float(np.linalg.norm(r))
    it = 0
    while res > tol * b_norm and it < max_iter:
        ap = apply(p)
        pap = float(np.dot(p, ap))
        if pap <= 0:
            break
        alpha = np.float32(rz / pap)
        x += alpha * p
        r -= alpha * ap
        it += 1
        res = float(np.linalg.norm(r))
        if res <= tol * b_norm:
            break
        z = r / diag
        rz_new = float(np.dot(r, z))
        p *= np.float32(rz_new / rz)
        p += z
        rz = rz_new
    return it, res, b_norm


def solve_unknowns(
    image: np.ndarray,
    unknown: np.ndarray,
    fixed: np.ndarray,
    *,
    beta: float = 130.0,
    tol: float = 1e-3,
    spacing: np.ndarray | None = None,
    x0: np.ndarray | None = None,
    intensity_std: float | None = None,
    max_iter: int = 2000,
    tol_size: int = 250_000,
    prior: np.ndarray | None = None,
    prior_weight: float = 0.0,
    backend: str = "auto",
) -> RandomWalkerResult:
    """The random walker on the voxels ``unknown`` only, every other voxel fixed at ``fixed`` (any value in [0, 1]).

    The same energy, weights, prior term and stopping test as :func:`random_walker`, but the CG runs over a
    list of the unknowns with their neighbour indices, so its cost follows the unknowns rather than their
    bounding box: a band around a surface (corrective clicks, the fine level of a coarse-to-fine solve) costs
    the band. ``fixed`` may hold fractional values (a coarse solution as boundary condition). ``x0``: start.
    """
    image = np.asarray(image)
    unknown = np.asarray(unknown, bool)
    if image.ndim != 3 or unknown.shape != image.shape or np.shape(fixed) != image.shape:
        raise InputError(f"Image {image.shape}, unknowns {unknown.shape} and fixed values {np.shape(fixed)} differ.")
    chosen = _choose_backend(backend)
    std = float(np.std(image, dtype=np.float64)) if intensity_std is None else float(intensity_std)
    if not np.isfinite(std) or std <= 0:
        std = 1.0
    gamma = float(prior_weight) if prior is not None else 0.0
    full = np.array(fixed, dtype=np.float32)
    n = int(unknown.sum())
    if n == 0:
        return RandomWalkerResult(full, 0, True, 0.0, 0, (0, 0, 0), chosen)
    sp = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    scales = -beta / (10.0 * std) / sp**2
    flat, nbr, weights, diag, b = _list_system(image, unknown, full, scales, gamma, prior, chosen == "compiled")
    if tol_size and n > tol_size:
        tol = tol * float(np.sqrt(tol_size / n))
    x = np.zeros(n, np.float32) if x0 is None else np.ascontiguousarray(np.asarray(x0, np.float32).ravel()[flat])
    lib = list_kernel() if chosen == "compiled" else None
    if lib is not None:
        r, p, ap = (np.empty(n, np.float32) for _ in range(3))
        res, b_norm = _D(), _D()
        iterations = lib.rw_cg_list(
            n, nbr, weights, diag, b, x, r, p, ap, float(tol), int(max_iter), ctypes.byref(res), ctypes.byref(b_norm)
        )
        res_v, b_v = res.value, b_norm.value
    else:
        iterations, res_v, b_v = _cg_list_numpy(nbr, weights, diag, b, x, tol, max_iter)
        chosen = "numpy"
    np.clip(x, 0.0, 1.0, out=x)
    full.ravel()[flat] = x
    box = _unknown_box(unknown)
    shape = tuple(s.stop - s.start for s in box)
    converged = res_v <= tol * b_v
    return RandomWalkerResult(full, int(iterations), converged, res_v / b_v if b_v else 0.0, n, shape, chosen)
