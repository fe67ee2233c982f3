"""The oriented 3D box every box method shares (a Slicer ROI in memory, numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """An oriented 3D box in RAS mm: centre, edge lengths along its axes, axes as the columns of a 3x3."""

    center: np.ndarray
    size: np.ndarray
    axes: np.ndarray

    def corners(self) -> np.ndarray:
        signs = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
        return self.center + (signs * self.size) @ self.axes.T
