"""Where the six-click segmentation errs, beside Grow from seeds: the diagnosis behind docs/extreme_points.md.

Run: ``.venv/bin/python benchmarks/diag_extreme_points_errors.py [--data DIR] [--dev] [--only BraTS]``

Per case (exact clicks): Dice of ours and of Grow from seeds (``bench_extreme_points_accuracy``'s seeding); their
false-positive and missed voxels within and beyond 3 mm of the reference's border; the histogram overlap of the
seeds; the share of foreground-seed voxels inside the reference; the Dice of each prior term alone (P > 0.5 on
the work region, seeds included) and the mean of each term on ours' false positives; and ours with the
foreground seeds cut to the reference (an oracle: how much the seeds that leave the object cost).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_extreme_points_accuracy as acc  # noqa: E402  (the case list and the Grow-from-seeds driver)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _split(ref: np.ndarray, mask: np.ndarray, out_d: np.ndarray, in_d: np.ndarray) -> str:
    """False-positive voxels within / beyond 3 mm of the reference, missed ones within / beyond 3 mm inside it."""
    fp, fn = mask & ~ref, ref & ~mask
    parts = (fp & (out_d <= 3), fp & (out_d > 3), fn & (in_d <= 3), fn & (in_d > 3))
    return " ".join(f"{int(v.sum()):>5}" for v in parts)


def _cut_to(stamp, keep: np.ndarray):  # noqa: ANN001, ANN202
    """``stamp`` whose result is cut to ``keep`` (the reference on the work region)."""
    return lambda shape, centres, offsets: stamp(shape, centres, offsets) & keep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--dev", action="store_true", help="the development cases")
    ap.add_argument("--only", default="BraTS", help="comma-separated group-name substrings")
    args = ap.parse_args()

    import WeakAnnotateLib.methods.extreme_points.segmenter as seg_module
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.extreme_points.terms import intensity_prior

    only = [s for s in args.only.split(",") if s]
    print(
        f"{'group':22} {'case':12} {'ours':>5} {'GfS':>5} | ours FP<=3 FP>3 FN<=3 FN>3 | GfS FP<=3 FP>3 FN<=3 FN>3 | "
        f"{'overlap':>7} {'fg in':>5} | hist geo | on FP: hist geo | oracle"
    )
    for group, name, image_rel, mask_rel, label in acc.case_list(args.data, args.dev):
        if only and not any(s in group for s in only):
            continue
        image = read_image(args.data / image_rel)
        values = read_image(args.data / mask_rel).array
        ref = values != 0 if label is None else values == label
        g = image.geometry
        points, _ = extreme_points(ref, g)
        stash: dict[str, np.ndarray] = {}
        combined = seg_module._combined_prior

        def spy(image_w, spacing, fg, bg, p, factor=1, _combined=combined, _stash=stash):  # noqa: ANN001, ANN202
            out = _combined(image_w, spacing, fg, bg, p, factor)
            _stash.update(hist=intensity_prior(image_w, fg, bg, p.prior_bins)[0], geo=out[3], fg=fg, shape=fg.shape)
            return out

        seg_module._combined_prior = spy  # the terms as the pipeline computes them, on its work region
        try:
            ours = seg_module.ExtremePointSegmenter(image.array, g).segment(points)
        finally:
            seg_module._combined_prior = combined
        gfs = acc.grow_from_seeds_clicks(image.array, g, points)
        # The work region's start, as the segmenter computes it.
        index = seg_module.validate_points(points, g)
        lo, sp = index.min(axis=0), g.array_spacing
        b0 = np.maximum(lo - np.ceil(20.0 / sp).astype(int), 0)
        w0 = np.maximum(lo - np.maximum(np.ceil(3.0 / sp).astype(int), 1) - 1, b0)
        work = tuple(slice(int(a), int(a) + n) for a, n in zip(w0, stash["shape"], strict=True))
        out_d = ndimage.distance_transform_edt(~ref, sampling=sp)
        in_d = ndimage.distance_transform_edt(ref, sampling=sp)

        r_w, m_w, fg = ref[work], ours.mask[work], stash["fg"]
        hist, geo = stash["hist"], stash["geo"]
        false = m_w & ~r_w

        # The oracle: the same pipeline with its foreground seeds cut to the reference.
        stamp = seg_module.stamp
        seg_module.stamp = _cut_to(stamp, r_w)
        try:
            oracle = seg_module.ExtremePointSegmenter(image.array, g).segment(points).mask
        finally:
            seg_module.stamp = stamp
        errors = f"{_split(ref, ours.mask, out_d, in_d)} | {_split(ref, gfs, out_d, in_d)}"
        seeds_in = (fg & r_w).sum() / max(fg.sum(), 1)
        terms = f"{dice(r_w, (hist > 0.5) | fg):.2f} {dice(r_w, geo > 0.5):.2f} | "
        terms += f"{hist[false].mean():.2f} {geo[false].mean():.2f}"
        print(
            f"{group[:22]:22} {name:12} {dice(ref, ours.mask):5.3f} {dice(ref, gfs):5.3f} | {errors} | "
            f"{ours.diagnostics['prior_overlap']:7.2f} {seeds_in:5.2f} | {terms} | {dice(ref, oracle):.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
