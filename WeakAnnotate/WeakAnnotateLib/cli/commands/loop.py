"""``weakannotate loop``: the annotation loop on a dataset folder (docs/annotation_loop.md).

``next`` hands out the next case and writes its starting segment (the newest model's prediction or the marks'
pseudo-label, by the ``start`` setting); the user corrects it in any tool; ``accept`` saves the final mask and the
effort, and starts the fine-tuning job every N accepted cases; ``rank`` lists the remaining cases in a strategy's
order with the score; ``status``, ``config``, ``finetune`` and ``draft`` do what they say. Every answer is one JSON
object (``--json`` is the default shape), so the web page and the hub panel can show exactly what the CLI shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from ...core.atomic_files import atomic_output, full_suffix
from ...core.errors import InputError
from ...core.numbers import number_option
from ...jobs.annotation_loop import STRATEGIES, AnnotationLoop
from .refine import read_segment_labels

NAME = "loop"
HELP = "The annotation loop: next case (model's prediction as the start), accept (mask + effort), fine-tune every N."


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    n = sub.add_parser("next", help="the next case and its starting segment (the case in progress first)")
    n.add_argument("dataset", help="the dataset folder")
    n.add_argument("--strategy", choices=STRATEGIES, default="order", help="which case next (default: order)")
    n.add_argument("--tta", action="store_true", help="disagreement: add the flip test-time-augmentation uncertainty")
    n.add_argument("--output", help="also copy the starting segment here (.nii.gz)")
    r = sub.add_parser("rank", help="the remaining cases in the strategy's order, with the disagreement score")
    r.add_argument("dataset", help="the dataset folder")
    r.add_argument("--strategy", choices=STRATEGIES, default="disagreement")
    r.add_argument("--tta", action="store_true", help="add the flip test-time-augmentation uncertainty")
    a = sub.add_parser("accept", help="save the final mask of the case in progress and its effort")
    a.add_argument("dataset", help="the dataset folder")
    a.add_argument("--case", required=True, help="the case id (the one 'next' handed out)")
    a.add_argument("--mask", required=True, help="the final mask: a label map or .seg.nrrd on the image's grid")
    a.add_argument(
        "--label", type=number_option(1, 2**31 - 1, integer=True), help="the mask's label value (default: nonzero)"
    )
    a.add_argument("--clicks", type=number_option(0, 100000, integer=True), default=0,
                   help="corrective clicks made on the case")  # fmt: skip
    a.add_argument("--seconds", type=number_option(0, 86400), help="seconds spent (default: since 'next')")
    a.add_argument("--kind", default="corrective", help="what the clicks and seconds were (default: corrective)")
    a.add_argument("--no-finetune", action="store_true", help="do not start the fine-tuning job even when due")
    d = sub.add_parser("draft", help="save the corrections so far (what 'next' resumes from)")
    d.add_argument("dataset", help="the dataset folder")
    d.add_argument("--case", required=True)
    d.add_argument("--mask", required=True)
    d.add_argument("--label", type=number_option(1, 2**31 - 1, integer=True))
    s = sub.add_parser("status", help="settings, cases (accepted, to do), effort, the fine-tuning job")
    s.add_argument("dataset", help="the dataset folder")
    c = sub.add_parser("config", help="the loop's settings")
    c.add_argument("dataset", help="the dataset folder")
    c.add_argument("--method", help="training method of the fine-tuning jobs (weakannotate methods)")
    c.add_argument("--finetune-every", type=number_option(1, 10000, integer=True), help="fine-tune every N accepted")
    c.add_argument("--finetune-epochs", type=number_option(1, 10000, integer=True), help="epochs of a fine-tune")
    c.add_argument("--seed", type=number_option(0, 2**32 - 1, integer=True), help="seed of the random strategy")
    c.add_argument("--model", help="a finished job folder: the model the next predictions use")
    c.add_argument(
        "--start",
        choices=["auto", "model", "marks"],
        help="what a case starts from: auto (default) = the marks' pseudo-label until the model's prediction starts "
        "at least as close to the accepted masks, then the prediction; model; marks",
    )
    f = sub.add_parser("finetune", help="start the fine-tuning job now (the last model's weights, accepted cases)")
    f.add_argument("dataset", help="the dataset folder")
    f.add_argument("--epochs", type=number_option(1, 10000, integer=True), help="epochs (default: the loop's)")
    f.add_argument("--wait", action="store_true", help="wait for the job to end")


def _mask(path: str, loop: AnnotationLoop, case: str, label: int | None) -> Any:
    # why here: reading the image is the loop's; the grid check is refine's reader
    from ...files.image_io import read_image

    entry = loop.dataset.case(case)
    image = read_image(loop.dataset.path(entry.image), what=f"image of case {case!r}")
    values = read_segment_labels(path, image.geometry)
    if label is not None:
        if not (values == label).any():
            raise InputError(f"--label {label}: no voxel of {path} has this value.")
        return values == label
    return values != 0


def run(args: argparse.Namespace) -> int:
    loop = AnnotationLoop(args.dataset)
    if args.action == "next":
        if args.output and full_suffix(Path(args.output)) != ".nii.gz":
            raise InputError(f"--output {args.output}: the starting segment is a .nii.gz file; name it so.")
        start = loop.next_case(args.strategy, tta=args.tta)
        out = start.to_json()
        if args.output:
            with atomic_output(Path(args.output)) as tmp:
                shutil.copyfile(start.start, tmp)
            out["output"] = args.output
        print(json.dumps(out, indent=1))
    elif args.action == "rank":
        print(json.dumps(loop.ranking(args.strategy, tta=args.tta), indent=1))
    elif args.action == "accept":
        if not Path(args.mask).is_file():
            raise InputError(f"--mask {args.mask} does not exist.")
        mask = _mask(args.mask, loop, args.case, args.label)
        effort: dict = {}
        if args.clicks or args.seconds is not None:
            effort[args.kind] = {"clicks": args.clicks}
            if args.seconds is not None:
                effort[args.kind]["seconds"] = args.seconds
        result = loop.accept(args.case, mask, effort, start_job=not args.no_finetune)
        print(json.dumps(result, indent=1))
    elif args.action == "draft":
        path = loop.save_draft(args.case, _mask(args.mask, loop, args.case, args.label))
        print(json.dumps({"case": args.case, "draft": str(path)}, indent=1))
    elif args.action == "status":
        print(json.dumps(loop.status(), indent=1))
    elif args.action == "config":
        settings = loop.configure(method=args.method, finetune_every=args.finetune_every,
                                  finetune_epochs=args.finetune_epochs, seed=args.seed, model=args.model,
                                  start=args.start)  # fmt: skip
        print(json.dumps(settings, indent=1))
    elif args.action == "finetune":
        job = loop.finetune(epochs=args.epochs)
        if args.wait:
            job["state"] = (loop.wait_for_job() or {}).get("state")
        print(json.dumps(job, indent=1))
    return 0
