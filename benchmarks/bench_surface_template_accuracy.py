"""Surface template accuracy: Dice / IoU of the rasterised template against the reference for N = 25, 50, 125,
250 simulated surface points (the paper's Fig. 4 setting), on the real cases where shape is the hard part.

    .venv/bin/python benchmarks/bench_surface_template_accuracy.py [--pet-cases 30] [--subdivisions 4]

Points come from ``simulate.surface_points`` (farthest-point sampling of the mask's surface voxels: an
annotator who spreads clicks evenly). Groups: BraTS whole tumour (FLAIR, any label, 3 cases), PET sarcoma GTV
(IBSI STS), spinal cord (sct t1, t2: a thin tube, not sphere-friendly), CT organs from TotalSegmentator
(silver: agreement with TotalSegmentator, not accuracy). Effort = the number of points. A case whose point set
is refused (InputError, e.g. a fold) counts as a failure and is listed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakAnnotate"))

from WeakAnnotateLib.core.errors import InputError  # noqa: E402
from WeakAnnotateLib.evaluation import simulate  # noqa: E402
from WeakAnnotateLib.evaluation.metrics import dice, iou  # noqa: E402
from WeakAnnotateLib.files.cases import default_data_dir, find_case, load_cases  # noqa: E402
from WeakAnnotateLib.files.image_io import read_image, read_mask  # noqa: E402
from WeakAnnotateLib.methods.surface_template.active_surface import ActiveSurface, SurfaceParams  # noqa: E402

NS = (25, 50, 125, 250)
# The paper reports no template Dice: Fig. 4 shows liver templates for N = 25…250 qualitatively; Table 1 gives
# Weak-Net IoU (trained on such templates): liver 84.2 %, hippocampus 74.2 %, synaptic junction 71.5 %.
PAPER = "paper: templates only shown (Fig. 4); Weak-Net IoU liver 84.2, hippocampus 74.2 (Table 1)"


def groups(data: Path, pet_cases: int) -> dict[str, list[tuple[str, int | None]]]:
    ids = [c.id for c in load_cases(data)]
    pet = [i for i in ids if i.startswith("ibsi_") and i.endswith("_PET")][:pet_cases]
    return {
        "BraTS whole tumour": [(i, None) for i in ids if i.startswith("brats_") and i.endswith("_Flair")],
        "PET sarcoma": [(i, None) for i in pet],
        "spinal cord": [("sct_t1_cord", None), ("sct_t2_cord", None)],
        "CT organs (silver)": [("ts_ct_sm", 5), ("ts_ct_sm", 1), ("ts_ct_sm", 2), ("ts_ct_sm", 3)],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pet-cases", type=int, default=30)
    ap.add_argument("--subdivisions", type=int, default=4)
    args = ap.parse_args()
    data = default_data_dir()
    params = SurfaceParams(subdivisions=args.subdivisions)
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}; subdivisions {args.subdivisions}")
    start = time.perf_counter()
    rows, failures = [], []
    for group, members in groups(data, args.pet_cases).items():
        scores = {n: [] for n in NS}
        for case_id, label in members:
            case = find_case(case_id, data)
            image = read_image(case.image)
            mask = read_mask(case.mask, label=label, grid=image.geometry)
            for n in NS:
                try:
                    points = simulate.surface_points(mask, image.geometry, n, seed=0)
                except InputError:
                    continue  # a small lesion has fewer surface voxels than N (counted in the cases column)
                try:
                    surface = ActiveSurface(points, geometry=image.geometry, params=params)
                except InputError as e:
                    failures.append(f"{case_id}{'' if label is None else f' label {label}'} N={n}: {e}")
                    continue
                template = surface.rasterize()
                scores[n].append((dice(mask, template), iou(mask, template)))
        rows.append((group, len(members), scores))
    print()
    print(f"{'group':<20} {'cases':>5} " + " ".join(f"{'N=' + str(n) + ' Dice/IoU':>17}" for n in NS))
    for group, count, scores in rows:
        cells = []
        for n in NS:
            s = np.array(scores[n]) if scores[n] else np.zeros((0, 2))
            cells.append(f"{s[:, 0].mean():.3f}/{s[:, 1].mean():.3f}" if len(s) else "—")
        print(f"{group:<20} {count:>5} " + " ".join(f"{c:>17}" for c in cells))
    print(f"effort (points per object): {', '.join(map(str, NS))}")
    print(PAPER)
    print(f"failures (refused point sets): {len(failures)}")
    for f in failures:
        print("  " + f)
    load = tuple(round(x, 2) for x in os.getloadavg())
    print(f"total {time.perf_counter() - start:.0f} s; load average after: {load}")


if __name__ == "__main__":
    main()
