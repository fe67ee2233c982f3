"""The extreme-point paper's experiment in miniature (Roth et al., Table 1 and Fig. 3), on the real data here.

    .venv/bin/python benchmarks/bench_extreme_point_network.py [--quick] [--output DIR]

What it does, per task (BraTS FLAIR whole tumour: 3 patients, leave-one-out; PET soft-tissue sarcoma: 16
patients, 12 train / 4 test):

1. a dataset folder of the cases with *simulated* six extreme points (from the reference mask) — the clicks
   a user would give — and the random-walker pseudo-label of steps 1–2 for every case ("Rnd. walk. init");
2. four training jobs through the real worker (same code path as ``weakannotate train``), each on the same
   crops (points' box + 20 mm, resampled isotropic), tiny U-Net, Dice loss, the same number of steps:
   weakly supervised w/o RW, w RW without the points channel, w RW (the paper's method), and full
   supervision on the reference masks;
3. Dice on the held-out cases on the original image grid (Table 1), and Dice after every round on the
   resampled crop (Fig. 3).

The paper trained ResNet-18-encoder networks on 1 mm volumes on V100 GPUs until convergence; this runs in
about a quarter of an hour on 2 CPU cores, so the networks, grids and schedules are tiny and the numbers
are a smoke test of the method's trends, not a reproduction. Nothing is tuned on the test cases.
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

PAPER = {  # Table 1 of the paper (Dice), columns spleen CT, liver CT, prostate MRI, LV ultrasound
    "rw_init": (0.852, 0.822, 0.709, 0.808),
    "wo_rw": (0.905, 0.918, 0.758, 0.876),
    "rw_no_points": (0.924, 0.935, 0.779, 0.860),
    "rw": (0.926, 0.936, 0.830, 0.880),
    "full": (0.963, 0.958, 0.923, 0.903),
}
PAPER_TASKS = ("Spleen CT", "Liver CT", "Prostate MR", "LV US")
ROWS = (
    ("rw_init", "Rnd. walk. init"),
    ("wo_rw", "Weak. sup. (w/o RW)"),
    ("rw_no_points", "Weak. sup. (w RW; no extr.)"),
    ("rw", "Weak. sup. (w RW)"),
    ("full", "fully supervised"),
)
PREVIOUS_RECIPE = {"schedule": "constant", "augmentation": "none", "foreground_fraction": 0.0}
CONFIGS = {
    "wo_rw": {"method": "extreme_point_network", "random_walker": False, "points_channel": True},
    "rw_no_points": {"method": "extreme_point_network", "random_walker": True, "points_channel": False},
    "rw": {"method": "extreme_point_network", "random_walker": True, "points_channel": True},
    "full": {"method": "full_supervision"},
}


def tasks(quick: bool) -> list[dict]:
    brats = [f"brats_brats_2013_pat000{n}_1_Flair" for n in (1, 2, 3)]
    pet = [f"ibsi_STS_{n:03d}_PET" for n in range(1, 17)]
    if quick:
        return [
            {"name": "BraTS FLAIR", "cases": brats, "folds": [(brats[:2], brats[2:])], "spacing_mm": 3.0},
            {"name": "PET sarcoma", "cases": pet[:6], "folds": [(pet[:4], pet[4:6])], "spacing_mm": 4.0},
        ]
    loo = [([c for c in brats if c != t], [t]) for t in brats]
    return [
        {"name": "BraTS FLAIR", "cases": brats, "folds": loo, "spacing_mm": 3.0},
        {"name": "PET sarcoma", "cases": pet, "folds": [(pet[:12], pet[12:])], "spacing_mm": 4.0},
    ]


def run_job(spec: dict, folder: Path) -> dict:
    """One job through the worker, in this process (stdout to a log); returns model.json and progress."""
    from WeakAnnotateLib.jobs.worker import main as worker_main

    path = folder / f"{Path(spec['output']).name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    log = folder / f"{Path(spec['output']).name}.log"
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        code = worker_main([str(path)])
    if code != 0:
        raise RuntimeError(f"job {path} ended with status {code}; see {log}")
    out = Path(spec["output"])
    events = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    return {"model": json.loads((out / "model.json").read_text()), "events": events}


def round_dice(events: list[dict]) -> list[float]:
    """Validation (test) Dice at the end of each round: the epoch line just before each "round" line."""
    out, last = [], None
    for e in events:
        if e["event"] == "epoch":
            last = e
        elif e["event"] == "round" and last is not None:
            out.append(last["val_dice"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one fold, fewer cases and steps (a smoke run)")
    parser.add_argument("--output", help="work folder (default: a temporary folder, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per round (default 20, quick 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 8, quick 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--recipe",
        choices=("standard", "previous"),
        default="standard",
        help="the shared training recipe (training/recipe.py), or the previous one (uniform windows, no "
        "augmentation, constant learning rate) that the numbers in docs/training.md were measured with",
    )
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 20)
    steps = args.steps or (2 if args.quick else 8)
    os.environ["WEAKANNOTATE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from WeakAnnotateLib.data.dataset import DatasetFolder, create_from_cases
    from WeakAnnotateLib.jobs.pseudo_labels import pseudo_label_dataset

    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_epn_"))
    if work.exists() and any(work.iterdir()):
        print(f"{work} is not empty; give a new --output folder.", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    results: dict[str, dict] = {}
    common = {
        "epochs": epochs,
        "rounds": args.rounds,
        "steps_per_epoch": steps,
        "batch_size": 2,
        "patch_size": [32, 32, 32],
        "channels": [8, 16, 32],
        "learning_rate": 3e-3,
        "padding_mm": 20.0,
        "convergence": 0.0,  # run every round, so that Fig. 3 has all of them
        "device": "cpu",
        "seed": 0,
        **(PREVIOUS_RECIPE if args.recipe == "previous" else {}),
    }
    for task in tasks(args.quick):
        t_task = time.perf_counter()
        root = work / task["name"].replace(" ", "_")
        ds = create_from_cases(root / "ds", task["cases"])
        init = {r["case"]: r for r in pseudo_label_dataset(DatasetFolder.load(ds.root))}
        res: dict = {
            "native": {k: {} for k in CONFIGS},
            "rounds": {k: [] for k in CONFIGS},
            "spacing_mm": task["spacing_mm"],
            "folds": len(task["folds"]),
        }
        res["native"]["rw_init"] = {}
        for fold, (train, test) in enumerate(task["folds"]):
            for case in test:
                res["native"]["rw_init"][case] = init[case].get("dice_vs_reference")
            for key, cfg in CONFIGS.items():
                spec = {
                    **common,
                    **cfg,
                    "dataset": str(ds.root),
                    "output": str(root / f"{key}_fold{fold}"),
                    "train_cases": train,
                    "validation_cases": test,
                    "spacing_mm": task["spacing_mm"],
                }
                if key == "full":  # the same number of steps in one round
                    spec["epochs"] = epochs * args.rounds
                t = time.perf_counter()
                out = run_job(spec, root)
                res["native"][key].update(out["model"]["validation"]["per_case_native"])
                rd = round_dice(out["events"]) if key != "full" else [out["model"]["validation"]["dice_crop"]]
                res["rounds"][key].append(rd)
                print(
                    f"  {task['name']} fold {fold + 1}/{len(task['folds'])} {key:13s} "
                    f"Dice {np.mean(list(out['model']['validation']['per_case_native'].values())):.3f} "
                    f"rounds {[round(x, 3) for x in rd]} ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
        res["seconds"] = time.perf_counter() - t_task
        res["init_seconds_per_case"] = float(np.mean([r["seconds"] for r in init.values()]))
        results[task["name"]] = res

    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    names = list(results)
    print()
    print("Table 1 — mean Dice on held-out cases (ours: original image grid)")
    header = f"{'':30s}" + "".join(f"{t:>13s}" for t in PAPER_TASKS) + " |" + "".join(f"{n:>14s}" for n in names)
    print(header)
    print(f"{'':30s}{'(paper)':>13s}{'':39s} |" + "".join(f"{'(ours)':>14s}" for _ in names))
    for key, label in ROWS:
        ours = []
        for n in names:
            vals = [v for v in results[n]["native"][key].values() if v is not None]
            ours.append(f"{np.mean(vals):14.3f}" if vals else f"{'n/a':>14s}")
        print(f"{label:30s}" + "".join(f"{v:13.3f}" for v in PAPER[key]) + " |" + "".join(ours))
    print()
    print("Fig. 3 — Dice on held-out crops after each round (mean over folds; round 0 = RW init, original grid)")
    for n in names:
        for key in ("rw", "wo_rw", "rw_no_points"):
            per_fold = [r for r in results[n]["rounds"][key] if r]
            mean_rounds = np.mean(np.asarray(per_fold, dtype=float), axis=0) if per_fold else []
            init = np.mean([v for v in results[n]["native"]["rw_init"].values() if v is not None])
            series = " → ".join(f"{v:.3f}" for v in [init, *mean_rounds])
            print(f"  {n:12s} {key:13s} {series}")
    print()
    for n in names:
        r = results[n]
        print(
            f"{n}: {len(r['native']['rw_init'])} test case(s) over {r['folds']} fold(s), crops at "
            f"{r['spacing_mm']} mm, {r['seconds']:.0f} s (RW init {r['init_seconds_per_case']:.1f} s/case)"
        )
    print(
        f"Budget: {epochs} epochs x {steps} steps (batch 2, 32^3 windows) per round, {args.rounds} rounds; "
        f"full supervision the same {epochs * args.rounds * steps} steps; U-Net channels 8-16-32; "
        f"{args.threads} CPU threads."
    )
    print(f"Total: {wall:.0f} s wall, {cpu:.0f} s CPU of this process.")
    summary = {
        "results": results,
        "wall_s": wall,
        "cpu_s": cpu,
        "epochs": epochs,
        "steps": steps,
        "rounds": args.rounds,
        "paper": PAPER,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    print(f"Results: {work / 'results.json'}")
    if not args.output and not args.keep:
        shutil.rmtree(work / "BraTS_FLAIR", ignore_errors=True)
        shutil.rmtree(work / "PET_sarcoma", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
