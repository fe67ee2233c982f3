"""A picture of an image with masks and annotations: axial, coronal and sagittal planes through a point.

Planes are shown as a radiologist reads them: the image is re-oriented to LPS voxel axes first, so that
the patient's left is on the picture's right, anterior is up in axial and superior is up in the others;
pixels are drawn at their true aspect ratio (anisotropic spacing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_files import atomic_output
from ..core.geometry import Geometry
from ..files.image_io import geometry_of, to_sitk


def _lps(array: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
    image = sitk.DICOMOrient(to_sitk(array, geometry), "LPS")
    return sitk.GetArrayFromImage(image), geometry_of(image)


def overlay_png(
    path: str | Path,
    image: np.ndarray,
    geometry: Geometry,
    *,
    masks: Sequence[tuple[np.ndarray, str, str]] = (),
    points: Sequence[tuple[np.ndarray, str, str]] = (),
    center_ras: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write a 3-panel PNG. ``masks``: (mask, colour, legend); ``points``: ((N, 3) RAS, colour, legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, g = _lps(image.astype(np.float32), geometry)
    oriented = [(_lps(m.astype(np.uint8), geometry)[0] > 0, c, label) for m, c, label in masks]
    if center_ras is None:  # through the first mask's centre, or the image's
        where = np.argwhere(masks[0][0]) if masks else np.array([np.array(image.shape) // 2])
        center_ras = geometry.index_to_ras(where.mean(axis=0).round().astype(int))
    c = np.clip(np.rint(g.ras_to_ijk(center_ras)[0][::-1]).astype(int), 0, np.array(img.shape) - 1)
    sk, sj, si = g.array_spacing
    lo, hi = np.percentile(img, [1, 99.5])
    planes = [  # (name, 2D slice, index into (k,j,i) that is fixed, (row axis, col axis), aspect, flip rows)
        ("axial", lambda a: a[c[0]], 0, (1, 2), sj / si, False),
        ("coronal", lambda a: a[:, c[1], :], 1, (0, 2), sk / si, True),
        ("sagittal", lambda a: a[:, :, c[2]], 2, (0, 1), sk / sj, True),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, (name, cut, fixed, (r, col), aspect, flip) in zip(axes, planes, strict=True):
        sl = cut(img)
        ax.imshow(sl[::-1] if flip else sl, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        for m, colour, label in oriented:
            ms = cut(m)
            if ms.any():
                ax.contour((ms[::-1] if flip else ms).astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
            ax.plot([], [], color=colour, label=label)
        for pts, colour, label in points:
            idx = g.ras_to_ijk(np.atleast_2d(pts))[:, ::-1]
            near = np.abs(idx[:, fixed] - c[fixed]) <= 1.5
            rows = sl.shape[0] - 1 - idx[:, r] if flip else idx[:, r]
            # In-plane points filled; a few off-plane ones (extreme points) drawn hollow at their projection.
            ax.scatter(idx[near, col], rows[near], s=22, c=colour, edgecolors="black", linewidths=0.5, label=label)
            if len(pts) <= 6:
                ax.scatter(idx[~near, col], rows[~near], s=22, facecolors="none", edgecolors=colour, linewidths=1)
        ax.set_title(name)
        ax.set_axis_off()
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
