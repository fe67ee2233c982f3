"""Accuracy of ExtremePointSeg's six-click segmentation on the real data, beside Slicer's Grow from seeds.

Run: ``.venv/bin/python benchmarks/bench_extreme_points_accuracy.py [--data DIR] [--summary] [--dev]``

Six clicks are simulated from each reference mask (exact, and each moved by up to 3 mm in a random
direction, seeded); both methods get the same clicks. Dice against the reference is printed per case and per
group (mean, sd, and the worst case's lead over Grow from seeds), next to the paper's random-walker-init Dice.
The abdominal CT organs' reference is TotalSegmentator output (silver): read it as agreement, not accuracy.

Grow from seeds (the Segment Editor's GrowCut engine, ``slicer.vtkImageGrowCutSegment`` from the pinned
slicer-core wheel) is fed the six clicks the way a user would paint them (``--gfs-seeding``, see
:func:`growcut_seeds`): the three straight segments between opposite clicks, ends trimmed 20 %, as object
strokes; everything outside the clicks' box grown by 3 mm as background; run on that box plus two voxels of
background (the engine skips its input's outermost layer), with the image's spacing. Of the seedings tried
(``thick`` strokes, no margin, distance penalty 1 or 5) none is better on every group; ``lines`` has the best
mean over the groups and is the default (docs/extreme_points.md gives each variant's table).

``--dev`` runs the development cases instead: the sarcoma on MR T1 and CT (STS), the MR organs, the BraTS
whole tumour on T1c — images of no reported group, used to choose the parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
PAPER = {"spleen (CT)": 0.852, "liver (CT)": 0.822, "prostate (MRI)": 0.709, "LV (US)": 0.808}
CT_ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}
MR_ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}
GFS_SEEDINGS = ("lines", "thick", "lines-nomargin")


def case_list(data: Path, dev: bool = False) -> list[tuple[str, str, str, str, int | None]]:
    """(group, name, image, mask, label) for every suitable case (the development cases with ``dev``)."""
    cases = json.loads((data / "cases.json").read_text())
    out = []
    for c in cases:
        cid = c["id"]
        if dev:
            if cid.startswith("ibsi_") and (cid.endswith("_MR_T1") or cid.endswith("_CT")):
                kind = "MR T1" if cid.endswith("_MR_T1") else "CT"
                out.append((f"dev: sarcoma ({kind})", cid.split("_")[2], c["image"], c["mask"], None))
            elif cid.startswith("brats") and cid.endswith("_T1c"):
                out.append(("dev: BraTS whole tumour (T1c)", cid.split("_")[3], c["image"], c["mask"], None))
            elif cid == "ts_mr_sm":
                for label, name in MR_ORGANS.items():
                    out.append(("dev: MR organs (silver)", name, c["image"], c["mask"], label))
            continue
        if cid.startswith("brats") and cid.endswith("_Flair"):
            out.append(("BraTS whole tumour (FLAIR)", cid.split("_")[3], c["image"], c["mask"], None))
        elif cid.startswith("ibsi_") and cid.endswith("_PET"):
            out.append(("PET sarcoma (STS)", cid.split("_")[2], c["image"], c["mask"], None))
        elif cid.startswith("sct"):
            out.append(("spinal cord (sct MR)", cid, c["image"], c["mask"], None))
        elif cid.startswith("pyrad_brain"):
            out.append(("brain lesion (MR)", cid, c["image"], c["mask"], None))
        elif cid == "ts_ct_sm":
            for label, name in CT_ORGANS.items():
                out.append(("CT organs (silver)", name, c["image"], c["mask"], label))
    return out


# --- Grow from seeds ------------------------------------------------------------------------------------


def grow_cut(
    image: np.ndarray, spacing_kji: np.ndarray, seeds: np.ndarray, distance_penalty: float = 0.0
) -> np.ndarray:
    """Slicer's Grow from seeds engine on an array: labels (0 where nothing reached) with the seeds' values."""
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    def volume(a: np.ndarray, dtype: type) -> vtk.vtkImageData:
        d = vtk.vtkImageData()
        d.SetDimensions(a.shape[2], a.shape[1], a.shape[0])
        d.SetSpacing(*(float(s) for s in np.asarray(spacing_kji)[::-1]))
        d.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(a, dtype).ravel(), deep=True))
        return d

    f = slicer.vtkImageGrowCutSegment()
    f.SetIntensityVolume(volume(image, np.float32))
    f.SetSeedLabelVolume(volume(seeds, np.int16))
    if distance_penalty:
        f.SetDistancePenalty(distance_penalty)
    f.Update()
    return vtk_to_numpy(f.GetOutput().GetPointData().GetScalars()).reshape(image.shape)


def click_box(index: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray, margin_mm: float = 3.0):  # noqa: ANN201
    """(crop start, crop stop, inner start, inner stop) of the clicks' box grown by ``margin_mm``, + 2 voxels.

    Two voxels of background around it: the GrowCut engine never visits the outermost layer of its input
    (a one-voxel ring of background seeds was ignored and everything became object)."""
    lo, hi = index.min(axis=0), index.max(axis=0)
    margin = np.maximum(np.ceil(margin_mm / spacing).astype(int), 1)
    c0 = np.maximum(lo - margin - 2, 0)
    c1 = np.minimum(hi + margin + 3, np.asarray(shape))
    return c0, c1, np.maximum(lo - margin, 0), np.minimum(hi + margin + 1, np.asarray(shape))


def _trimmed_line(a: np.ndarray, b: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    from skimage.draw import line_nd

    line = np.stack(line_nd(a, b, endpoint=True), axis=1)
    n = len(line)
    cut = int(round(fraction * n))
    kept = line[cut : n - cut]
    return kept if len(kept) else line[[n // 2]]


def growcut_seeds(
    index: np.ndarray, pairs: list[tuple[int, int]], shape: tuple[int, ...], spacing: np.ndarray, seeding: str
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Seeds (int16: 1 object, 2 background, 0 unknown) on the crop that Grow from seeds runs on, and the crop.

    ``lines``: the three straight segments between opposite clicks, 20 % trimmed at each end, one voxel wide;
    ``thick``: the same dilated by one voxel (a brush of radius 1 voxel); ``lines-nomargin``: background right
    outside the clicks' box (no 3 mm margin).
    """
    margin_mm = 0.0 if seeding == "lines-nomargin" else 3.0
    c0, c1, i0, i1 = click_box(index, shape, spacing, margin_mm)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(c0, c1, strict=True))
    seeds = np.full(tuple(int(b - a) for a, b in zip(c0, c1, strict=True)), 2, np.int16)
    seeds[tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(i0, i1, c0, strict=True))] = 0
    for a, b in pairs:
        line = _trimmed_line(index[a], index[b]) - c0
        seeds[tuple(line.T)] = 1
    if seeding == "thick":
        from scipy import ndimage

        seeds[ndimage.binary_dilation(seeds == 1)] = 1
    return seeds, crop


