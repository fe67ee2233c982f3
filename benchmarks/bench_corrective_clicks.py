"""Corrective clicks with a robot user: ours against Grow from seeds fed the same clicks.

Run: ``.venv/bin/python benchmarks/bench_corrective_clicks.py [--data DIR] [--clicks 10] [--dev] [--cases]``

Protocol (the field's robot user, e.g. Sofiiuk et al. 2022, nnInteractive): start from each method's own
segment from the six exact extreme clicks; then, ``--clicks`` times, find the largest 3D connected region of
error (missed and false voxels taken separately, 26-connected), click at its centre — the voxel farthest from
the region's border, in mm — positive on a missed region, negative on a false one, and re-segment with all
clicks so far. Both methods get the clicks the robot derives from their own errors.

* ours: :class:`~WeakAnnotateLib.methods.extreme_points.corrective.CorrectionSession` on the six-click segment
  (warm-started, in process, timed per click);
* Grow from seeds (Slicer's GrowCut engine): its six-click seeds (``bench_extreme_points_accuracy.growcut_seeds``)
  plus each click as a 2.5 mm ball of its label (1 object, 2 background; the later click wins), the background
  seeds beyond the box of the six clicks *and the positive clicks* grown by 3 mm (what a user does: a positive
  click beyond the box erases the background paint there), re-run on that box.

Printed per group: mean Dice after 0…N clicks, NoC@85 and NoC@90 (clicks needed to reach that Dice; N + 1 =
never), and the mean seconds per click. ``--dev`` runs the development cases (parameters were chosen there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_extreme_points_accuracy as acc  # noqa: E402  (the case list and the Grow-from-seeds driver)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CLICK_RADIUS_MM = 2.5


def robot_click(ref: np.ndarray, mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """(array index, positive) of the next click: the centre of the largest error region; None if no error."""
    errors = []
    for positive, region in ((True, ref & ~mask), (False, mask & ~ref)):
        if not region.any():
            continue
        coords = np.argwhere(region)
        lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
        crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        labels, n = ndimage.label(region[crop], structure=np.ones((3, 3, 3)))
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        biggest = int(np.argmax(sizes))
        errors.append((int(sizes[biggest]), positive, labels == biggest, lo))
    if not errors:
        return None
    _, positive, component, lo = max(errors, key=lambda e: e[0])
    inside = np.pad(component, 1)
    dist = ndimage.distance_transform_edt(inside, sampling=spacing)[1:-1, 1:-1, 1:-1]
    centre = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.asarray(centre) + lo, positive


def gfs_with_clicks(array: np.ndarray, geometry, six_index: np.ndarray, clicks: list[tuple[np.ndarray, bool]]):  # noqa: ANN001, ANN201
    """Grow from seeds: six-click strokes, click balls, background beyond the six + positive clicks' box + 3 mm."""
    from WeakAnnotateLib.methods.extreme_points.band import ellipsoid_offsets, stamp
    from WeakAnnotateLib.methods.extreme_points.segmenter import pair_points

    spacing = geometry.array_spacing
    shape = np.asarray(array.shape)
    pairs, _ = pair_points(six_index.astype(float), spacing)
    grow = np.concatenate([six_index] + [idx[None] for idx, positive in clicks if positive])
    r = np.ceil(CLICK_RADIUS_MM / spacing).astype(int)
    every = np.concatenate([six_index] + [idx[None] for idx, _ in clicks])
    c0, c1, i0, i1 = acc.click_box(grow, array.shape, spacing, 3.0)
    c0 = np.minimum(c0, np.maximum(every.min(axis=0) - r - 2, 0))
    c1 = np.maximum(c1, np.minimum(every.max(axis=0) + r + 3, shape))
    crop = tuple(slice(int(a), int(b)) for a, b in zip(c0, c1, strict=True))
    seeds = np.full(tuple(int(b - a) for a, b in zip(c0, c1, strict=True)), 2, np.int16)
    seeds[tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(i0, i1, c0, strict=True))] = 0
    for a, b in pairs:
        seeds[tuple((acc._trimmed_line(six_index[a], six_index[b]) - c0).T)] = 1
    offsets = ellipsoid_offsets(CLICK_RADIUS_MM / spacing)
    for idx, positive in clicks:  # in order: the later click wins
        seeds[stamp(seeds.shape, (idx - c0)[None], offsets)] = 1 if positive else 2
    labels = acc.grow_cut(array[crop], spacing, seeds)
    mask = np.zeros(array.shape, bool)
    mask[crop] = labels == 1
    return mask


