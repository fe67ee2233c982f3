"""Closed triangle mesh (RAS mm) → boolean mask on a voxel grid, with VTK's polygon stencil.

The mesh is mapped to continuous IJK (so any direction matrix, oblique or left-handed, becomes a unit grid)
and ``vtkPolyDataToImageStencil`` fills it slice by slice (scanline, even-odd rule on the slice's contour),
only within the mesh's bounding box. A voxel is inside when its centre is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.errors import InputError
from ...core.geometry import Geometry


def rasterize_mesh(vertices_ras: np.ndarray, faces: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Boolean [k, j, i] mask of the voxel centres inside the closed surface."""
    import vtk
    from vtk.util import numpy_support

    ijk = geometry.ras_to_ijk(vertices_ras)
    size = np.asarray(geometry.size_ijk)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int), size - 1)
    mask = np.zeros(geometry.shape, dtype=bool)
    if np.any(hi < lo):
        return mask  # the surface lies entirely outside the grid
    stencil = vtk.vtkPolyDataToImageStencil()
    stencil.SetInputData(mesh_polydata(ijk, faces))
    stencil.SetOutputOrigin(0.0, 0.0, 0.0)
    stencil.SetOutputSpacing(1.0, 1.0, 1.0)
    stencil.SetOutputWholeExtent(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]))
    stencil.SetTolerance(0.0)
    to_image = vtk.vtkImageStencilToImage()
    to_image.SetInputConnection(stencil.GetOutputPort())
    to_image.SetInsideValue(1)
    to_image.SetOutsideValue(0)
    to_image.SetOutputScalarTypeToUnsignedChar()
    to_image.Update()
    out = to_image.GetOutput()
    if out.GetPointData().GetScalars() is None:
        raise InputError("Rasterising the surface failed (VTK returned no image).")
    box = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars())
    shape = (hi - lo + 1)[::-1]
    mask[lo[2] : hi[2] + 1, lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = box.reshape(tuple(shape)) != 0
    return mask


def mesh_polydata(vertices: np.ndarray, faces: np.ndarray) -> Any:
    """vtkPolyData of a triangle mesh."""
    import vtk
    from vtk.util import numpy_support

    pts = vtk.vtkPoints()
    pts.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(vertices, dtype=np.float64), deep=True))
    cells = vtk.vtkCellArray()
    offsets = numpy_support.numpy_to_vtkIdTypeArray(np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64), deep=True)
    conn = numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces.ravel(), dtype=np.int64), deep=True)
    cells.SetData(offsets, conn)
    poly = vtk.vtkPolyData()
    poly.SetPoints(pts)
    poly.SetPolys(cells)
    return poly
