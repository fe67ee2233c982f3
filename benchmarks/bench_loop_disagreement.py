"""Does "disagreement with the marks" find the cases whose starting segment is worst? (the annotation loop's
"which case next", docs/annotation_loop.md)

Run: ``.venv/bin/python benchmarks/bench_loop_disagreement.py [--data DIR] [--cases 12] [--jitter-mm 0]``

A loop dataset of the first ``--cases`` PET sarcomas with simulated six clicks (jittered by ``--jitter-mm``); each
case's starting segment is the clicks' pseudo-label (no model yet). Printed per case: the disagreement score and
its parts, and the starting segment's Dice against the reference (which the score never sees). Then the Spearman
correlation of the score with 1 − Dice, and for each strategy (order, random with seed 0, disagreement) the mean
Dice of the first quarter of cases it hands out: a strategy that finds the worst starts first shows the lowest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.files.image_io import read_image, read_mask
    from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--jitter-mm", type=float, default=0.0)
    args = parser.parse_args()
    ids = sorted(c.id for c in load_cases(args.data) if c.id.startswith("ibsi_STS_") and c.modality == "PET")
    ids = ids[: args.cases]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        create_from_cases(root, ids, data_dir=args.data, jitter_mm=args.jitter_mm)
        loop = AnnotationLoop(root)
        t0 = time.perf_counter()
        rows = {r["case"]: r for r in loop.ranking("disagreement")}
        seconds = time.perf_counter() - t0
        dices = {}
        for case_id in ids:
            entry = loop.dataset.case(case_id)
            image = read_image(loop.dataset.path(entry.image))
            start, _ = loop.pseudo_label(entry, image)
            dices[case_id] = dice(read_mask(loop.dataset.path(entry.reference), grid=image.geometry), start)
        orders = {
            "order": [r["case"] for r in loop.ranking("order")],
            "random (seed 0)": [r["case"] for r in loop.ranking("random")],
            "disagreement": [r["case"] for r in loop.ranking("disagreement")],
        }
    print(f"{len(ids)} PET sarcomas, six clicks jittered {args.jitter_mm} mm; start = the clicks' pseudo-label")
    print(f"{'case':<20} {'score':>6} {'outside box':>11} {'marks off mm':>12} {'Dice':>6}")
    for case_id in orders["disagreement"]:
        r = rows[case_id]
        print(f"{case_id:<20} {r['score']:>6.3f} {r['outside_box']:>11.3f} {r['points_off_mm']:>12.2f} "
              f"{dices[case_id]:>6.3f}")  # fmt: skip
    rho = spearman([rows[c]["score"] for c in ids], [1.0 - dices[c] for c in ids])
    print(f"Spearman(score, 1 - Dice) = {rho:.2f}; scoring {len(ids)} cases took {seconds:.1f} s")
    quarter = max(1, len(ids) // 4)
    print(f"mean Dice of the first {quarter} cases each strategy hands out (lower: finds the worst starts first):")
    for name, order in orders.items():
        print(f"  {name:<16} {np.mean([dices[c] for c in order[:quarter]]):.3f}")
    print(f"  (all cases       {np.mean(list(dices.values())):.3f})")
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
