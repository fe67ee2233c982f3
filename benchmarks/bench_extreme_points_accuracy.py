"""Accuracy of ExtremePointSeg's pseudo-label (the paper's "random walker init.") on the real data.

Run: ``.venv/bin/python benchmarks/bench_extreme_points_accuracy.py [--data DIR]``

Six clicks are simulated from each reference mask (exact, and each moved by up to 3 mm in a random
direction, seeded); Dice against the reference and the fraction of foreground-seed voxels inside the
reference are printed per case and per group (mean ± sd), next to the paper's random-walker-init Dice.
The abdominal CT organs' reference is TotalSegmentator output (silver): read it as agreement, not accuracy.
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


def case_list(data: Path) -> list[tuple[str, str, str, str, int | None]]:
    """(group, name, image, mask, label) for every suitable case."""
    cases = json.loads((data / "cases.json").read_text())
    out = []
    for c in cases:
        cid = c["id"]
        if cid.startswith("brats") and cid.endswith("_Flair"):
            out.append(("BraTS whole tumour (FLAIR)", cid.split("_")[3], c["image"], c["mask"], None))
        elif cid.startswith("ibsi_") and cid.endswith("_PET"):
            out.append(("PET sarcoma (STS)", cid.split("_")[2], c["image"], c["mask"], None))
        elif cid.startswith("sct"):
            out.append(("spinal cord (sct MR)", cid, c["image"], c["mask"], None))
        elif cid == "ts_ct_sm":
            for label, name in CT_ORGANS.items():
                out.append(("CT organs (silver)", name, c["image"], c["mask"], label))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--jitter-mm", type=float, default=3.0)
    ap.add_argument("--params", default="{}", help="ExtremePointParams overrides as JSON, e.g. '{\"prior_weight\": 0}'")
    ap.add_argument("--summary", action="store_true", help="print the per-group table only")
    args = ap.parse_args()
    if not (args.data / "cases.json").is_file():
        print(f"data not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.extreme_points.segmenter import (
        ExtremePointParams,
        scribble_inside_fraction,
        segment_extreme_points,
    )

    params = ExtremePointParams(**json.loads(args.params))
    print(f"load average {os.getloadavg()[0]:.1f}; params {args.params}")
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    if not args.summary:
        print(
            f"{'group':28} {'case':14} {'Dice exact':>10} {f'Dice ±{args.jitter_mm:g}mm':>11} "
            f"{'fg in ref':>9} {'path in ref':>11} {'bg out ref':>10} {'time s':>7}"
        )
    for group, name, image_rel, mask_rel, label in case_list(args.data):
        image = read_image(args.data / image_rel)
        values = read_image(args.data / mask_rel).array
        ref = values != 0 if label is None else values == label
        if not ref.any():
            continue
        scores = []
        for n, jitter in enumerate((0.0, args.jitter_mm)):
            points, _ = extreme_points(ref, image.geometry, jitter_mm=jitter, seed=n)
            t = time.perf_counter()
            result = segment_extreme_points(image.array, image.geometry, points, params)
            elapsed = time.perf_counter() - t
            inside = scribble_inside_fraction(result, ref)
            scores.append((dice(ref, result.mask), inside, elapsed))
        (d0, in0, t0), (d1, _in1, _t1) = scores
        rows.setdefault(group, []).append((d0, d1, in0["fg_seeds_inside"], in0["path_inside"]))
        if args.summary:
            continue
        print(
            f"{group:28} {name:14} {d0:10.3f} {d1:11.3f} {in0['fg_seeds_inside']:9.3f} "
            f"{in0['path_inside']:11.3f} {in0['bg_seeds_outside']:10.3f} {t0:7.2f}"
        )
    print("\nper group (mean ± sd over cases)")
    print(f"{'group':28} {'n':>3} {'Dice exact':>14} {'Dice jittered':>14} {'fg seeds in ref':>16} {'path in ref':>14}")
    for group, r in rows.items():
        a = np.array(r)
        cols = " ".join(f"{a[:, c].mean():8.3f}±{a[:, c].std():.3f}" for c in range(4))
        print(f"{group:28} {len(r):3d} {cols}")
    paper = ", ".join(f"{k} {v}" for k, v in PAPER.items())
    print(f"\npaper (Roth et al., random walker init., MSD/CETUS at 1 mm): {paper}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
