"""``weakannotate demo``: a real case, its three simulated annotations in a Slicer scene, and a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ...core.atomic_files import atomic_folder
from ...core.numbers import number_option
from ...evaluation.annotation_set import AnnotationSet
from ...evaluation.metrics import evaluate_masks
from ...evaluation.overlay import overlay_png
from ...evaluation.simulate import box_mask
from ...files.cases import find_case
from ...files.image_io import read_image, select_label
from ...scene.markups_io import read_box, read_points
from ...scene.mrml_adapter import add_points_node, add_roi_node, add_volume_node
from ...scene.segmentation_io import segmentation_from_labelmap, write_segmentation
from ...scene.slicer_runtime import get_runtime

NAME = "demo"
HELP = "Simulate the three kinds of annotation on a real case, write them as .mrk.json, and write a report."

DEFAULT_CASE = "brats_brats_2013_pat0001_1_Flair"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="folder with cases.json (default: ../shared/data beside the checkout)")
    p.add_argument("--case", default=DEFAULT_CASE, help=f"case id from cases.json (default {DEFAULT_CASE})")
    p.add_argument(
        "--label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="object = this label (default: every nonzero label)",
    )
    p.add_argument("--output", default="demo_output", help="output folder (default demo_output)")
    p.add_argument(
        "--jitter-mm", type=number_option(0, 100), default=3.0, help="extreme-point jitter (default 3 mm, as a click)"
    )
    p.add_argument("--surface-points", type=number_option(5, 10_000, integer=True), default=50)
    p.add_argument("--seed", type=number_option(0, 2**32 - 1, integer=True), default=0)


def _step(n: int, total: int, text: str) -> float:
    print(f"[{n}/{total}] {text}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    total = 5
    t0 = _step(1, total, f"loading case {args.case}")
    case = find_case(args.case, args.data)
    image = read_image(case.image)
    reference = case.reference_mask("the demo (it simulates the marks from it and scores every method)")
    labels = read_image(reference, what="reference mask")
    if not labels.geometry.same_grid(image.geometry):
        # why here: `weakannotate --help` imports every command; torch and the Slicer core load only when one runs
        from ...core.errors import InputError

        raise InputError(f"The case's mask {reference} is not on its image's grid.")
    mask = select_label(labels.array, args.label, what="reference mask", path=reference)
    structure = (
        case.labels.get(args.label, "object")
        if args.label is not None
        else "whole " + ("tumour" if "brats" in case.id else next(iter(case.labels.values()), "object"))
    )

    _step(2, total, "simulating 6 extreme points, a 3D box, per-slice boxes and surface points")
    annotations = AnnotationSet.simulate(
        mask, image.geometry, jitter_mm=args.jitter_mm, surface_points=args.surface_points, seed=args.seed
    )

    _step(3, total, "building the Slicer scene (volume, reference segment, markups) and writing files")
    final = Path(args.output)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(final, replace=True) as out:  # the whole demo folder or the previous one
        rt = get_runtime()
        add_volume_node(rt, image, case.id)
        segmentation = segmentation_from_labelmap(
            rt, mask.astype(np.uint8), image.geometry, name="reference", names={1: structure}
        )
        written = annotations.save(out / "annotations")
        # Read the files back through Slicer and put them in the scene, as a user opening them would.
        points, point_labels = read_points(written["extreme_points"], count=6, geometry=image.geometry)
        add_points_node(rt, points, point_labels, "extreme points", required=6)
        add_roi_node(rt, read_box(written["box"], geometry=image.geometry), "box")
        write_segmentation(out / "reference.seg.nrrd", segmentation)

        _step(4, total, "measuring what each annotation tells about the object")
        box_only = evaluate_masks(mask, box_mask(annotations.box, image.geometry), image.geometry)
        index = image.geometry.ras_to_index(annotations.extreme_points)
        on_object = int(mask[tuple(index.T)].sum())

        _step(5, total, "drawing the overlay and writing the report")
        picture = overlay_png(
            out / "overlay.png",
            image.array,
            image.geometry,
            masks=[
                (mask, "#ffd21f", f"reference: {structure}"),
                (box_mask(annotations.box, image.geometry), "#33c3ff", "3D box"),
            ],
            points=[
                (annotations.extreme_points, "#ff3b3b", f"6 extreme points (jitter ≤ {args.jitter_mm:g} mm)"),
                (annotations.surface_points, "#7CFC00", f"{len(annotations.surface_points)} surface points"),
            ],
            title=f"{case.id} ({case.modality}, {image.geometry.describe()})",
        )
        report = out / "report.md"
        rows = "\n".join(
            f"| {lab} | {p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f} |"
            for lab, p in zip(annotations.extreme_labels, annotations.extreme_points, strict=True)
        )
        report.write_text(
            f"""# WeakAnnotate demo: {case.id}

- Image: `{case.image}` — {case.modality}, {image.geometry.describe()}
- Reference: `{case.mask}` ({case.gt_type}); object = {structure}, {box_only["reference_ml"]:.1f} ml
- Annotations written as Slicer markups in `annotations/`; the reference as `reference.seg.nrrd`.

![overlay](overlay.png)

## Six extreme points (RAS mm), jitter ≤ {args.jitter_mm:g} mm, seed {args.seed}

| point | R, A, S |
|---|---|
{rows}

{on_object} of 6 points fall on an object voxel (jittered clicks can land just outside).

## 3D box

Size {" x ".join(f"{s:.1f}" for s in annotations.box.size)} mm. The box itself as a segmentation scores
Dice {box_only["dice"]:.3f} (IoU {box_only["iou"]:.3f}, HD95 {box_only["hd95_mm"]:.1f} mm) against the reference:
the gap every box-supervised method has to close.

## Per-slice 2D boxes and surface points

{len(annotations.slice_boxes)} slices hold the object (one ROI file each in `annotations/slice_boxes/`);
{len(annotations.surface_points)} surface points spread by farthest-point sampling.

Reproduce: `weakannotate demo --case {case.id} --output {args.output}`
""",
            encoding="utf-8",
        )
    report, picture = (final / report.name).resolve(), (final / picture.name).resolve()
    print(f"done in {time.perf_counter() - t0:.1f} s: report {report}, picture {picture}")
    return 0
