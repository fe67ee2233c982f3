"""The three kinds of simulated annotation of one object, written as Slicer markups files."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic_files import atomic_outputs, write_error
from ..core.box import Box
from ..core.errors import InputError
from ..core.geometry import Geometry
from ..scene.markups_io import write_box, write_points
from . import simulate


@dataclass
class AnnotationSet:
    extreme_points: np.ndarray
    extreme_labels: list[str]
    box: Box
    slice_boxes: list[simulate.SliceBox]
    surface_points: np.ndarray

    @classmethod
    def simulate(
        cls,
        mask: np.ndarray,
        geometry: Geometry,
        *,
        jitter_mm: float = 0.0,
        margin_mm: float = 0.0,
        surface_points: int = 50,
        seed: int = 0,
    ) -> AnnotationSet:
        points, labels = simulate.extreme_points(mask, geometry, jitter_mm=jitter_mm, seed=seed)
        return cls(
            extreme_points=points,
            extreme_labels=labels,
            box=simulate.tight_box(mask, geometry, margin_mm=margin_mm),
            slice_boxes=simulate.slice_boxes(mask, geometry),
            surface_points=simulate.surface_points(mask, geometry, surface_points, seed=seed),
        )

    def save(self, folder: str | Path) -> dict[str, Path | list[Path]]:
        """Write ``extreme_points.mrk.json``, ``box.mrk.json``, ``surface_points.mrk.json`` and
        ``slice_boxes/slice_KKK.mrk.json`` (one ROI per slice, one slice thick): all of them or none."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder} is a file; give a folder for the annotations.")
        slices = folder / "slice_boxes"
        created = [p for p in (folder, slices) if not p.exists()]
        try:
            slices.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(slices, e) from None
        named = {
            "extreme_points": folder / "extreme_points.mrk.json",
            "box": folder / "box.mrk.json",
            "surface_points": folder / "surface_points.mrk.json",
        }
        slice_paths = [slices / f"slice_{sb.slice_index:03d}.mrk.json" for sb in self.slice_boxes]
        try:
            with atomic_outputs([*named.values(), *slice_paths]) as temps:
                write_points(temps[0], self.extreme_points, self.extreme_labels, "extreme", required=6)
                write_box(temps[1], self.box, "box")
                labels = [f"s{n + 1}" for n in range(len(self.surface_points))]
                write_points(temps[2], self.surface_points, labels, "surface")
                for tmp, sb in zip(temps[3:], self.slice_boxes, strict=True):
                    write_box(tmp, sb.box, f"slice {sb.slice_index}")
        except BaseException:
            for p in reversed(created):  # folders this call made, left empty by the failure
                with contextlib.suppress(OSError):
                    p.rmdir()
            raise
        return {**named, "slice_boxes": slice_paths}