def grow_from_seeds_clicks(
    array: np.ndarray,
    geometry,
    points_ras: np.ndarray,
    seeding: str = "lines",
    distance_penalty: float = 0.0,  # noqa: ANN001
) -> np.ndarray:
    """Grow from seeds fed the six clicks (see :func:`growcut_seeds`): a bool mask on the full grid."""
    from WeakAnnotateLib.methods.extreme_points.segmenter import pair_points, validate_points

    index = validate_points(points_ras, geometry)
    spacing = geometry.array_spacing
    pairs, _ = pair_points(index.astype(float), spacing)
    seeds, crop = growcut_seeds(index, pairs, array.shape, spacing, seeding)
    labels = grow_cut(array[crop], spacing, seeds, distance_penalty)
    mask = np.zeros(array.shape, bool)
    mask[crop] = labels == 1
    return mask


# --- the table ------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--jitter-mm", type=float, default=3.0)
    ap.add_argument("--params", default="{}", help="ExtremePointParams overrides as JSON, e.g. '{\"prior_weight\": 0}'")
    ap.add_argument("--summary", action="store_true", help="print the per-group table only")
    ap.add_argument("--dev", action="store_true", help="the development cases (no reported group) instead")
    ap.add_argument("--gfs-seeding", default="lines", choices=GFS_SEEDINGS, help="how Grow from seeds is seeded")
    ap.add_argument("--gfs-distance-penalty", type=float, default=0.0)
    ap.add_argument("--no-gfs", action="store_true", help="skip Grow from seeds")
    ap.add_argument("--only", default="", help="comma-separated group-name substrings to run")
    args = ap.parse_args()
    if not (args.data / "cases.json").is_file():
        print(f"data not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.extreme_points.segmenter import ExtremePointParams, segment_extreme_points

    params = ExtremePointParams(**json.loads(args.params))
    print(
        f"load average {os.getloadavg()[0]:.1f}; params {args.params}; Grow from seeds seeding {args.gfs_seeding!r}, "
        f"distance penalty {args.gfs_distance_penalty:g}"
    )
    jit = f"±{args.jitter_mm:g}mm"
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    if not args.summary:
        print(
            f"{'group':30} {'case':14} {'ours exact':>10} {'GfS exact':>9} {'ours ' + jit:>10} {'GfS ' + jit:>9} "
            f"{'ours s':>7} {'GfS s':>6}"
        )
    only = [s for s in args.only.split(",") if s]
    for group, name, image_rel, mask_rel, label in case_list(args.data, args.dev):
        if only and not any(s in group or s == name for s in only):
            continue
        image = read_image(args.data / image_rel)
        values = read_image(args.data / mask_rel).array
        ref = values != 0 if label is None else values == label
        if not ref.any():
            continue
        scores, times = [], []
        for n, jitter in enumerate((0.0, args.jitter_mm)):
            points, _ = extreme_points(ref, image.geometry, jitter_mm=jitter, seed=n)
            t = time.perf_counter()
            result = segment_extreme_points(image.array, image.geometry, points, params)
            t_ours = time.perf_counter() - t
            d_gfs, t_gfs = float("nan"), float("nan")
            if not args.no_gfs:
                t = time.perf_counter()
                gfs = grow_from_seeds_clicks(
                    image.array, image.geometry, points, args.gfs_seeding, args.gfs_distance_penalty
                )
                t_gfs = time.perf_counter() - t
                d_gfs = dice(ref, gfs)
            scores.append((dice(ref, result.mask), d_gfs))
            times.append((t_ours, t_gfs))
        (o0, g0), (o1, g1) = scores
        rows.setdefault(group, []).append((o0, g0, o1, g1))
        if args.summary:
            continue
        print(
            f"{group:30} {name:14} {o0:10.3f} {g0:9.3f} {o1:10.3f} {g1:9.3f} {times[0][0]:7.2f} {times[0][1]:6.2f}",
            flush=True,
        )
    print("\nper group (mean ± sd over cases; worst = the lowest per-case ours − GfS)")
    print(
        f"{'group':30} {'n':>3} {'ours exact':>12} {'GfS exact':>12} {'worst':>6} "
        f"{'ours ' + jit:>12} {'GfS ' + jit:>12} {'worst':>6}"
    )
    for group, r in rows.items():
        a = np.array(r)
        cells = []
        for c0 in (0, 2):
            cells.append(f"{a[:, c0].mean():6.3f}±{a[:, c0].std():.3f}")
            cells.append(f"{a[:, c0 + 1].mean():6.3f}±{a[:, c0 + 1].std():.3f}")
            cells.append(f"{np.min(a[:, c0] - a[:, c0 + 1]):+6.3f}")
        print(f"{group:30} {len(r):3d} " + " ".join(f"{c:>12}" if len(c) > 7 else f"{c:>6}" for c in cells))
    paper = ", ".join(f"{k} {v}" for k, v in PAPER.items())
    print(f"\npaper (Roth et al., random walker init., MSD/CETUS at 1 mm): {paper}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
