"""``weakannotate simulate``: the annotations a user would give, simulated from a reference mask."""

from __future__ import annotations

import argparse

from ...core.numbers import number_option
from ...evaluation.annotation_set import AnnotationSet
from ...files.image_io import read_image, select_label

NAME = "simulate"
HELP = "Simulate 6 extreme points, a 3D box, per-slice 2D boxes and surface points from a mask, as .mrk.json."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask", required=True, help="reference label map")
    p.add_argument(
        "--label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="object = this value (default: every nonzero voxel)",
    )
    p.add_argument("--output-dir", required=True, help="folder for the .mrk.json files")
    p.add_argument(
        "--jitter-mm",
        type=number_option(0, 100),
        default=0.0,
        help="move each extreme point up to this far (default 0)",
    )
    p.add_argument(
        "--margin-mm", type=number_option(0, 500), default=0.0, help="grow the 3D box by this on every side (default 0)"
    )
    p.add_argument(
        "--surface-points",
        type=number_option(5, 10_000, integer=True),
        default=50,
        help="number of surface points (default 50)",
    )
    p.add_argument(
        "--seed",
        type=number_option(0, 2**32 - 1, integer=True),
        default=0,
        help="random seed for jitter and surface sampling",
    )


def run(args: argparse.Namespace) -> int:
    image = read_image(args.mask, what="mask")
    mask = select_label(image.array, args.label, what="mask", path=args.mask)
    annotations = AnnotationSet.simulate(
        mask,
        image.geometry,
        jitter_mm=args.jitter_mm,
        margin_mm=args.margin_mm,
        surface_points=args.surface_points,
        seed=args.seed,
    )
    written = annotations.save(args.output_dir)
    for kind, paths in written.items():
        print(f"{kind}: {paths if not isinstance(paths, list) else f'{len(paths)} files in {paths[0].parent}'}")
    return 0
