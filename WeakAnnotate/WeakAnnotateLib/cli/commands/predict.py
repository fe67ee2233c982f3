"""``weakannotate predict``: segment an image with a trained model (MONAI sliding-window inference)."""

from __future__ import annotations

import argparse
import json

from ...core.atomic_files import refuse_inputs_as_outputs

NAME = "predict"
HELP = "Segment an image with a trained model; --points (six clicks) for the extreme-point network."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="job folder, model.json or model.pt of a finished job")
    p.add_argument("--image", required=True, help="image (NIfTI/NRRD/MHA or a DICOM folder)")
    p.add_argument("--points", help="point list .mrk.json: the crop (and the points channel) comes from it")
    p.add_argument("--output", required=True, help="mask to write (.nii.gz, .nrrd, .mha), on the image's grid")


def run(args: argparse.Namespace) -> int:
    # why here: `weakannotate --help` imports every command; torch and the Slicer core load only when one runs
    from ...networks.prediction import predict_file

    refuse_inputs_as_outputs([args.output], [args.model, args.image, args.points])
    print(json.dumps(predict_file(args.model, args.image, args.output, args.points), indent=2))
    return 0
