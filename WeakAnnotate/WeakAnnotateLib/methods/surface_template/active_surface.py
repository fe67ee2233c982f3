"""Active surface: a sphere template deformed through a few points clicked on an object's surface.

The template is an icosphere (genus 0; subdivision 4 = 2,562 vertices, 5 = 10,242) placed as the points'
ellipsoid: centre = centroid, axes = the points' principal axes, semi-axes = sqrt(3·variance) along each (a
sphere's surface points have variance r²/3 per axis), the shortest kept ≥ ``min_axis_ratio`` of the longest
so that points bunched on one side give a flattened ellipsoid, not a needle. The template's displacement
``d`` is then solved for (``v = v0 + d``)::

    min_d  ‖L d‖² + ε‖d‖² + w Σ_j ‖v0[c_j] + d[c_j] − p_j‖²

with ``L`` the uniform graph Laplacian (a smooth *displacement*, so the template's shape is kept where there
are no points), ``c_j`` the vertex matched to point ``p_j`` (by direction in the template's frame on the first
outer iteration, then nearest vertex on the current surface) and ε a tiny pull towards the template that makes
the system definite. ``LᵀL + εI`` depends only on the icosphere level, so it is factorised once and the data
term is a low-rank (Woodbury) update using cached columns of its inverse (:class:`TemplateMesh`): exact, so a
warm update equals a cold solve. (Jacobi CG, :func:`block_cg`, needed 270–1,215 iterations; see the docs.)

Every accepted surface is checked (:func:`surface_problems`): each edge shared by exactly two faces and
V − E + F = 2 (the topology never changes, but it is checked), positive enclosed volume, no degenerate face, no
pair of adjacent faces folded onto each other, and no mesh edge crossing a triangle it does not touch
(exhaustive over all pairs whose bounding spheres overlap, not a sample). A point set whose surface fails is
refused with :class:`InputError` and the previous surface is kept.

Image edges are not used (``edge_weight`` is reserved and must be 0): the template is what the paper feeds
Weak-Net, and Weak-Net's reconstruction loss is what pulls boundaries to the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

from ...core.errors import InputError
from ...core.geometry import Geometry
from .rasterize import mesh_polydata, rasterize_mesh

MIN_POINTS = 5
"""Fewest points accepted: 4 non-coplanar points only make a tetrahedron; the fifth is the first that says
anything about the shape beyond it, and the PCA ellipsoid of 5 spread points is well defined. 25+ work best."""


@dataclass(frozen=True)
class SurfaceParams:
    """Active-surface parameters (defaults measured in docs/surface_template.md)."""

    subdivisions: int = 4  # icosphere level: 4 → 2,562 vertices, 5 → 10,242
    data_weight: float = 10.0  # w at 2,562 vertices (scaled by 2,562/V so the stiffness is level-independent)
    template_weight: float = 1e-4  # ε at 2,562 vertices (× (2562/V)²): pull towards the template, makes LᵀL definite
    iterations: int = 3  # outer iterations: the first matches points by direction, later ones by nearest vertex
    radial_iterations: int = 1  # how many of them match by direction from the template's centre
    tol: float = 1e-5  # CG relative residual
    max_cg_iterations: int = 2000
    min_axis_ratio: float = 0.3  # shortest template semi-axis ≥ this × the longest
    coplanar_ratio: float = 0.02  # points thinner than this × their extent (or half a voxel) are "coplanar"
    edge_weight: float = 0.0  # image-edge pull: reserved, off (see module docstring)

    def validate(self) -> None:
        if self.subdivisions not in range(1, 7):
            raise InputError(f"Subdivision level must be 1..6 (4 → 2,562 vertices), got {self.subdivisions}.")
        if self.data_weight <= 0 or self.template_weight <= 0:
            raise InputError("The data and template weights must be > 0.")
        if self.iterations < 1:
            raise InputError(f"At least one iteration is needed, got {self.iterations}.")
        if self.edge_weight != 0.0:
            raise InputError("Image-edge forces are not implemented; keep edge_weight at 0.")


# --- mesh ---------------------------------------------------------------------------------------------


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: vertices (V, 3), outward-oriented triangles (F, 3); V = 10·4^s + 2."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=float,
    )  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = v[unique[:, 0]] + v[unique[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inverse.reshape(3, -1).T + len(v)  # midpoints of edges (01, 12, 20) of each face
        v = np.concatenate([v, mid])
        a, b, c = f.T
        ab, bc, ca = m.T
        f = np.concatenate([np.stack(x, axis=1) for x in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    return v, f


def mesh_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and how many faces share each."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return unique, counts


def uniform_laplacian(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """L = I − D⁻¹A over the mesh graph: (L d)_i = d_i − mean of d over i's neighbours."""
    edges, _ = mesh_edges(faces)
    i, j = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sp.identity(n_vertices, format="csr") - sp.diags(1.0 / degree) @ adjacency).tocsr()


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = 2 × area)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return np.cross(b - a, c - a)


