"""Dice against wall-clock training minutes: do the networks pass the labels they were trained on?

    .venv/bin/python benchmarks/bench_training_budget.py [--quick] [--budgets 2,5,10] [--threads 2]

Task: the PET soft-tissue sarcomas (IBSI STS, 30 scans with manual GTV contours). Development cases: the first
``--train`` scans (default 20) are trained on; the networks are evaluated on the others (default the last 10),
which no job sees, on each scan's original grid. Every job runs through the real worker (the code path of
``weakannotate train``) with the shared recipe (``training/recipe.py``: windows that oversample the object,
spatial + intensity augmentation, a poly schedule over the budget, a U-Net sized for the window) and stops on
``max_minutes``:

* ``extreme-point net``: six simulated clicks per scan → random-walker pseudo-labels (steps 1–2) → the
  extreme-point network (points channel, 2 rounds of train → predict → random walker, each round half the
  budget; the round's refinement counts against the budget). Its labels' Dice on a held-out scan is the random
  walker from that scan's own six clicks — the thing the network has to beat.
* ``PET box + MS``: one box per lesion (tight box + 13.75 mm, box Dice ≈ 0.28) → ``pet_box_dice`` for a third of
  the budget, then ``pet_box_mdice_ms`` (modified Dice + Mumford–Shah, Afshari et al.) from its weights for the
  other two thirds, on the whole scan. Its labels are the boxes.
* ``full supervision``: the reference masks, on the extreme-point network's crops (no points channel) — the
  ceiling of what these networks learn from this many scans in this time.

Printed per row: the budget, the steps run and steps per second (the machine is shared: the 1-minute load
average at the end of each job is printed beside it), the network's mean Dice on the held-out scans and its
labels' Dice on the same scans, and, per method, the first budget at which the network passes its labels.
Nothing is tuned on the held-out scans.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PET_PREFIX, PET_SUFFIX = "ibsi_STS_", "_PET"


def run_job(spec: dict, folder: Path) -> dict:
    """One job through the worker in this process (its progress lines to a log); returns its model.json."""
    from WeakAnnotateLib.jobs.worker import main as worker_main

    name = Path(spec["output"]).name
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    log = folder / f"{name}.log"
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        code = worker_main([str(path)])
    if code != 0:
        raise RuntimeError(f"job {path} ended with status {code}; see {log}")
    return json.loads((Path(spec["output"]) / "model.json").read_text(encoding="utf-8"))


def held_out_dice(model_dir: Path, cases: list, clicks: dict, with_points: bool) -> list[float]:
    """Dice of the model's prediction on each held-out scan's original grid (around its six clicks when the
    model was trained on click crops; the whole scan otherwise)."""
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.files.image_io import read_image, select_label
    from WeakAnnotateLib.networks.prediction import load_model, predict_image

    model = load_model(model_dir)
    out = []
    for case in cases:
        image = read_image(case.image)
        ref = select_label(read_image(case.mask).array, None)
        mask, _ = predict_image(model, image, clicks[case.id] if with_points else None)
        out.append(dice(ref, mask))
    return out


def label_dice(cases: list, clicks: dict, box_margin_mm: float) -> dict[str, dict[str, float]]:
    """Per case: the random walker from its six clicks, and its boxes (as the PET box jobs simulate them)."""
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.files.image_io import read_image, select_label
    from WeakAnnotateLib.methods.extreme_points.segmenter import segment_extreme_points
    from WeakAnnotateLib.methods.pet_boxes.boxes import box_dice

    out = {}
    for case in cases:
        image = read_image(case.image)
        ref = select_label(read_image(case.mask).array, None)
        rw = segment_extreme_points(image.array, image.geometry, clicks[case.id]).mask
        out[case.id] = {"rw": dice(ref, rw), "boxes": box_dice(ref, image.geometry, box_margin_mm)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 train / 3 test scans, budgets 0.5 and 1 min")
    ap.add_argument("--budgets", default="", help="comma-separated minutes (default 2,5,10; quick 0.5,1)")
    ap.add_argument("--train", type=int, default=20, help="the first N PET scans are trained on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="epn,petbox,full", help="subset of epn, petbox, full")
    ap.add_argument("--output", help="work folder (default: temporary, removed at the end)")
    ap.add_argument(
        "--channels", default="", help="U-Net features per level, e.g. 8,16,32,64 (default: sized for the window)"
    )
    args = ap.parse_args()
    budgets = [float(b) for b in (args.budgets or ("0.5,1" if args.quick else "2,5,10")).split(",")]
    methods = [m for m in args.methods.split(",") if m]
    os.environ["WEAKANNOTATE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from WeakAnnotateLib.data.dataset import DatasetFolder, create_from_cases, read_extreme_points
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.jobs.pseudo_labels import pseudo_label_dataset
    from WeakAnnotateLib.methods.pet_boxes.boxes import DEFAULT_MARGIN_MM

    cases = [c for c in load_cases() if c.id.startswith(PET_PREFIX) and c.id.endswith(PET_SUFFIX)]
    train_n = 6 if args.quick else args.train
    train, test = cases[:train_n], cases[train_n:]
    if args.quick:
        test = test[:3]
    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_budget_"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print(
        f"PET sarcomas: train on {len(train)} ({train[0].id}..{train[-1].id}), test on {len(test)} "
        f"({test[0].id}..{test[-1].id}); budgets {budgets} min; {args.threads} threads; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    ds = create_from_cases(work / "ds", [c.id for c in train + test])
    t = time.perf_counter()
    pseudo_label_dataset(DatasetFolder.load(ds.root))  # the extreme-point network's round-0 labels
    dataset = DatasetFolder.load(ds.root)
    clicks = {}
    for c in train + test:
        entry = dataset.case(c.id)
        clicks[c.id] = read_extreme_points(
            dataset.path(entry.annotations["extreme_points"]), read_image(c.image).geometry
        )
    labels = label_dice(test, clicks, DEFAULT_MARGIN_MM)
    print(f"pseudo-labels of {len(train) + len(test)} scans and the labels' Dice: {time.perf_counter() - t:.0f} s")

    common = {
        "dataset": str(ds.root),
        "epochs": 100000,  # the budget ends every job
        "steps_per_epoch": 25,  # a checkpoint every 25 steps
        "batch_size": 2,
        "patch_size": [32, 32, 32],
        "channels": [int(c) for c in args.channels.split(",") if c],  # []: sized for the window, 16-32-64-128
        "device": "cpu",
        "seed": 0,
        "train_cases": [c.id for c in train],
        "validation_fraction": 0.0,  # no validation pass: the budget goes to training; the held-out scans stay unseen
        "schedule": "poly",
        "augmentation": "standard",
        "foreground_fraction": 0.5,
    }
    crop = {"spacing_mm": 3.0, "padding_mm": 20.0}
    rows = []
    for budget in budgets:
        for method in methods:
            out = work / f"{method}_{budget:g}min"
            out.mkdir()
            t = time.perf_counter()
            if method == "epn":
                spec = {
                    **common,
                    **crop,
                    "method": "extreme_point_network",
                    "learning_rate": 3e-3,
                    "max_minutes": budget,
                    "extreme_point_network": {"rounds": 2, "random_walker": True, "convergence": 0.0},
                }
                infos = [run_job({**spec, "output": str(out / "job")}, out)]
                model, with_points, label_key = out / "job", True, "rw"
            elif method == "full":
                spec = {**common, **crop, "method": "full_supervision", "learning_rate": 3e-3, "max_minutes": budget}
                infos = [run_job({**spec, "output": str(out / "job")}, out)]
                model, with_points, label_key = out / "job", True, None
            else:
                box = {**common, "spacing_mm": 4.0, "padding_mm": 1000.0, "learning_rate": 1e-3}
                first = run_job(
                    {**box, "method": "pet_box_dice", "max_minutes": budget / 3, "output": str(out / "dice")}, out
                )
                second = run_job(
                    {
                        **box,
                        "method": "pet_box_mdice_ms",
                        "max_minutes": budget * 2 / 3,
                        "output": str(out / "mdice_ms"),
                        "pet_box_mdice_ms": {"init_model": str(out / "dice")},
                    },
                    out,
                )
                infos = [first, second]
                model, with_points, label_key = out / "mdice_ms", False, "boxes"
            load = os.getloadavg()[0]
            steps = sum(i["data"]["steps"] for i in infos)
            seconds = sum(i["training"]["training_seconds"] for i in infos)
            d = held_out_dice(model, test, clicks, with_points)
            row = {
                "method": method,
                "budget_min": budget,
                "steps": steps,
                "training_s": seconds,
                "steps_per_s": steps / seconds if seconds else float("nan"),
                "load": load,
                "dice": float(np.mean(d)),
                "per_case": d,
                "labels": float(np.mean([labels[c.id][label_key] for c in test])) if label_key else None,
                "job_s": time.perf_counter() - t,
                "channels": infos[-1]["network"]["channels"],
            }
            rows.append(row)
            lab = f"{row['labels']:.3f}" if row["labels"] is not None else "  –  "
            print(
                f"  {method:7} {budget:5g} min: Dice {row['dice']:.3f} (labels {lab}), {steps} steps, "
                f"{row['steps_per_s']:.2f} steps/s, load {load:.2f}, {row['job_s']:.0f} s with evaluation",
                flush=True,
            )
            shutil.rmtree(out / "job" / "crops", ignore_errors=True)

    names = {"epn": "extreme-point net", "petbox": "PET box + MS", "full": "full supervision"}
    label_names = {"epn": "RW from 6 clicks", "petbox": "boxes", "full": "reference"}
    print()
    print(f"Dice on {len(test)} held-out PET sarcoma scans (original grid) against wall-clock training minutes")
    print(
        f"{'method':18} {'labels':17} {'budget':>6} {'steps':>6} {'steps/s':>8} {'load':>5} | {'net Dice':>8} "
        f"{'labels Dice':>11} {'net - labels':>12}"
    )
    for r in rows:
        lab = f"{r['labels']:11.3f}" if r["labels"] is not None else f"{'–':>11}"
        diff = f"{r['dice'] - r['labels']:+12.3f}" if r["labels"] is not None else f"{'–':>12}"
        print(
            f"{names[r['method']]:18} {label_names[r['method']]:17} {r['budget_min']:5g}m {r['steps']:6d} "
            f"{r['steps_per_s']:8.2f} {r['load']:5.2f} | {r['dice']:8.3f} {lab} {diff}"
        )
    print()
    for method in ("epn", "petbox"):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        passed = [r for r in mine if r["dice"] > r["labels"]]
        if passed:
            first = passed[0]
            print(
                f"{names[method]}: passes its labels at {first['budget_min']:g} min "
                f"({first['dice']:.3f} vs {first['labels']:.3f})."
            )
        else:
            best = max(mine, key=lambda r: r["dice"])
            within = mine[-1]["budget_min"]
            print(
                f"{names[method]}: does not pass its labels within {within:g} min "
                f"(best {best['dice']:.3f} at {best['budget_min']:g} min vs labels {best['labels']:.3f})."
            )
    ch = "-".join(str(c) for c in rows[0]["channels"]) if rows else ""
    print(
        f"U-Net {ch}, 32^3 windows, batch 2, Adam + poly schedule, RandCropByPosNegLabeld (pos 0.5), flips, "
        f"quarter turns, RandAffined, intensity scale/shift/gamma/noise; click crops at 3 mm (+20 mm), "
        f"whole scans at 4 mm for the boxes; {args.threads} CPU threads."
    )
    print(f"Total {time.perf_counter() - t_all:.0f} s wall; load average {os.getloadavg()[0]:.2f}")
    (work / "results.json").write_text(json.dumps({"rows": rows, "labels": labels}, indent=1), encoding="utf-8")
    if args.output:
        print(f"Results: {work / 'results.json'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
