"""``weakannotate surface-template``: points on an object's surface (``.mrk.json``) → the deformed sphere template
rasterised as a 0/1 mask on the image's grid."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ...core.atomic_files import full_suffix, refuse_inputs_as_outputs
from ...core.errors import InputError
from ...core.numbers import number_option
from ...files.image_io import IMAGE_SUFFIXES, read_image, write_image
from ...scene.markups_io import read_points
from .active_surface import MIN_POINTS, SurfaceParams, fit_surface

NAME = "surface-template"
HELP = "Deform a sphere template through points placed on an object's surface; writes the rasterised 0/1 mask."


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SurfaceParams()
    p.add_argument("--image", required=True, help="3D image (NIfTI/NRRD/MHA or a DICOM folder): the output grid")
    p.add_argument("--points", required=True, help=f"≥ {MIN_POINTS} surface points as a Slicer point list (.mrk.json)")
    p.add_argument("--output", required=True, help="mask to write (.nii.gz/.nrrd/.mha), uint8 0/1 on the image grid")
    p.add_argument(
        "--subdivisions",
        type=number_option(1, 6, integer=True),
        default=d.subdivisions,
        help="icosphere level (4: 2,562 vertices)",
    )
    p.add_argument(
        "--data-weight",
        type=number_option(0, 1e6, exclusive_minimum=True),
        default=d.data_weight,
        help=f"w (default {d.data_weight})",
    )
    p.add_argument(
        "--iterations",
        type=number_option(1, 1000, integer=True),
        default=d.iterations,
        help=f"outer iterations (default {d.iterations})",
    )
    p.add_argument("--json", action="store_true", help="print a summary as JSON")


def run(args: argparse.Namespace) -> int:
    if full_suffix(args.output) not in IMAGE_SUFFIXES or full_suffix(args.output) == ".dcm":
        raise InputError(f"Cannot write {args.output}: use .nii.gz, .nii, .nrrd or .mha.")
    if not Path(args.output).parent.is_dir():
        raise InputError(f"Output folder {Path(args.output).parent} does not exist; create it first.")
    refuse_inputs_as_outputs([args.output], [args.image, args.points])
    params = SurfaceParams(subdivisions=args.subdivisions, data_weight=args.data_weight, iterations=args.iterations)
    params.validate()
    image = read_image(args.image)
    points, _labels = read_points(args.points, min_count=MIN_POINTS, geometry=image.geometry, what="surface points")
    start = time.perf_counter()
    surface = fit_surface(points, image.geometry, params)
    mask = surface.rasterize(image.geometry).astype(np.uint8)
    seconds = time.perf_counter() - start
    if not mask.any():
        raise InputError("The fitted surface contains no voxel centre of the image; place points on the object.")
    write_image(args.output, mask, image.geometry)
    distances = surface.point_distances()
    summary = {
        "output": str(args.output),
        "points": len(points),
        "vertices": len(surface.vertices),
        "voxels": int(mask.sum()),
        "volume_ml": float(mask.sum() * np.prod(image.geometry.spacing) / 1000.0),
        "max_point_distance_mm": float(distances.max()),
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"Wrote {args.output}: {summary['voxels']} voxels ({summary['volume_ml']:.1f} ml) from {len(points)} "
            f"points in {seconds:.2f} s; surface within {summary['max_point_distance_mm']:.2f} mm of every point."
        )
    return 0
