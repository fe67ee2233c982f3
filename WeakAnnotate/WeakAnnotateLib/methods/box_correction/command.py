"""``weakannotate box-correct``: one loose 3D box (ROI ``.mrk.json``) → tight per-slice boxes (JSON, RAS)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...core.atomic_files import atomic_outputs, full_suffix, refuse_inputs_as_outputs
from ...core.errors import InputError

NAME = "box-correct"
HELP = "Tighten a 3D box slice by slice with a trained patch classifier; writes the per-slice boxes as JSON."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="job folder (or model.json) of a box_patch_classifier job")
    p.add_argument("--image", required=True, help="3D image (NIfTI/NRRD/MHA or a DICOM folder)")
    p.add_argument("--box", required=True, help="the 3D box as a Slicer ROI (.mrk.json)")
    p.add_argument("--output", required=True, help="per-slice raw and corrected boxes (.json, RAS mm)")
    p.add_argument("--mask", help="also write the pseudo-mask (union of corrected slice boxes) as an image")
    p.add_argument("--modality", help="the image's modality (CT, MR, PET): warns if the model was not trained on it")


def run(args: argparse.Namespace) -> int:
    # why here: `weakannotate --help` imports every command; torch and the Slicer core load only when one runs
    from ...files.image_io import IMAGE_SUFFIXES, read_image, write_image
    from ...scene.markups_io import read_box
    from .classifier import correct_box, load_box_model

    if full_suffix(args.output) != ".json":
        raise InputError(f"Cannot write {args.output}: the corrected boxes are saved as .json.")
    if not Path(args.output).parent.is_dir():
        raise InputError(f"Output folder {Path(args.output).parent} does not exist; create it first.")
    if args.mask and (full_suffix(args.mask) not in IMAGE_SUFFIXES or full_suffix(args.mask) == ".dcm"):
        raise InputError(f"Cannot write {args.mask}: use .nii.gz, .nii, .nrrd or .mha.")
    refuse_inputs_as_outputs([args.output, args.mask], [args.model, args.image, args.box])
    model = load_box_model(args.model)
    image = read_image(args.image)
    box = read_box(args.box, geometry=image.geometry)
    result = correct_box(model, image.array, image.geometry, box, modality=args.modality)
    for w in result.warnings:
        print(f"weakannotate box-correct: warning: {w}", file=sys.stderr)
    doc = result.to_json(image=str(args.image), model=str(args.model), patch_size=model.params.patch_size)
    targets = [args.output] + ([args.mask] if args.mask else [])
    with atomic_outputs(targets) as temps:  # the boxes and the mask: both or neither
        temps[0].write_text(json.dumps(doc, indent=1), encoding="utf-8")
        if args.mask:
            write_image(temps[1], result.mask(image.geometry.shape).astype("uint8"), image.geometry)
    print(f"Wrote {args.output}: {len(result.slices)} slice boxes corrected in {result.seconds:.2f} s.")
    return 0