def enclosed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (mm³; positive for an outward-oriented closed surface)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def topology_problems(faces: np.ndarray, n_vertices: int) -> list[str]:
    """Closed 2-manifold of genus 0: every edge in exactly two faces and Euler characteristic V − E + F = 2."""
    edges, counts = mesh_edges(faces)
    problems = []
    if not np.all(counts == 2):
        problems.append(f"{int(np.sum(counts != 2))} edges are not shared by exactly two faces (surface not closed)")
    euler = n_vertices - len(edges) + len(faces)
    if euler != 2:
        problems.append(f"Euler characteristic {euler} ≠ 2 (not a sphere)")
    return problems


def edge_triangle_crossings(vertices: np.ndarray, faces: np.ndarray, edges: np.ndarray | None = None) -> np.ndarray:
    """Pairs (edge, face) where a mesh edge crosses a triangle it shares no vertex with.

    A closed triangle mesh intersects itself (away from shared vertices) iff some edge crosses some other
    triangle, so this is an exact self-intersection test. Broad phase: every pair whose bounding spheres
    overlap (:func:`overlapping_spheres`; a pair that can cross always overlaps, so nothing is skipped);
    narrow phase: Möller–Trumbore segment–triangle, vectorised.
    """
    if edges is None:
        edges, _ = mesh_edges(faces)
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    mid, half = (a + b) / 2.0, np.linalg.norm(b - a, axis=1) / 2.0
    t0, t1, t2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    centre = (t0 + t1 + t2) / 3.0
    radius = np.max(np.stack([np.linalg.norm(t - centre, axis=1) for t in (t0, t1, t2)]), axis=0)
    ei, fi = overlapping_spheres(mid, half, centre, radius)
    f = faces[fi]
    shares = (f == edges[ei, 0:1]).any(axis=1) | (f == edges[ei, 1:2]).any(axis=1)
    ei, fi = ei[~shares], fi[~shares]
    if len(ei) == 0:
        return np.zeros((0, 2), np.int64)
    origin, direction = a[ei], b[ei] - a[ei]
    e1, e2 = t1[fi] - t0[fi], t2[fi] - t0[fi]
    h = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > 1e-12 * np.maximum(1.0, np.abs(e1).max(axis=1) ** 2 * np.abs(direction).max(axis=1))
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - t0[fi]
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    w = inv * np.einsum("ij,ij->i", direction, q)
    t = inv * np.einsum("ij,ij->i", e2, q)
    hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0) & (t < 1)
    return np.stack([ei[hit], fi[hit]], axis=1)


SIZE_QUANTILES = (0.5, 0.85, 0.97)
"""Size classes of the broad phase (quantiles of the edges' half-lengths and of the triangles' radii)."""


