"""``weakannotate refine``: corrective clicks on any segmentation (a label map or a ``.seg.nrrd`` on the image's
grid) → a 0/1 mask. All clicks so far are passed at every call; the answer depends only on the inputs.

Why a generic command (not the extreme-points method's): the segment may come from anywhere — six clicks, the
surface template, a box, a model's prediction, a brush. The algorithm lives with the random walker it uses
(:mod:`WeakAnnotateLib.methods.extreme_points.corrective`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.atomic_files import full_suffix, refuse_inputs_as_outputs
from ...core.errors import InputError
from ...core.geometry import Geometry
from ...core.numbers import number_option
from ...files.image_io import read_image, select_label, write_image
from ...methods.extreme_points.command import check_output
from ...methods.extreme_points.corrective import correct_segment, read_click_files

NAME = "refine"
HELP = "Correct a segment with positive and negative clicks (random walker seeded by the segment); writes a 0/1 mask."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="3D image (NIfTI/NRRD/MHA or a DICOM folder)")
    p.add_argument(
        "--segmentation", required=True, help="the segment to correct: a label map or .seg.nrrd on the image grid"
    )
    p.add_argument(
        "--label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="the label value to correct (a .seg.nrrd: its N-th segment); default: the only one there is",
    )
    p.add_argument("--add", help="positive clicks ('this is object') as a point list (.mrk.json)")
    p.add_argument("--remove", help="negative clicks ('this is not') as a point list (.mrk.json)")
    p.add_argument("--output", required=True, help="mask to write (.nii.gz/.nrrd/.mha), uint8 0/1 on the image grid")
    p.add_argument("--json", action="store_true", help="print timings and counts as JSON")


def _seg_nrrd_geometry(path: Path) -> Geometry:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"Cannot read segmentation {path}: the file is corrupt or truncated.") from None
    size = reader.GetSize()[:3]
    return Geometry.from_lps(reader.GetSpacing()[:3], reader.GetOrigin()[:3], reader.GetDirection()[:9], size)


def _on_the_lattice(seg: Geometry, image: Geometry) -> bool:
    """Same voxel lattice (spacing, axes, origin a whole number of voxels away): a cropped .seg.nrrd is fine."""
    if not np.allclose(seg.ijk_to_ras[:3, :3], image.ijk_to_ras[:3, :3], atol=1e-4):
        return False
    offset = image.ras_to_ijk(seg.origin[None])[0]
    return bool(np.allclose(offset, np.round(offset), atol=1e-3))


def read_segment_labels(path: str, image_geometry: Geometry) -> np.ndarray:
    """The label values of a label map or ``.seg.nrrd`` on the image's grid (another grid is refused)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"Segmentation file {p} does not exist.")
    if full_suffix(p) == ".seg.nrrd":
        # Why here: the Slicer core loads only for a .seg.nrrd (a label map needs none).
        from ...scene.mrml_adapter import remove_node
        from ...scene.segmentation_io import labelmap_from_segmentation, read_segmentation
        from ...scene.slicer_runtime import get_runtime

        seg_geometry = _seg_nrrd_geometry(p)
        if not _on_the_lattice(seg_geometry, image_geometry):
            raise InputError(
                f"Segmentation {p} ({seg_geometry.describe()}) is not on the image's grid "
                f"({image_geometry.describe()}); resample it onto the image first."
            )
        rt = get_runtime()
        node = read_segmentation(rt, p)
        try:
            labels, _ = labelmap_from_segmentation(node, image_geometry)
        finally:
            remove_node(rt.scene, node)
        return labels
    seg = read_image(p, what="segmentation")
    if not seg.geometry.same_grid(image_geometry):
        raise InputError(
            f"Segmentation {p} ({seg.geometry.describe()}) is not on the image's grid ({image_geometry.describe()}); "
            "resample it onto the image first."
        )
    return seg.array


def run(args: argparse.Namespace) -> int:
    check_output(args.output)
    refuse_inputs_as_outputs([args.output], [args.image, args.segmentation, args.add, args.remove])
    image = read_image(args.image)
    labels = read_segment_labels(args.segmentation, image.geometry)
    present = [int(v) for v in np.unique(labels) if v != 0]
    label = args.label
    if label is None and len(present) > 1:
        raise InputError(
            f"Segmentation {args.segmentation} holds labels {present}; choose the one to correct with --label."
        )
    base = select_label(labels, label, what="segmentation", path=args.segmentation) if label else labels != 0
    clicks = read_click_files(args.add, args.remove, image.geometry)
    result = correct_segment(image.array, image.geometry, base, clicks)
    mask = result.mask.astype(np.uint8)
    write_image(args.output, mask, image.geometry)
    summary = {
        "output": str(args.output),
        "voxels": int(mask.sum()),
        "voxels_before": int(base.sum()),
        "clicks": len(clicks),
        **{k: v for k, v in result.diagnostics.items() if k != "params"},
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        t = result.diagnostics["timings_s"]["total"]
        print(
            f"Wrote {args.output}: {summary['voxels']} voxels (was {summary['voxels_before']}) after {len(clicks)} "
            f"click{'s' if len(clicks) != 1 else ''} in {t:.2f} s."
        )
    return 0
