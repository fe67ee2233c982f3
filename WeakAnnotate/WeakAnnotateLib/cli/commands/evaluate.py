"""``weakannotate evaluate``: compare a prediction with a reference segmentation."""

from __future__ import annotations

import argparse
import json

from ...core.numbers import number_option
from ...evaluation.metrics import evaluate_files

NAME = "evaluate"
HELP = "Dice, IoU, HD95 and average surface distance (mm) of a prediction against a reference, as JSON."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", required=True, help="reference label map (NIfTI/NRRD/MHA)")
    p.add_argument("--prediction", required=True, help="predicted label map on the same grid")
    p.add_argument(
        "--label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="use only this value of a multi-label reference (default: all nonzero)",
    )
    p.add_argument(
        "--prediction-label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="use only this value of the prediction (default: all nonzero)",
    )


def run(args: argparse.Namespace) -> int:
    result = evaluate_files(args.reference, args.prediction, label=args.label, prediction_label=args.prediction_label)
    print(json.dumps(result, indent=2))
    return 0
