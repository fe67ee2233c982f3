"""``weakannotate extreme-points``: six clicks (a ``.mrk.json`` point list), and optionally corrective clicks
(``--add`` / ``--remove``, all of them so far at every call) → a 0/1 mask on the image's grid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ...core.atomic_files import atomic_outputs, full_suffix, refuse_inputs_as_outputs
from ...core.errors import InputError
from ...core.numbers import number_option
from ...files.image_io import IMAGE_SUFFIXES, read_image, write_image
from ...scene.markups_io import read_points
from .corrective import read_click_files, segment_with_clicks
from .segmenter import ExtremePointParams

NAME = "extreme-points"
HELP = (
    "Segment an object from its six extreme points (scribbles + random walker), corrected by positive and negative "
    "clicks; writes a 0/1 mask."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ExtremePointParams()
    p.add_argument("--image", required=True, help="3D image (NIfTI/NRRD/MHA or a DICOM folder)")
    p.add_argument("--points", required=True, help="six extreme points as a Slicer point list (.mrk.json)")
    p.add_argument("--add", help="positive corrective clicks ('this is object') as a point list (.mrk.json)")
    p.add_argument("--remove", help="negative corrective clicks ('this is not') as a point list (.mrk.json)")
    p.add_argument("--output", required=True, help="mask to write (.nii.gz/.nrrd/.mha), uint8 0/1 on the image grid")
    p.add_argument("--probability", help="also write the foreground probability (float32, image grid)")
    p.add_argument(
        "--beta",
        type=number_option(0, 10_000, exclusive_minimum=True),
        default=d.beta,
        help=f"random walker edge sharpness (default {d.beta})",
    )
    p.add_argument(
        "--padding-mm", type=number_option(0, 500), default=d.padding_mm, help=f"box padding (default {d.padding_mm})"
    )
    p.add_argument("--json", action="store_true", help="print timings and seed counts as JSON")


def check_output(path: str) -> None:
    """An image file name this command can write, in an existing folder."""
    if full_suffix(path) not in IMAGE_SUFFIXES or full_suffix(path) == ".dcm":
        raise InputError(f"Cannot write {path}: use .nii.gz, .nii, .nrrd or .mha.")
    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(f"Output folder {parent} does not exist; create it first.")


def run(args: argparse.Namespace) -> int:
    for out in [args.output] + ([args.probability] if args.probability else []):
        check_output(out)
    if args.probability and Path(args.probability).resolve() == Path(args.output).resolve():
        raise InputError("--probability and --output name the same file; give two different names.")
    refuse_inputs_as_outputs([args.output, args.probability], [args.image, args.points, args.add, args.remove])
    image = read_image(args.image)
    points, _labels = read_points(args.points, count=6, geometry=image.geometry, what="extreme points")
    clicks = read_click_files(args.add, args.remove, image.geometry)
    params = ExtremePointParams(beta=args.beta, padding_mm=args.padding_mm)
    six, corrected = segment_with_clicks(image.array, image.geometry, points, clicks, params)
    mask = (corrected.mask if corrected is not None else six.mask).astype(np.uint8)
    if args.probability:  # both files or neither, and neither replaced unless both are complete
        probability = six.full_probability(image.geometry.shape)
        if corrected is not None:
            probability[corrected.region_slices] = corrected.probability
        with atomic_outputs([args.output, args.probability]) as (tmp_mask, tmp_prob):
            write_image(tmp_mask, mask, image.geometry)
            write_image(tmp_prob, probability, image.geometry)
    else:
        write_image(args.output, mask, image.geometry)
    result = six
    summary = {
        "output": str(args.output),
        "probability": str(args.probability) if args.probability else None,
        "voxels": int(mask.sum()),
        "volume_ml": float(mask.sum() * np.prod(image.geometry.spacing) / 1000.0),
        **{k: v for k, v in result.diagnostics.items() if k != "params"},
        "clicks": len(clicks),
    }
    if corrected is not None:
        summary["correction"] = {k: v for k, v in corrected.diagnostics.items() if k != "params"}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        t = result.diagnostics["timings_s"]["total"]
        if corrected is not None:
            t += corrected.diagnostics["timings_s"]["total"]
        extra = f" with {len(clicks)} corrective click{'s' if len(clicks) != 1 else ''}" if clicks else ""
        print(f"Wrote {args.output}: {summary['voxels']} voxels ({summary['volume_ml']:.1f} ml){extra} in {t:.2f} s.")
    return 0
