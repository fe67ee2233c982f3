"""The Weak-Net paper's Table 1 in miniature (Goli et al., issue 6), on the real data here.

    .venv/bin/python benchmarks/bench_weak_net.py [--steps N] [--quick] [--output DIR]

What it does, per task (BraTS FLAIR whole tumour: 3 patients, leave-one-out; PET soft-tissue sarcoma: 16
patients, 12 train / 4 test):

1. a dataset folder of the cases, each annotated with N = 50 *simulated* surface points (seeded,
   ``simulate.surface_points`` from the reference mask) — the clicks a user would give;
2. "template alone": the active-surface template of each held-out case's points, rasterised on the image
   grid, compared with the reference (no training);
3. three training jobs per fold through the real worker (same code path as ``weakannotate train``), on the same
   crops (points' box + 20 mm, resampled isotropic), tiny U-Net, the same number of steps: Weak-Net with
   λ = 0 (U-Net trained on the templates: the paper's template-alone ablation), Weak-Net with the paper's
   λ = 1e-4 (+ the reconstruction U-Net), and full supervision on the reference masks (Dice loss);
4. Dice and IoU on the held-out cases on the original image grid (IoU of a case = Dice / (2 − Dice)), and the
   effort each row cost: points per case, and the paper's effort proxy for a full annotation (the sum of the
   contour lengths in voxels over every axial slice of the reference) — the paper's "Annotation Effort (%)" is
   the points as a share of that.

The paper trained 3D U-Nets to convergence on GPUs on hippocampus MRI, liver CT and FIB-SEM synaptic junctions;
this runs in under ten minutes on 2 shared CPU cores, so the networks, grids and schedules are tiny and the numbers
are a smoke test of the method's trends, not a reproduction. Nothing is tuned on the test cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extreme_point_network import run_job, tasks  # noqa: E402  (the same jobs runner and data splits)

PAPER_TASKS = ("Hippocampus MRI", "Liver CT", "Syn. junction EM")
PAPER = {  # Table 1 of the paper: IoU (%) with human annotations, and annotation effort (% of full contouring)
    "baseline": ((71.2, 81.9, 68.2), (12.4, 6.9, 10.8)),  # U-Net on a few fully annotated 2D slices
    "weak_net": ((74.2, 84.2, 71.5), (10.1, 6.8, 9.2)),
    "full": ((79.3, 87.3, 73.3), (None, None, None)),  # effort not given (every voxel)
}
ROWS = (
    ("template", "template alone (no training)", None),
    ("lambda0", "Weak-Net λ=0 (templates)", None),
    ("weak_net", "Weak-Net λ=1e-4", "weak_net"),
    ("full", "full supervision", "full"),
    ("baseline", "slice-annotated U-Net", "baseline"),
)
CONFIGS = {
    "lambda0": {"method": "weak_net", "weak_net_lambda": 0.0},
    "weak_net": {"method": "weak_net", "weak_net_lambda": 1e-4},
    "full": {"method": "full_supervision"},
}
POINTS = 50


def contour_voxels(mask: np.ndarray) -> int:
    """The paper's effort for a full annotation: contour length (boundary voxels) summed over axial slices."""
    from scipy import ndimage

    total = 0
    for k in range(mask.shape[0]):
        sl = mask[k]
        if sl.any():
            total += int((sl & ~ndimage.binary_erosion(sl, border_value=0)).sum())
    return total


