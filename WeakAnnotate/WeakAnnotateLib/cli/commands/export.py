"""``weakannotate export``: a segmentation as DICOM SEG, ``.seg.nrrd`` or a label map.

The segmentation may be a ``.seg.nrrd``, a label map (NIfTI/NRRD/MHA, named with ``--names``) or a DICOM SEG.
Segments are resampled (nearest neighbour, in physical space) onto the image's grid, never copied array to
array: a label map on the same voxels with a flipped axis lands voxel for voxel. DICOM SEG needs an image
read from a DICOM series (``--image`` a folder of .dcm files); a DICOM SEG read back with ``--image`` must
refer to that series.
"""

from __future__ import annotations

import argparse
import json
import sys

from ...core.errors import InputError

NAME = "export"
HELP = "Export a segmentation as DICOM SEG (with names, colours, terminology codes), .seg.nrrd or a label map."
FORMATS = ("dicom-seg", "seg-nrrd", "labelmap")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--image", help="the image the segmentation is on: a DICOM series folder for dicom-seg")
    p.add_argument("--segmentation", required=True, help=".seg.nrrd, label map (.nii.gz/.nrrd/.mha) or DICOM SEG")
    p.add_argument("--output", required=True, help="file to write (.dcm, .seg.nrrd, .nii.gz/.nrrd/.mha)")
    p.add_argument("--series-uid", help="the DICOM series in --image when its folder holds several")
    p.add_argument("--names", nargs="+", default=[], metavar="VALUE=NAME", help="segment names of a label map's values")
    p.add_argument(
        "--terminology",
        nargs="+",
        default=[],
        metavar="SEGMENT=TERM",
        help="a segment's standard term, e.g. 'tumour=Neoplasm' 'label 3=Kidney/Left' (default: from its name)",
    )
    p.add_argument(
        "--algorithm-type",
        default="semiautomatic",
        choices=("manual", "semiautomatic", "automatic"),
        help="DICOM SEG segment algorithm type (default semiautomatic)",
    )
    p.add_argument("--series-description", default="WeakAnnotate segmentation", help="DICOM SEG series description")


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--{what} {v!r}: write it as KEY=VALUE.")
        out.append((key.strip(), value.strip()))
    return out


def run(args: argparse.Namespace) -> int:
    # why here: `weakannotate --help` imports every command; the Slicer core and highdicom load only when one runs
    from ...core.atomic_files import full_suffix
    from ...files.dicom_seg import is_dicom_seg, read_dicom_series, write_dicom_seg
    from ...files.image_io import read_image, write_image
    from ...scene import segmentation_io
    from ...scene.mrml_adapter import remove_node, segment_ids
    from ...scene.slicer_runtime import get_runtime
    from ...scene.terminology import set_segment_terminology

    names: dict[int, str] = {}
    for key, value in _pairs(args.names, "names"):
        if not key.isdigit():
            raise InputError(f"--names {key}={value}: the key must be a label value (a whole number).")
        names[int(key)] = value
    choices = _pairs(args.terminology, "terminology")
    out_suffix = full_suffix(args.output)
    wanted = {"dicom-seg": (".dcm",), "seg-nrrd": (".seg.nrrd",), "labelmap": (".nii.gz", ".nii", ".nrrd", ".mha")}
    if out_suffix not in wanted[args.format]:
        raise InputError(f"--format {args.format} writes {' or '.join(wanted[args.format])}, not {args.output}.")

    series = None
    grid = None
    notes: list[str] = []
    if args.format == "dicom-seg":
        if not args.image:
            raise InputError("--format dicom-seg needs --image: the DICOM series the segmentation was drawn on.")
        series = read_dicom_series(args.image, series_uid=args.series_uid)
        grid, notes = series.geometry, list(series.notes)
    elif args.image:
        if is_dicom_seg(args.segmentation):
            series = read_dicom_series(args.image, series_uid=args.series_uid)
            grid, notes = series.geometry, list(series.notes)
        else:
            grid = read_image(args.image, series_uid=args.series_uid).geometry

    rt = get_runtime()
    node = segmentation_io.read_segmentation(rt, args.segmentation, names=names or None, series=series)
    try:
        by_name = {node.GetSegmentation().GetSegment(sid).GetName(): sid for sid in segment_ids(node)}
        for segment_name, term in choices:
            if segment_name not in by_name:
                raise InputError(
                    f"--terminology {segment_name}={term}: no segment {segment_name!r}; segments: {', '.join(by_name)}."
                )
            set_segment_terminology(rt, node, by_name[segment_name], term)
        if args.format == "dicom-seg":
            segments = segmentation_io.coded_segments(rt, node, grid)
            write_dicom_seg(
                args.output,
                segments,
                series,
                series_description=args.series_description,
                algorithm_type=args.algorithm_type,
            )
            rows = [
                {
                    "name": s.name,
                    "voxels": int(s.mask.sum()),
                    "category": s.codes.category.meaning,
                    "type": s.codes.type.meaning,
                    "modifier": s.codes.modifier.meaning if s.codes.modifier else None,
                }
                for s in segments
            ]
        elif args.format == "seg-nrrd":
            segmentation_io.write_segmentation(args.output, node)
            rows = [{"name": node.GetSegmentation().GetSegment(sid).GetName()} for sid in segment_ids(node)]
        else:
            if grid is None:
                raise InputError("--format labelmap needs --image: the grid to write the label map on.")
            labelmap, table = segmentation_io.labelmap_from_segmentation(node, grid)
            write_image(args.output, labelmap, grid)
            rows = [{"value": v, "name": n, "voxels": int((labelmap == v).sum())} for v, n in table.items()]
    finally:
        remove_node(rt.scene, node)
    for note in notes:
        print(f"weakannotate export: note: {note}", file=sys.stderr)
    print(json.dumps({"output": str(args.output), "format": args.format, "segments": rows, "notes": notes}))
    return 0
