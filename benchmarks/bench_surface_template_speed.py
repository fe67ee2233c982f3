"""Surface template speed: one update after an added / moved point, and rasterisation.

    .venv/bin/python benchmarks/bench_surface_template_speed.py

For 2,562 and 10,242 vertices (BraTS pat0001 whole tumour, 50 simulated points, then one added / one moved),
times the update as shipped (cached factor + Woodbury, plus the fold check) against the reference it replaces
in the same run: a sparse LU (``scipy.sparse.linalg.splu``) of the whole system per update, and also a
Jacobi-preconditioned CG warm-started from the previous solution (the plan in DESIGN.md). Then rasterising
onto 256×256×128 and onto the real grids. Median of repeats; prints the load average.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakAnnotate"))

from WeakAnnotateLib.core.geometry import Geometry  # noqa: E402
from WeakAnnotateLib.evaluation import simulate  # noqa: E402
from WeakAnnotateLib.files.cases import default_data_dir, find_case  # noqa: E402
from WeakAnnotateLib.files.image_io import read_image, read_mask  # noqa: E402
from WeakAnnotateLib.methods.surface_template.active_surface import (  # noqa: E402
    ActiveSurface,
    SurfaceParams,
    block_cg,
    template_ellipsoid,
    template_mesh,
)
from WeakAnnotateLib.methods.surface_template.rasterize import rasterize_mesh  # noqa: E402


def _median_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def _system(surface: ActiveSurface, points: np.ndarray, vertices: np.ndarray):
    """The full sparse system (P + w·D) d = rhs of one outer iteration, as the reference assembles it."""
    centre, axes, semi = template_ellipsoid(points, surface.params.min_axis_ratio)
    template = centre + (surface.unit_vertices * semi) @ axes.T
    nearest = cKDTree(vertices).query(points)[1]
    n = len(template)
    counts = np.bincount(nearest, minlength=n).astype(float)
    matrix = (surface._mesh.regulariser + sp.diags(surface._w * counts)).tocsc()
    rhs = np.zeros((n, 3))
    np.add.at(rhs, nearest, surface._w * (points - template[nearest]))
    return matrix, rhs, template


def reference_lu_update(surface: ActiveSurface, points: np.ndarray) -> np.ndarray:
    vertices = surface.vertices
    for _ in range(surface.params.iterations):
        matrix, rhs, template = _system(surface, points, vertices)
        vertices = template + splu(matrix).solve(rhs)
    return vertices


def cg_update(surface: ActiveSurface, points: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, int]:
    vertices, total = previous, 0
    for _ in range(surface.params.iterations):
        matrix, rhs, template = _system(surface, points, vertices)
        d, iterations = block_cg(matrix.tocsr(), rhs, previous - template, 1e-5, 5000)
        vertices, total = template + d, total + iterations
    return vertices, total


def main() -> None:
    data = default_data_dir()
    case = find_case("brats_brats_2013_pat0001_1_Flair", data)
    image = read_image(case.image)
    mask = read_mask(case.mask, grid=image.geometry) != 0
    points = simulate.surface_points(mask, image.geometry, 52, seed=0)
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}, cpus: {os.cpu_count()}")
    print(f"case {case.id}: 50 points, then one added / one moved; {image.geometry.describe()}")
    print()
    header = f"{'vertices':>8}  {'edit':<6} {'ours ms':>8} {'(solve':>7} {'check)':>7} {'LU/update ms':>13}"
    print(header + f" {'ratio':>6} {'CG warm ms':>11} {'CG its':>7}")
    setup_s: list[str] = []
    for level in (4, 5):
        params = SurfaceParams(subdivisions=level)
        t = time.perf_counter()  # once per level and process: factorisation + the orbit representatives' columns
        mesh = template_mesh(level, params.template_weight)
        mesh.ensure_columns(np.arange(len(mesh.unit_vertices)))
        setup_s.append(f"{len(mesh.unit_vertices)} vertices {time.perf_counter() - t:.2f} s")
        for edit in ("add", "move"):
            samples, solve, check = [], [], []
            for repeat in range(3):
                s = ActiveSurface(points[:50], geometry=image.geometry, params=params)
                base = s.vertices.copy()
                p = points[:51] if edit == "add" else np.vstack([points[:50]])
                if edit == "move":
                    p = p.copy()
                    p[7 + repeat] = points[51]
                t = time.perf_counter()
                s.set_points(p)
                s.update()
                samples.append(time.perf_counter() - t)
                solve.append(s.stats["solve_s"])
                check.append(s.stats["check_s"])
            ours = 1000 * statistics.median(samples)
            lu = _median_ms(lambda s=s, p=p: reference_lu_update(s, p), 3)
            its = [0]

            def run_cg(s=s, p=p, base=base, its=its) -> None:
                its[0] = cg_update(s, p, base)[1]

            cg_ms = _median_ms(run_cg, 3)
            print(
                f"{len(base):>8}  {edit:<6} {ours:>8.1f} {1000 * statistics.median(solve):>7.1f} "
                f"{1000 * statistics.median(check):>7.1f} {lu:>13.1f} {lu / ours:>6.1f} {cg_ms:>11.1f} {its[0]:>7}"
            )
    print("one-off setup per level (factor + symmetry columns): " + "; ".join(setup_s))
    print()
    print(f"{'rasterise onto':<44} {'vertices':>8} {'ms':>7}")
    surfaces = {lvl: ActiveSurface(points[:50], geometry=image.geometry, params=SurfaceParams(subdivisions=lvl))
                for lvl in (4, 5)}  # fmt: skip
    synthetic = Geometry.from_spacing_origin_direction((1.0, 1.0, 1.0), (0, 0, 0), None, (128, 256, 256))
    for s in surfaces.values():
        # The same surface scaled to fill most of the synthetic 256×256×128 grid (a large organ).
        v = s.vertices - s.vertices.mean(axis=0)
        v = v / np.abs(v).max(axis=0) * np.array([100.0, 100.0, 50.0]) + np.array([128.0, 128.0, 64.0])
        ms = _median_ms(lambda v=v, s=s: rasterize_mesh(v, s.faces, synthetic))
        print(f"{'256x256x128, 1 mm, surface filling ~60 %':<44} {len(v):>8} {ms:>7.1f}")
    for case_id in ("brats_brats_2013_pat0001_1_Flair", "ibsi_STS_001_PET", "ts_ct_sm"):
        c = find_case(case_id, data)
        img = read_image(c.image)
        m = read_mask(c.mask, label=5 if case_id == "ts_ct_sm" else None, grid=img.geometry)  # 5 = liver
        pts = simulate.surface_points(m, img.geometry, 50, seed=0)
        for level in (4, 5):
            s = ActiveSurface(pts, geometry=img.geometry, params=SurfaceParams(subdivisions=level))
            ms = _median_ms(lambda s=s: s.rasterize())
            label = f"{case_id} ({img.geometry.describe()})"
            print(f"{label[:44]:<44} {len(s.vertices):>8} {ms:>7.1f}")
    print()
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