def overlapping_spheres(
    mid: np.ndarray, half: np.ndarray, centre: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (edge, triangle) index pairs with ‖mid_e − centre_f‖ ≤ half_e + radius_f (bounding spheres overlap).

    Exhaustive, like one KD-tree range query at the largest half + radius, but that query returned 9× more
    pairs than overlap on a deformed template (885k for 99k at 2,562 vertices: a few stretched triangles set
    the radius for all) and cost 50 of the check's 66 ms. Here edges and triangles are split into size classes
    and each pair of classes is queried at its own largest radius: the same pairs, 3–4× faster.
    """
    out_e, out_f = [], []
    edge_classes = [(i, cKDTree(mid[i]), float(half[i].max())) for i in _size_classes(half)]
    face_classes = [(j, cKDTree(centre[j]), float(radius[j].max())) for j in _size_classes(radius)]
    for ie, tree_e, he in edge_classes:
        for jf, tree_f, rf in face_classes:
            pairs = tree_e.sparse_distance_matrix(tree_f, he + rf, output_type="ndarray")
            e, f = ie[pairs["i"]], jf[pairs["j"]]
            keep = pairs["v"] <= half[e] + radius[f]
            out_e.append(e[keep])
            out_f.append(f[keep])
    if not out_e:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_e).astype(np.int64), np.concatenate(out_f).astype(np.int64)


def _size_classes(size: np.ndarray) -> list[np.ndarray]:
    """Indices of ``size`` split at :data:`SIZE_QUANTILES` (empty classes dropped)."""
    if len(size) == 0:
        return []
    which = np.searchsorted(np.quantile(size, SIZE_QUANTILES), size)
    return [idx for k in range(len(SIZE_QUANTILES) + 1) if len(idx := np.flatnonzero(which == k))]


def surface_problems(vertices: np.ndarray, faces: np.ndarray, mesh: TemplateMesh | None = None) -> list[str]:
    """Everything wrong with a deformed template as a closed, non-self-intersecting surface (empty if fine)."""
    if mesh is None:
        problems = topology_problems(faces, len(vertices))
        edges, _ = mesh_edges(faces)
        edge_faces = _edge_faces(faces)
    else:
        problems = list(mesh.topology_problems)
        edges, edge_faces = mesh.edges, mesh.edge_faces
    if not np.all(np.isfinite(vertices)):
        return problems + ["non-finite vertex positions"]
    normals = face_normals(vertices, faces)
    area = np.linalg.norm(normals, axis=1)
    if enclosed_volume(vertices, faces) <= 0:
        problems.append("the surface is turned inside out (negative volume)")
    degenerate = area <= 1e-9 * max(float(np.median(area)), 1e-300)
    if degenerate.any():
        problems.append(f"{int(degenerate.sum())} degenerate (zero-area) faces")
    # Adjacent faces folded onto each other (dihedral angle near 0°): not caught by the crossing test.
    unit = normals / np.maximum(area, 1e-300)[:, None]
    cos = np.einsum("ij,ij->i", unit[edge_faces[:, 0]], unit[edge_faces[:, 1]])
    folded = cos < -0.95
    if folded.any():
        problems.append(f"{int(folded.sum())} edges where the surface folds back onto itself")
    crossings = edge_triangle_crossings(vertices, faces, edges)
    if len(crossings):
        problems.append(f"the surface intersects itself ({len(crossings)} edge–triangle crossings)")
    return problems


def _edge_faces(faces: np.ndarray) -> np.ndarray:
    """(E, 2) the two faces on either side of each edge, edges in :func:`mesh_edges` order (closed meshes)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    order = np.lexsort(edges.T[::-1])
    return np.tile(np.arange(len(faces)), 3)[order].reshape(-1, 2)


class TemplateMesh:
    """What depends only on the icosphere level: faces, edges, and the factorised regulariser with a cache of
    its inverse's columns (the Green's function of LᵀL + εI at a vertex), shared by every surface of that level.

    The data term only touches the vertices nearest to points, so the solve is a rank-m update of this fixed
    matrix (Woodbury): an m×m dense solve with the m columns of the inverse at those vertices. Same solution as
    solving the whole sparse system, without re-factorising it.

    Columns come from the icosphere's symmetry: its 60 rotations permute the vertices and preserve the mesh
    graph, so the uniform Laplacian commutes with them and ``G[g·u, g·v] = G[u, v]``. Only one vertex per
    orbit needs a triangular solve (45 at 2,562 vertices, 173 at 10,242): any other column is a gather. Before,
    columns were solved on first use, and moving one point (which moves the template's ellipsoid, so ~40 points
    match new vertices) cost 38–48 new solves: 25 ms at 2,562 vertices and 0.2–1.6 s at 10,242.
    """

    def __init__(self, subdivisions: int, template_weight: float) -> None:
        self.unit_vertices, self.faces = icosphere(subdivisions)
        n = len(self.unit_vertices)
        self.edges, _ = mesh_edges(self.faces)
        self.unit_tree = cKDTree(self.unit_vertices)
        self.edge_faces = _edge_faces(self.faces)
        self.topology_problems = tuple(topology_problems(self.faces, n))
        self.laplacian = uniform_laplacian(self.faces, n)
        # ε is given at 2,562 vertices; ‖L d‖² of a smooth field scales like 1/V, Σ‖d‖² like V: scale by (2562/V)².
        self.epsilon = template_weight * (2562.0 / n) ** 2
        self.regulariser = (self.laplacian.T @ self.laplacian + self.epsilon * sp.identity(n)).tocsc()
        self._factor: Any = None
        # inverse[g, u] = g⁻¹·u; vertex v = rotation[v] · representative[v].
        self.inverse, self.representative, self.rotation = icosphere_symmetry(self.unit_vertices, self.unit_tree)
        self._slot = np.full(n, -1, dtype=np.int64)  # representative vertex → column in self._green, or -1
        self._green = np.zeros((n, 0))

    @property
    def factor(self) -> Any:
        if self._factor is None:
            self._factor = splu(self.regulariser, permc_spec="COLAMD")  # 2–4× faster solves than MMD here
        return self._factor

    def ensure_columns(self, vertices: np.ndarray, *, cold: bool = False) -> int:
        """Solve for the orbit representatives' columns (all again if ``cold``); returns how many were solved.

        When any is missing, all of the level's representatives are solved at once (0.2 s at 2,562 vertices,
        2–6 s at 10,242, once per process): after that no update ever waits for a triangular solve.
        """
        if cold:
            self._slot[:] = -1
            self._green = np.zeros((len(self._slot), 0))
        reps = np.unique(self.representative[vertices])
        if np.any(self._slot[reps] < 0):
            reps = np.unique(self.representative)
        missing = reps[self._slot[reps] < 0]
        if len(missing) == 0:
            return 0
        rhs = np.zeros((len(self._slot), len(missing)))
        rhs[missing, np.arange(len(missing))] = 1.0
        columns = self.factor.solve(rhs)
        self._slot[missing] = self._green.shape[1] + np.arange(len(missing))
        self._green = np.concatenate([self._green, columns], axis=1)
        return len(missing)

    def columns(self, vertices: np.ndarray) -> np.ndarray:
        """(V, m) columns of (LᵀL + εI)⁻¹ at ``vertices`` (their representatives must be cached)."""
        vertices = np.asarray(vertices, dtype=np.int64)
        rows = self.inverse[self.rotation[vertices]].T  # (V, m): g⁻¹·u for each vertex's rotation g
        return self._green[rows, self._slot[self.representative[vertices]][None, :]]


def icosphere_symmetry(unit_vertices: np.ndarray, tree: cKDTree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The icosphere's 60 rotations as vertex permutations: (inverse (60, V), representative (V,), rotation (V,)).

    ``inverse[g, u]`` is the vertex that rotation g maps onto u; each vertex v is ``rotation[v]`` applied to
    ``representative[v]`` (the smallest index in its orbit). The rotations map the base icosahedron's vertex 0
    and a neighbour onto every ordered pair of adjacent base vertices (12 × 5 = 60, the whole rotation group).
    """
    base = unit_vertices[:12]
    dots = base @ base.T
    neighbour = float(np.max(dots[0, 1:]))
    adjacent = np.argwhere(np.isclose(dots, neighbour))
    k = int(adjacent[adjacent[:, 0] == 0][0, 1])
    frame = np.stack([base[0], base[k], np.cross(base[0], base[k])], axis=1)
    forward = []
    for i, j in adjacent:
        image = np.stack([base[i], base[j], np.cross(base[i], base[j])], axis=1)
        rotation = image @ np.linalg.inv(frame)
        distance, index = tree.query(unit_vertices @ rotation.T)
        if distance.max() > 1e-9:
            raise RuntimeError("icosphere symmetry: a rotated vertex is not a vertex")  # cannot happen
        forward.append(index)
    forward_arr = np.asarray(forward, dtype=np.int64)  # (60, V): g·u
    inverse = np.empty_like(forward_arr)
    rows = np.arange(len(forward_arr))[:, None]
    inverse[rows, forward_arr] = np.arange(forward_arr.shape[1])[None, :]
    representative = forward_arr.min(axis=0)  # min over the orbit {g·v} (the group is closed under inverses)
    rotation = np.argmax(forward_arr[:, representative] == np.arange(forward_arr.shape[1])[None, :], axis=0)
    return inverse, representative, rotation


_MESHES: dict[tuple[int, float], TemplateMesh] = {}


def template_mesh(subdivisions: int, template_weight: float) -> TemplateMesh:
    """The shared :class:`TemplateMesh` of a level (built and factorised once per process)."""
    key = (int(subdivisions), float(template_weight))
    if key not in _MESHES:
        _MESHES[key] = TemplateMesh(*key)
    return _MESHES[key]


# --- points -------------------------------------------------------------------------------------------


def check_points(
    points_ras: np.ndarray, geometry: Geometry | None = None, params: SurfaceParams | None = None
) -> np.ndarray:
    """The points as (N, 3) float, or InputError: too few, outside the image, coincident or coplanar."""
    params = params or SurfaceParams()
    p = np.asarray(points_ras, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        p = p.reshape(-1, 3) if p.size % 3 == 0 else np.zeros((0, 3))
    if len(p) < MIN_POINTS:
        raise InputError(
            f"At least {MIN_POINTS} surface points are needed (4 only make a tetrahedron), got {len(p)}; "
            "25 or more spread over the whole surface work best."
        )
    if not np.all(np.isfinite(p)):
        raise InputError("A surface point has a non-finite coordinate.")
    if geometry is not None:
        geometry.ras_to_index(p, what="surface point")
    voxel = float(geometry.spacing.min()) if geometry is not None else 1.0
    spread = np.sqrt(np.linalg.eigvalsh(np.cov(p.T, bias=True)))  # ascending std-devs along principal axes
    if spread[-1] < 0.5 * voxel or len(np.unique(np.round(p / (0.5 * voxel)), axis=0)) < 4:
        raise InputError(
            f"The {len(p)} surface points (nearly) coincide: they fit in about {2 * spread[-1]:.1f} mm. "
            "Spread them over the object's surface."
        )
    centred = p - p.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    thickness = float(np.abs(centred @ normal).max())
    extent = float(np.ptp(centred @ np.linalg.svd(centred, full_matrices=False)[2][0]))
    if thickness < max(params.coplanar_ratio * extent, 0.5 * voxel):
        raise InputError(
            f"The {len(p)} surface points all lie in one plane (within {thickness:.2f} mm over {extent:.0f} mm): "
            "a surface cannot be fitted. Place points on other slices too, around the whole object."
        )
    return p


def template_ellipsoid(points: np.ndarray, min_axis_ratio: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, axes as columns, semi-axes) of the points' ellipsoid: centroid, principal axes, sqrt(3·var)."""
    centre = points.mean(axis=0)
    var, axes = np.linalg.eigh(np.cov(points.T, bias=True))
    semi = np.sqrt(3.0 * np.maximum(var, 0.0))
    semi = np.maximum(semi, min_axis_ratio * semi.max())
    if np.linalg.det(axes) < 0:
        axes[:, 0] = -axes[:, 0]  # keep it a rotation so the template stays outward-oriented
    return centre, axes, semi


# --- the active surface -------------------------------------------------------------------------------


class ActiveSurface:
    """A deformable sphere template and its points; edit the points, then :meth:`update` (warm-started)."""

    def __init__(
        self,
        points_ras: np.ndarray | None = None,
        *,
        geometry: Geometry | None = None,
        params: SurfaceParams | None = None,
    ) -> None:
        self.params = params or SurfaceParams()
        self.params.validate()
        self.geometry = geometry
        self._mesh = template_mesh(self.params.subdivisions, self.params.template_weight)
        self.faces = self._mesh.faces
        self.unit_vertices = self._mesh.unit_vertices
        self._w = self.params.data_weight * 2562.0 / len(self.unit_vertices)
        self.points = np.zeros((0, 3))
        self.vertices: np.ndarray | None = None  # the last accepted surface (RAS mm)
        self.template: np.ndarray | None = None
        self._accepted_points = np.zeros((0, 3))
        self.stats: dict[str, Any] = {}
        if points_ras is not None:
            self.points = np.asarray(points_ras, dtype=float).reshape(-1, 3).copy()
            self.update()

    # --- editing ------------------------------------------------------------------------------------
    def add_point(self, point_ras: np.ndarray) -> int:
        """Append a point (not solved until :meth:`update`); returns its index."""
        self.points = np.vstack([self.points, np.asarray(point_ras, dtype=float).reshape(1, 3)])
        return len(self.points) - 1

    def move_point(self, index: int, point_ras: np.ndarray) -> None:
        self._check_index(index)
        self.points = self.points.copy()
        self.points[index] = np.asarray(point_ras, dtype=float).reshape(3)

    def remove_point(self, index: int) -> None:
        self._check_index(index)
        self.points = np.delete(self.points, index, axis=0)

    def set_points(self, points_ras: np.ndarray) -> None:
        self.points = np.asarray(points_ras, dtype=float).reshape(-1, 3).copy()

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.points):
            raise InputError(f"There is no point {index + 1}: {len(self.points)} points are placed.")

    # --- solving ------------------------------------------------------------------------------------
    def update(self, *, cold: bool = False) -> np.ndarray:
        """Fit the template to the current points; on bad input restore the last accepted points and raise."""
        try:
            vertices, stats = self._solve(cold=cold)
        except InputError:
            self.points = self._accepted_points.copy()
            raise
        self.vertices, self.stats = vertices, stats
        self._accepted_points = self.points.copy()
        return vertices

    def _solve(self, *, cold: bool) -> tuple[np.ndarray, dict[str, Any]]:
        import time

        start = time.perf_counter()
        points = check_points(self.points, self.geometry, self.params)
        centre, axes, semi = template_ellipsoid(points, self.params.min_axis_ratio)
        template = centre + (self.unit_vertices * semi) @ axes.T
        vertices = template
        new_columns = 0
        # Direction of each point in the template's own frame (where the template is the unit sphere).
        directions = ((points - centre) @ axes) / semi
        directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
        radial_only = None
        for it in range(self.params.iterations):
            if it < self.params.radial_iterations:
                nearest = self._mesh.unit_tree.query(directions)[1]
            else:
                nearest = cKDTree(vertices).query(points)[1]
            constrained, which, counts = np.unique(nearest, return_inverse=True, return_counts=True)
            # Mean target displacement per constrained vertex; the data weight of a vertex is w × its point count.
            target = np.zeros((len(constrained), 3))
            np.add.at(target, which, points - template[nearest])
            target /= counts[:, None]
            new_columns += self._mesh.ensure_columns(constrained, cold=cold and it == 0)
            green = self._mesh.columns(constrained)  # (V, m): (LᵀL + εI)⁻¹ at the constrained vertices
            small = green[constrained] + np.diag(1.0 / (self._w * counts))
            coefficients = scipy.linalg.solve(small, target, assume_a="pos")
            vertices = template + green @ coefficients
            if it + 1 == self.params.radial_iterations:
                radial_only = vertices
        solved = time.perf_counter()
        problems = surface_problems(vertices, self.faces, self._mesh)
        fallback = False
        if problems and radial_only is not None and radial_only is not vertices:
            # Nearest-vertex matching can pull neighbouring vertices to opposite sides where points crowd; the
            # direction-matched surface cannot, so it is the fallback (it passes a little farther from points).
            if not surface_problems(radial_only, self.faces, self._mesh):
                vertices, problems, fallback = radial_only, [], True
        if problems:
            raise InputError(
                "These points would fold the surface (" + "; ".join(problems) + "). The previous surface is kept: "
                "move or remove the last point, or add points in between."
            )
        self.template = template
        stats = {
            "vertices": len(template),
            "points": len(points),
            "new_columns": new_columns,
            "direction_matched_fallback": fallback,
            "solve_s": solved - start,
            "check_s": time.perf_counter() - solved,
        }
        return vertices, stats

    # --- results ------------------------------------------------------------------------------------
    def point_distances(self) -> np.ndarray:
        """Distance (mm) from each accepted point to the surface (to the nearest point on a triangle)."""
        if self.vertices is None:
            raise InputError("The surface has not been fitted yet.")
        return point_mesh_distance(self._accepted_points, self.vertices, self.faces)

    def polydata(self) -> Any:
        """The surface as vtkPolyData (RAS mm)."""
        return mesh_polydata(self._require(), self.faces)

    def rasterize(self, geometry: Geometry | None = None) -> np.ndarray:
        """Boolean mask [k, j, i] of the voxels inside the surface on ``geometry`` (default: the image's)."""

        geometry = geometry or self.geometry
        if geometry is None:
            raise InputError("A grid (geometry) is needed to rasterise the surface.")
        return rasterize_mesh(self._require(), self.faces, geometry)

    def _require(self) -> np.ndarray:
        if self.vertices is None:
            raise InputError("The surface has not been fitted yet: place at least 5 points.")
        return self.vertices

    def with_params(self, **changes: Any) -> ActiveSurface:
        return ActiveSurface(self._accepted_points, geometry=self.geometry, params=replace(self.params, **changes))


def block_cg(
    matrix: sp.csr_matrix, rhs: np.ndarray, guess: np.ndarray | None, tol: float, maxiter: int
) -> tuple[np.ndarray, int]:
    """Solve ``matrix @ X = rhs`` (SPD) for all columns at once: Jacobi-preconditioned CG, column-wise scalars.

    Written out rather than calling ``scipy.sparse.linalg.cg`` per column: one sparse product serves the
    three coordinates, and the dot products are einsums, not BLAS calls (multi-threaded OpenBLAS ``ddot``
    took 7.8 ms per 30k-vector on a busy 2-core machine, against microseconds here).
    """
    x = np.zeros_like(rhs) if guess is None else np.array(guess, dtype=float)
    inv_diag = (1.0 / matrix.diagonal())[:, None]
    r = rhs - matrix @ x
    bnorm = np.sqrt(np.einsum("ij,ij->j", rhs, rhs))
    target = tol * np.where(bnorm > 0, bnorm, 1.0)
    z = inv_diag * r
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    for iteration in range(maxiter):
        if np.all(np.sqrt(np.einsum("ij,ij->j", r, r)) <= target):
            return x, iteration
        q = matrix @ p
        pq = np.einsum("ij,ij->j", p, q)
        alpha = np.where(pq > 0, rz / np.where(pq > 0, pq, 1.0), 0.0)
        x += alpha * p
        r -= alpha * q
        z = inv_diag * r
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
    return x, maxiter


def fit_surface(
    points_ras: np.ndarray, geometry: Geometry | None = None, params: SurfaceParams | None = None
) -> ActiveSurface:
    """A fitted :class:`ActiveSurface` (cold solve), or InputError for points it cannot use."""
    return ActiveSurface(points_ras, geometry=geometry, params=params)


def point_mesh_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unsigned distance from each point to the closest point of the triangle mesh (exact, via VTK)."""
    import vtk

    locator = vtk.vtkCellLocator()
    locator.SetDataSet(mesh_polydata(vertices, faces))
    locator.BuildLocator()
    out = np.empty(len(points))
    closest, cell, sub, d2 = [0.0, 0.0, 0.0], vtk.reference(0), vtk.reference(0), vtk.reference(0.0)
    for n, p in enumerate(np.asarray(points, dtype=float)):
        locator.FindClosestPoint(p.tolist(), closest, cell, sub, d2)
        out[n] = math.sqrt(float(d2))
    return out
