"""Speed of ExtremePointSeg (six clicks, a moved click, corrective clicks) against scikit-image's random walker,
Grow from seeds, and our own full-resolution solve, on real boxes from a PET lesion to a whole brain.

Run: ``.venv/bin/python benchmarks/bench_extreme_points_speed.py [--data DIR] [--quick]``

Boxes: a PET lesion (STS_001), the BraTS pat0001 whole tumour (FLAIR, all labels), and two organ-size boxes: the
BraTS pat0001 brain mask on FLAIR with the default 20 mm padding (155×216×176 voxels, 5.9 M) and with 40 mm
(the whole 155×240×240 volume, 8.9 M). Clicks are simulated exactly from the reference. Each method runs in its
own subprocess so that its peak RSS (``ru_maxrss``) is its own.

* scikit-image (``random_walker(mode="cg_j", tol=1e-3)``) gets the box our pipeline crops, normalised the same
  way, and the seeds of our pipeline with the plain random walker (no priors: scikit-image has none; "same
  problem"); ``--quick`` skips it on the organ boxes (minutes, GBs).
* ours: the shipped pipeline — first solve, ``update`` after one click moved 2 mm (warm start), then three
  corrective clicks of the robot user (``bench_corrective_clicks.robot_click``) with a warm
  :class:`~WeakAnnotateLib.methods.extreme_points.corrective.CorrectionSession` (seconds per click);
* full-res: the same pipeline with the organ-scale coarse-to-fine switched off (``large_voxels`` = ∞): what it
  replaces on the organ boxes (identical to ours on the smaller boxes);
* Grow from seeds (Slicer's GrowCut engine): fed the same six clicks, then the same robot clicks as 2.5 mm
  balls (``bench_corrective_clicks.gfs_with_clicks``), seconds per run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
SAME_PROBLEM = {"prior_weight": 0.0, "geodesic_weight": 0.0, "edge_contrast": 0.0}  # scikit-image: the plain RW
FULL_RES = {"large_voxels": 2**62}

BRATS = "brats/pat0001_1/Flair_subtrMeanDivStd.nii.gz"
CASES = {  # name: (image, mask, padding_mm)
    "PET lesion (STS_001)": ("ibsi_sts/STS_001/PET_image.nii.gz", "ibsi_sts/STS_001/PET_mask.nii.gz", 20.0),
    "BraTS tumour (pat0001 FLAIR)": (BRATS, "brats/pat0001_1/OTMultiClass.nii.gz", 20.0),
    "organ: brain (pat0001 FLAIR)": (BRATS, "brats/pat0001_1/brainmask.nii.gz", 20.0),
    "organ: brain, 40 mm padding": (BRATS, "brats/pat0001_1/brainmask.nii.gz", 40.0),
}
ORGANS = ("organ: brain (pat0001 FLAIR)", "organ: brain, 40 mm padding")
N_CLICKS = 3


def _load(data: Path, case: str):  # noqa: ANN202
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image

    image_rel, mask_rel, _ = CASES[case]
    image = read_image(data / image_rel)
    ref = read_image(data / mask_rel).array != 0
    points, _ = extreme_points(ref, image.geometry)
    return image, ref, points


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ours(data: Path, case: str, out: Path, params_json: str) -> None:
    from bench_corrective_clicks import robot_click
    from WeakAnnotateLib.methods.extreme_points.corrective import CorrectionSession
    from WeakAnnotateLib.methods.extreme_points.segmenter import ExtremePointParams, ExtremePointSegmenter

    image, ref, points = _load(data, case)
    g = image.geometry
    params = ExtremePointParams(padding_mm=CASES[case][2], **json.loads(params_json))
    seg = ExtremePointSegmenter(image.array, g, params)
    t = time.perf_counter()
    first = seg.segment(points)
    total = time.perf_counter() - t
    moved = points.copy()
    moved[0] += 2.0 * g.direction[:, 1]
    t = time.perf_counter()
    second = seg.update(moved)
    rerun = time.perf_counter() - t
    session = CorrectionSession(image.array, g, first.mask, intensity_range=first.diagnostics["intensity_range"])
    mask, clicks, click_times = first.mask, [], []
    for _ in range(N_CLICKS):
        idx, positive = robot_click(ref, mask, g.array_spacing)
        clicks.append([idx.tolist(), bool(positive)])
        t = time.perf_counter()
        mask = session.add(g.index_to_ras(idx[None])[0], positive).mask
        click_times.append(time.perf_counter() - t)
    np.savez_compressed(out, mask=first.mask, corrected=mask)
    d = first.diagnostics
    info = {
        "time": total,
        "timings": d["timings_s"],
        "backend": d["backend"],
        "iterations": d["iterations"],
        "rerun": rerun,
        "rerun_iterations": second.diagnostics["iterations"],
        "box": d["box_shape"],
        "unknowns": d["unknowns"],
        "click_s": click_times,
        "clicks": clicks,
        "rss_mb": _maxrss_mb(),
    }
    print(json.dumps(info))


def worker_gfs(data: Path, case: str, out: Path, clicks_json: str) -> None:
    from bench_corrective_clicks import gfs_with_clicks

    image, ref, points = _load(data, case)
    g = image.geometry
    six = g.ras_to_index(points)
    t = time.perf_counter()
    mask = gfs_with_clicks(image.array, g, six, [])
    first = time.perf_counter() - t
    clicks, times = [], []
    for idx, positive in json.loads(clicks_json):
        clicks.append((np.asarray(idx), positive))
        t = time.perf_counter()
        gfs_with_clicks(image.array, g, six, clicks)
        times.append(time.perf_counter() - t)
    np.savez_compressed(out, mask=mask)
    print(json.dumps({"time": first, "click_s": times, "rss_mb": _maxrss_mb()}))


def worker_skimage(inputs: Path, out: Path) -> None:
    from skimage.segmentation import random_walker

    z = np.load(inputs)
    box, seeds = z["box"], z["seeds"]
    t = time.perf_counter()
    labels = random_walker(box, seeds, beta=130.0, mode="cg_j", tol=1e-3)
    elapsed = time.perf_counter() - t
    np.savez_compressed(out, mask=labels == 1)
    print(json.dumps({"time": elapsed, "rss_mb": _maxrss_mb()}))


def _sub(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout, env=os.environ.copy()
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="skip scikit-image on the organ boxes (minutes, GBs)")
    ap.add_argument("--worker", choices=["ours", "gfs", "skimage"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.worker == "ours":
        worker_ours(args.data, args.case, args.out, args.params)
        return 0
    if args.worker == "gfs":
        worker_gfs(args.data, args.case, args.out, args.params)
        return 0
    if args.worker == "skimage":
        worker_skimage(args.inputs, args.out)
        return 0

    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.methods.extreme_points.segmenter import (
        ExtremePointParams,
        normalise_intensities,
        segment_extreme_points,
    )

    if not (args.data / "cases.json").is_file():
        print(f"data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    print(
        f"cores: {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}; each method in its own process; "
        "times in s, peak RSS in MB\n"
    )
    header = (
        f"{'case':29} {'box (k,j,i)':>13} {'Mvox':>4} | {'skimage':>7} {'Dice':>5} | {'full-res':>8} {'Dice':>5} | "
        f"{'ours':>5} {'RSS':>5} {'Dice':>5} {'re-run':>6} {'s/click':>7} {'Dice+3':>6} | {'GfS':>5} {'Dice':>5} "
        f"{'s/click':>7}"
    )
    print(header)
    print("-" * len(header))
    backends: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for n, case in enumerate(CASES):
            image, ref, points = _load(args.data, case)
            pad = CASES[case][2]
            worker = ["--case", case, "--data", str(args.data)]
            ours_out, full_out, gfs_out = tmpdir / f"o{n}.npz", tmpdir / f"f{n}.npz", tmpdir / f"g{n}.npz"
            ours = _sub(["--worker", "ours", *worker, "--out", str(ours_out)], 900)
            z = np.load(ours_out)
            d_ours, d_corr = dice(ref, z["mask"]), dice(ref, z["corrected"])
            if case in ORGANS:
                full = _sub(
                    ["--worker", "ours", *worker, "--out", str(full_out), "--params", json.dumps(FULL_RES)], 900
                )
                full_cols = f"{full['time']:8.2f} {dice(ref, np.load(full_out)['mask']):5.3f}"
            else:
                full_cols = f"{'= ours':>14}"
            gfs = _sub(["--worker", "gfs", *worker, "--out", str(gfs_out), "--params", json.dumps(ours["clicks"])], 900)
            d_gfs = dice(ref, np.load(gfs_out)["mask"])
            sk_cols = f"{'skipped':>13}"
            if not (args.quick and case in ORGANS):
                plain = segment_extreme_points(
                    image.array, image.geometry, points, ExtremePointParams(padding_mm=pad, **SAME_PROBLEM)
                )
                inputs, sk_out = tmpdir / f"in{n}.npz", tmpdir / f"sk{n}.npz"
                np.savez(inputs, box=normalise_intensities(image.array[plain.box_slices]), seeds=plain.seeds)
                try:
                    sk = _sub(["--worker", "skimage", "--inputs", str(inputs), "--out", str(sk_out)], 1800)
                    full_mask = np.zeros(ref.shape, bool)
                    full_mask[plain.box_slices] = np.load(sk_out)["mask"]
                    sk_cols = f"{sk['time']:7.2f} {dice(ref, full_mask):5.3f}"
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    sk_cols = f"failed: {e}"[:13]
            box = ours["box"]
            print(
                f"{case:29} {'x'.join(map(str, box)):>13} {np.prod(box) / 1e6:4.1f} | {sk_cols} | {full_cols} | "
                f"{ours['time']:5.2f} {ours['rss_mb']:5.0f} {d_ours:5.3f} {ours['rerun']:6.2f} "
                f"{np.mean(ours['click_s']):7.3f} {d_corr:6.3f} | {gfs['time']:5.2f} {d_gfs:5.3f} "
                f"{np.mean(gfs['click_s']):7.3f}",
                flush=True,
            )
            backends.add(ours["backend"])
    print(
        "\nDice against the reference mask. skimage: random_walker(mode='cg_j', tol=1e-3) on our box and plain-RW "
        "seeds (the problem it solves). full-res: ours with the organ-scale coarse-to-fine off. ours: first solve, RSS,"
        " "
        f"re-run after one click moved 2 mm, mean seconds per corrective click ({N_CLICKS} robot clicks, warm), Dice "
        "after them. GfS: Grow from seeds on the six clicks, then per click with the same clicks as 2.5 mm balls."
    )
    print(f"random-walker backend: {', '.join(sorted(backends))}; load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
