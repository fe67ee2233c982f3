"""``weakannotate dataset``: build, list and pseudo-label a dataset folder."""

from __future__ import annotations

import argparse
import json
import sys

from ...core.numbers import number_option
from ...methods import registry

NAME = "dataset"
HELP = (
    "Dataset folders: create (from catalogue cases, simulated clicks), list, pseudo-label, export (nnU-Net v2), "
    "import-nnunet (its predictions back)."
)


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
    ex = sub.add_parser("export", help="an nnU-Net v2 raw dataset (DatasetNNN_Name/imagesTr, labelsTr, dataset.json)")
    ex.add_argument("folder", help="the dataset folder")
    ex.add_argument("output", help="the folder of nnU-Net raw datasets (nnUNet_raw); DatasetNNN_Name is made in it")
    ex.add_argument("--format", choices=["nnunetv2"], default="nnunetv2", help="the only format: nnunetv2")
    ex.add_argument("--id", required=True, type=number_option(1, 999, integer=True), help="nnU-Net dataset id")
    ex.add_argument("--labels", choices=["final", "pseudo"], default="final", help="reference masks or pseudo-labels")
    ex.add_argument("--name", help="dataset name after DatasetNNN_ (default: the dataset's name)")
    ex.add_argument("--label-name", help="name of label 1 (default: the structure's name in the catalogue)")
    ex.add_argument("--channel-name", help="name of channel 0 (default: the cases' modality; CT → CT normalisation)")
    ex.add_argument("--data", help="folder of cases.json, for structure names")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing DatasetNNN_Name of that id")
    im = sub.add_parser("import-nnunet", help="nnU-Net predictions (<id>.nii.gz) as the cases' predictions")
    im.add_argument("folder", help="the dataset folder")
    im.add_argument("predictions", help="folder of nnU-Net's predictions")
    im.add_argument("--export", help="the DatasetNNN_Name folder written by 'dataset export' (maps ids back)")
    im.add_argument("--overwrite", action="store_true", help="replace cases' existing predictions")


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
    if args.action in ("export", "import-nnunet"):
        return _nnunet(args, ds)
    if args.action == "list":
        for row in ds.summary():
            print(json.dumps(row))
        return 0
    results = pseudo_label_dataset(
        ds, method=args.method, overwrite=args.overwrite, progress=lambda row: print(json.dumps(row), flush=True)
    )
    return 1 if any(r["status"] == "failed" for r in results) else 0


def _nnunet(args: argparse.Namespace, ds: object) -> int:
    # why here: `weakannotate --help` imports every command; the dataset code loads only when one runs
    from ...data.nnunet import export_nnunet, import_predictions

    if args.action == "import-nnunet":
        for row in import_predictions(ds, args.predictions, export=args.export, overwrite=args.overwrite):
            print(json.dumps(row))
        return 0
    result = export_nnunet(
        ds,
        args.output,
        args.id,
        labels=args.labels,
        name=args.name,
        label_name=args.label_name,
        channel=args.channel_name,
        overwrite=args.overwrite,
        data_dir=args.data,
    )
    for note in result.notes:
        print(f"weakannotate dataset export: note: {note}", file=sys.stderr)
    doc = {
        "folder": str(result.folder),
        "training": result.training,
        "test": result.test,
        "renamed": result.renamed,
        "dataset_json": result.dataset_json,
    }
    print(json.dumps(doc))
    return 0
