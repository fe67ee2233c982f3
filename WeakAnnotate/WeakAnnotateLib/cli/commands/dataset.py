"""``weakannotate dataset``: build, list and pseudo-label a dataset folder."""

from __future__ import annotations

import argparse
import json

from ...core.numbers import number_option
from ...methods import registry

NAME = "dataset"
HELP = "Dataset folders: create (from catalogue cases, simulated clicks), list, pseudo-label."


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="a dataset of catalogue cases with simulated extreme points")
    c.add_argument("--from-cases", nargs="+", required=True, metavar="ID", help="case ids from cases.json")
    c.add_argument("--output", required=True, help="new dataset folder")
    c.add_argument("--data", help="folder of cases.json (default: ../shared/data or $WEAKANNOTATE_DATA)")
    c.add_argument(
        "--label",
        type=number_option(1, 2**31 - 1, integer=True),
        help="object = this label value (default: every nonzero voxel)",
    )
    c.add_argument(
        "--jitter-mm", type=number_option(0, 100), default=0.0, help="move each simulated click up to this far"
    )
    c.add_argument("--seed", type=number_option(0, 2**32 - 1, integer=True), default=0)
    ls = sub.add_parser("list", help="cases, their state and annotation effort")
    ls.add_argument("folder")
    able = [m.name for m in registry.annotation_methods() if m.label_case]
    pl = sub.add_parser("pseudo-label", help="pseudo-label every case from its marks (default: extreme points)")
    pl.add_argument("folder")
    pl.add_argument("--method", choices=able, default=able[0], help=f"annotation method (default {able[0]})")
    pl.add_argument("--overwrite", action="store_true", help="recompute existing pseudo-labels")


def run(args: argparse.Namespace) -> int:
    # why here: `weakannotate --help` imports every command; torch and the Slicer core load only when one runs
    from ...data.dataset import DatasetFolder, create_from_cases
    from ...jobs.pseudo_labels import pseudo_label_dataset

    if args.action == "create":
        ds = create_from_cases(
            args.output, args.from_cases, data_dir=args.data, label=args.label, jitter_mm=args.jitter_mm, seed=args.seed
        )
        print(json.dumps({"dataset": str(ds.root), "cases": [c.id for c in ds.cases]}))
        return 0
    ds = DatasetFolder.load(args.folder)
    if args.action == "list":
        for row in ds.summary():
            print(json.dumps(row))
        return 0
    results = pseudo_label_dataset(
        ds, method=args.method, overwrite=args.overwrite, progress=lambda row: print(json.dumps(row), flush=True)
    )
    return 1 if any(r["status"] == "failed" for r in results) else 0