def case_facts(ds, case_id: str) -> dict:
    """Template-alone Dice/IoU on the image grid, the number of points and the full-contouring effort."""
    from WeakAnnotateLib.data.dataset import read_reference
    from WeakAnnotateLib.evaluation.metrics import dice, iou
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.surface_template.active_surface import fit_surface
    from WeakAnnotateLib.scene.markups_io import read_points

    entry = ds.case(case_id)
    image = read_image(ds.path(entry.image))
    ref = read_reference(ds, entry, image.geometry)
    points, _ = read_points(ds.path(entry.annotations["surface_points"]), min_count=5, geometry=image.geometry)
    t = time.perf_counter()
    template = fit_surface(points, image.geometry).rasterize()
    seconds = time.perf_counter() - t
    return {
        "dice": dice(ref, template),
        "iou": iou(ref, template),
        "points": len(points),
        "contour": contour_voxels(ref),
        "template_seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="training steps per job (default 160, quick 8)")
    parser.add_argument("--quick", action="store_true", help="one fold, fewer cases and steps (a smoke run)")
    parser.add_argument("--output", help="work folder (default: a temporary folder, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    steps = args.steps or (8 if args.quick else 160)
    steps_per_epoch = min(8, steps)
    epochs = max(1, round(steps / steps_per_epoch))
    os.environ["WEAKANNOTATE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from WeakAnnotateLib.data.dataset import DatasetFolder
    from WeakAnnotateLib.methods.surface_template.weak_net import surface_point_dataset

    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_weak_net_"))
    if work.exists() and any(work.iterdir()):
        print(f"{work} is not empty; give a new --output folder.", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(f"load average before: {tuple(round(x, 2) for x in load_before)}, cpus: {os.cpu_count()}", flush=True)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    common = {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": 2,
        "patch_size": [32, 32, 32],
        "channels": [8, 16, 32],
        "learning_rate": 3e-3,
        "padding_mm": 20.0,
        "device": "cpu",
        "seed": 0,
    }
    results: dict[str, dict] = {}
    for task in tasks(args.quick):
        t_task = time.perf_counter()
        root = work / task["name"].replace(" ", "_")
        surface_point_dataset(root / "ds", task["cases"], points=POINTS, seed=0)
        ds = DatasetFolder.load(root / "ds")
        facts = {c: case_facts(ds, c) for c in task["cases"]}
        res: dict = {"dice": {k: {} for k in CONFIGS}, "facts": facts, "folds": len(task["folds"])}
        res["dice"]["template"] = {}
        for fold, (train, test) in enumerate(task["folds"]):
            for case in test:
                res["dice"]["template"][case] = facts[case]["dice"]
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
                t = time.perf_counter()
                out = run_job(spec, root)
                per_case = out["model"]["validation"]["per_case_native"]
                res["dice"][key].update(per_case)
                print(
                    f"  {task['name']} fold {fold + 1}/{len(task['folds'])} {key:9s} "
                    f"Dice {np.mean(list(per_case.values())):.3f} ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
        res["seconds"] = time.perf_counter() - t_task
        results[task["name"]] = res

    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    load_after = os.getloadavg()
    names = list(results)
    print()
    print("Table 1 — ours: mean Dice / IoU on held-out cases (original image grid); effort = points per case")
    print(f"{'':30s}" + "".join(f"{n:>22s}" for n in names) + f"{'effort':>22s}")
    for key, label, _ in ROWS[:4]:
        cells = []
        for n in names:
            d = np.asarray(list(results[n]["dice"][key].values()), dtype=float)
            cells.append(f"{d.mean():.3f} / {np.mean(d / (2 - d)):.3f}".rjust(22))
        effort = "reference masks" if key == "full" else f"{POINTS} points/case"
        print(f"{label:30s}" + "".join(cells) + f"{effort:>22s}")
    print()
    print("Paper's Table 1 (human annotations; their datasets, not ours): IoU % | annotation effort %")
    print(f"{'':30s}" + "".join(f"{t:>22s}" for t in PAPER_TASKS))
    for _key, label, paper_key in ROWS[2:]:
        ious, efforts = PAPER[paper_key]
        cells = [f"{i:.1f} | " + (f"{e:.1f} %" if e else "full") for i, e in zip(ious, efforts, strict=True)]
        print(f"{label:30s}" + "".join(c.rjust(22) for c in cells))
    print()
    for n in names:
        r = results[n]
        f = r["facts"].values()
        print(
            f"{n}: {len(r['dice']['template'])} test case(s) over {r['folds']} fold(s); {POINTS} points/case = "
            f"{np.mean([100 * POINTS / x['contour'] for x in f]):.1f} % of the full-contouring effort "
            f"(mean {np.mean([x['contour'] for x in f]):.0f} contour voxels over axial slices); template fit "
            f"{np.mean([x['template_seconds'] for x in f]):.2f} s/case; {r['seconds']:.0f} s"
        )
    print(
        f"Budget: {epochs} epochs x {steps_per_epoch} steps = {epochs * steps_per_epoch} steps per job (batch 2, "
        f"32^3 windows), U-Net channels 8-16-32 (λ=1e-4 adds the reconstruction U-Net), {args.threads} CPU threads."
    )
    print(f"Total: {wall:.0f} s wall, {cpu:.0f} s CPU of this process.")
    print(f"load average after: {tuple(round(x, 2) for x in load_after)}")
    summary = {
        "results": results,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": epochs * steps_per_epoch,
        "load_before": load_before,
        "load_after": load_after,
        "paper": PAPER,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    print(f"Results: {work / 'results.json'}")
    if not args.output and not args.keep:
        for n in names:
            shutil.rmtree(work / n.replace(" ", "_"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