def noc(curve: list[float], threshold: float) -> int:
    """Clicks needed to reach ``threshold`` (0 if the initial segment does; len(curve) if never)."""
    for k, d in enumerate(curve):
        if d >= threshold:
            return k
    return len(curve)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--dev", action="store_true", help="the development cases (no reported group) instead")
    ap.add_argument("--params", default="{}", help="CorrectionParams overrides as JSON")
    ap.add_argument("--only", default="", help="comma-separated group-name substrings or case names to run")
    ap.add_argument("--cases", action="store_true", help="also print every case's curves")
    ap.add_argument("--no-gfs", action="store_true", help="skip Grow from seeds")
    args = ap.parse_args()
    if not (args.data / "cases.json").is_file():
        print(f"data not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.extreme_points.corrective import CorrectionParams, CorrectionSession
    from WeakAnnotateLib.methods.extreme_points.segmenter import segment_extreme_points

    params = CorrectionParams(**json.loads(args.params))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.clicks} robot clicks; params {args.params}", flush=True)
    only = [s for s in args.only.split(",") if s]
    results: dict[str, dict[str, list]] = {}
    n_clicks = args.clicks
    for group, name, image_rel, mask_rel, label in acc.case_list(args.data, args.dev):
        if only and not any(s in group or s == name for s in only):
            continue
        image = read_image(args.data / image_rel)
        values = read_image(args.data / mask_rel).array
        ref = values != 0 if label is None else values == label
        if not ref.any():
            continue
        geometry, spacing = image.geometry, image.geometry.array_spacing
        points, _ = extreme_points(ref, geometry)
        six_index = geometry.ras_to_index(points)
        methods = {"ours": [], "GfS": []}
        times = {"ours": [], "GfS": []}
        # ours
        six = segment_extreme_points(image.array, geometry, points)
        session = CorrectionSession(
            image.array, geometry, six.mask, params, intensity_range=six.diagnostics["intensity_range"]
        )
        mask = six.mask
        methods["ours"].append(dice(ref, mask))
        for _ in range(n_clicks):
            click = robot_click(ref, mask, spacing)
            if click is None:
                methods["ours"].append(methods["ours"][-1])
                continue
            idx, positive = click
            t = time.perf_counter()
            mask = session.add(geometry.index_to_ras(idx[None])[0], positive).mask
            times["ours"].append(time.perf_counter() - t)
            methods["ours"].append(dice(ref, mask))
        # Grow from seeds
        if not args.no_gfs:
            clicks: list[tuple[np.ndarray, bool]] = []
            mask = gfs_with_clicks(image.array, geometry, six_index, clicks)
            methods["GfS"].append(dice(ref, mask))
            for _ in range(n_clicks):
                click = robot_click(ref, mask, spacing)
                if click is None:
                    methods["GfS"].append(methods["GfS"][-1])
                    continue
                clicks.append(click)
                t = time.perf_counter()
                mask = gfs_with_clicks(image.array, geometry, six_index, clicks)
                times["GfS"].append(time.perf_counter() - t)
                methods["GfS"].append(dice(ref, mask))
        g = results.setdefault(group, {"ours": [], "GfS": [], "t_ours": [], "t_GfS": []})
        for m in ("ours", "GfS"):
            if methods[m]:
                g[m].append(methods[m])
                g[f"t_{m}"].extend(times[m])
        if args.cases:
            for m in ("ours", "GfS"):
                if methods[m]:
                    curve = " ".join(f"{d:.3f}" for d in methods[m])
                    print(f"  {group[:26]:26} {name:13} {m:4} {curve}", flush=True)

    cols = " ".join(f"{k:>5}" for k in range(n_clicks + 1))
    print(f"\n{'group':28} {'method':6} {'n':>3} | Dice after k clicks: {cols} | NoC@85 NoC@90 | s/click")
    for group, g in results.items():
        for m in ("ours", "GfS"):
            if not g[m]:
                continue
            curves = np.array(g[m])
            dice_cols = " ".join(f"{v:5.3f}" for v in curves.mean(axis=0))
            n85 = np.mean([noc(list(c), 0.85) for c in curves])
            n90 = np.mean([noc(list(c), 0.90) for c in curves])
            t = np.mean(g[f"t_{m}"]) if g[f"t_{m}"] else float("nan")
            print(
                f"{group[:28]:28} {m:6} {len(curves):3d} | {'':21}{dice_cols} | {n85:6.2f} {n90:6.2f} | {t:7.3f}",
                flush=True,
            )
    print(
        f"\nNoC: clicks to reach the Dice ({n_clicks + 1} = not within {n_clicks}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
