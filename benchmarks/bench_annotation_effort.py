"""The annotation loop's effort, simulated: clicks per case with a model that learns from the cases before it,
against six clicks alone, on the PET sarcomas with the robot user.

    .venv/bin/python benchmarks/bench_annotation_effort.py [--quick] [--cases 30] [--every 5] [--minutes 2]

Per case, in the catalogue's order (IBSI STS PET scans), both arms start from the case's six extreme clicks
(simulated from the reference, exact) and then get corrective clicks from the robot user of
``bench_corrective_clicks.py`` (the centre of the largest 3D error region, positive on a miss, negative on a
false region; :class:`CorrectionSession` re-segments with all clicks so far) until Dice ≥ ``--target`` (0.90) or
``--max-clicks`` (10) corrections:

* ``six clicks``: the starting segment is the random walker from the six clicks (what ExtremePointSeg gives);
* ``model``: the starting segment is the prediction of the extreme-point network (the six clicks as its points
  channel) trained on the masks accepted for the cases before this one; it is fine-tuned after every
  ``--every`` accepted cases from its last weights (``init_weights``), for ``--minutes`` of wall-clock training
  (``max_minutes``) with the shared recipe. Before the first fine-tune there is no model and the case starts
  from the six clicks' segment, as in the other arm. The accepted mask (the corrected one) is the case's label.
* ``auto``: the loop's default ``start`` setting — per case, the six clicks' segment until the model's prediction
  started at least as close to the accepted masks on the last cases that had both (``model_has_earned``; judged on
  this arm's own accepted masks, never the reference), then the prediction while it does. Its clicks and
  Dice are those of the arm it picks (the same start gives the same robot clicks); its models are the model arm's
  (trained on that arm's accepted masks, which reach the same target Dice).

Printed per case: the effort of full contouring (the Weak-Net paper's count: the contour's length over all
axial slices, in boundary pixels, and in mm), the clicks and final Dice of each arm, and the cumulative clicks;
then the totals. ``--quick``: 12 cases, a fine-tune every 4 cases for 0.5 min (a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_corrective_clicks import robot_click  # noqa: E402  (the robot user, owned by that benchmark)

SIX = 6  # the extreme clicks every case starts with (both arms)


def contour_effort(ref: np.ndarray, spacing: np.ndarray) -> tuple[int, float]:
    """(boundary pixels, length in mm) of the reference's contours summed over its axial slices (array axis 0):
    what outlining it slice by slice costs, as the Weak-Net paper counts annotation effort."""
    pixels, length = 0, 0.0
    in_plane = float(np.mean(spacing[1:]))
    for k in np.flatnonzero(ref.any(axis=(1, 2))):
        s = ref[k]
        boundary = s & ~ndimage.binary_erosion(s, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))
        n = int(boundary.sum())
        pixels += n
        length += n * in_plane  # a pixel chain's length ≈ its pixels × the pixel size
    return pixels, length


def correct(image, geometry, ref, start, intensity_range, target: float, max_clicks: int):  # noqa: ANN001, ANN201
    """Robot corrections on ``start`` until Dice ≥ target or max_clicks: (corrections, final Dice, final mask)."""
    from WeakAnnotateLib.core.errors import InputError
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.methods.extreme_points.corrective import CorrectionSession

    session = CorrectionSession(image.array, geometry, start, intensity_range=intensity_range)
    mask, d, n = start, dice(ref, start), 0
    while d < target and n < max_clicks:
        click = robot_click(ref, mask, geometry.array_spacing)
        if click is None:
            break
        n += 1
        idx, positive = click
        try:
            mask = session.add(geometry.index_to_ras(idx[None])[0], positive).mask
        except InputError:
            continue  # refused (e.g. it would remove the last foreground): the click is spent, nothing changes
        d = dice(ref, mask)
    return n, d, mask


def fine_tune(ds_root: Path, work: Path, accepted: list[str], last_model: Path | None, minutes: float, k: int) -> Path:
    """The extreme-point network on the accepted masks (one round: they are final labels), from the last weights."""
    from WeakAnnotateLib.jobs.worker import main as worker_main

    out = work / f"model_{k:02d}"
    spec = {
        "dataset": str(ds_root),
        "output": str(out),
        "method": "extreme_point_network",
        "epochs": 100000,  # max_minutes ends it
        "max_minutes": minutes,
        "steps_per_epoch": 25,
        "batch_size": 2,
        "patch_size": [32, 32, 32],
        "channels": [],
        "spacing_mm": 3.0,
        "padding_mm": 20.0,
        "learning_rate": 3e-3 if last_model is None else 1e-3,  # fine-tuning: a smaller step from trained weights
        "device": "cpu",
        "train_cases": accepted,
        "validation_cases": accepted[-1:],  # monitoring only
        "init_weights": str(last_model) if last_model else "",
        "extreme_point_network": {"rounds": 1, "random_walker": False},
    }
    path = work / f"model_{k:02d}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    with open(work / f"model_{k:02d}.log", "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        code = worker_main([str(path)])
    if code != 0:
        raise RuntimeError(f"fine-tune {k} ended with status {code}; see {work / f'model_{k:02d}.log'}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 cases, a fine-tune every 4 cases for 0.5 min")
    ap.add_argument("--cases", type=int, default=30, help="the first N PET scans, in order")
    ap.add_argument("--every", type=int, default=5, help="fine-tune after every N accepted cases")
    ap.add_argument("--minutes", type=float, default=2.0, help="wall-clock minutes per fine-tune")
    ap.add_argument("--target", type=float, default=0.90, help="Dice at which the robot stops")
    ap.add_argument("--max-clicks", type=int, default=10, help="corrective clicks at most per case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", help="work folder (default: temporary)")
    args = ap.parse_args()
    if args.quick:
        args.cases, args.every, args.minutes = 12, 4, 0.5
    os.environ["WEAKANNOTATE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from WeakAnnotateLib.data.dataset import DatasetFolder, create_from_cases, read_extreme_points
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.files.image_io import read_image, select_label, write_image
    from WeakAnnotateLib.jobs.annotation_loop import model_has_earned, start_evidence_of
    from WeakAnnotateLib.methods.extreme_points.segmenter import segment_extreme_points
    from WeakAnnotateLib.networks.prediction import load_model, predict_image

    cases = [c for c in load_cases() if c.id.startswith("ibsi_STS_") and c.id.endswith("_PET")][: args.cases]
    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_effort_"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print(
        f"{len(cases)} PET sarcoma scans in order; robot until Dice {args.target} or {args.max_clicks} corrections; "
        f"fine-tune every {args.every} cases for {args.minutes:g} min; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    ds = create_from_cases(work / "ds", [c.id for c in cases])
    dataset = DatasetFolder.load(ds.root)
    accepted: list[str] = []
    model_dir: Path | None = None
    model = None
    fine_tunes: list[tuple[int, float, int]] = []  # (cases trained on, seconds, steps)
    rows = []
    header = (
        f"{'#':>3} {'case':8} {'contour px':>10} {'mm':>7} | {'six: clicks':>11} {'Dice':>6} | "
        f"{'model: clicks':>13} {'Dice':>6} {'trained on':>10} | {'auto':>5} | {'cum six':>7} {'cum model':>9} "
        f"{'cum auto':>8}"
    )
    print(header)
    cum_six = cum_model = cum_auto = 0
    evidence: list[dict[str, float]] = []  # auto's record: each start's Dice to its accepted mask, as the loop keeps
    for i, case in enumerate(cases):
        image = read_image(case.image)
        geometry = image.geometry
        ref = select_label(read_image(case.mask).array, None)
        entry = dataset.case(case.id)
        points = read_extreme_points(dataset.path(entry.annotations["extreme_points"]), geometry)
        six = segment_extreme_points(image.array, geometry, points)
        rng = six.diagnostics["intensity_range"]
        n_six, d_six, final_six = correct(image, geometry, ref, six.mask, rng, args.target, args.max_clicks)
        if model is not None:
            start, _ = predict_image(model, image, points)
            trained_on = len(accepted) - len(accepted) % args.every
        else:
            start, trained_on = six.mask, 0
        n_model, d_model, final = correct(image, geometry, ref, start, rng, args.target, args.max_clicks)
        auto = "six"
        if model is not None:
            auto = "model" if model_has_earned(start_evidence_of(evidence)) else "six"  # the loop's own rule
            auto_final = final if auto == "model" else final_six
            evidence.append({"model": dice(auto_final, start), "marks": dice(auto_final, six.mask)})
        n_auto, d_auto = (n_model, d_model) if auto == "model" else (n_six, d_six)
        px, mm = contour_effort(ref, geometry.array_spacing)
        cum_six += SIX + n_six
        cum_model += SIX + n_model
        cum_auto += SIX + n_auto
        rows.append(
            {
                "case": case.id,
                "contour_px": px,
                "contour_mm": mm,
                "six_clicks": SIX + n_six,
                "six_dice": d_six,
                "model_clicks": SIX + n_model,
                "model_dice": d_model,
                "auto_start": auto,
                "auto_clicks": SIX + n_auto,
                "auto_dice": d_auto,
                "model_start_dice": dice(ref, start),
                "six_start_dice": dice(ref, six.mask),
                "trained_on": trained_on,
            }
        )
        short = case.id.split("_")[2]
        print(
            f"{i + 1:3d} {short:8} {px:10d} {mm:7.0f} | {SIX + n_six:11d} {d_six:6.3f} | {SIX + n_model:13d} "
            f"{d_model:6.3f} {trained_on if model is not None else '-':>10} | {auto:>5} | {cum_six:7d} {cum_model:9d} "
            f"{cum_auto:8d}",
            flush=True,
        )
        # accept: the corrected mask is the case's label from now on
        label = ds.root / "accepted" / f"{case.id}.nii.gz"
        label.parent.mkdir(exist_ok=True)
        write_image(label, final.astype(np.uint8), geometry)
        entry.pseudo_label = dataset.stored(label)
        dataset.save()
        accepted.append(case.id)
        if len(accepted) % args.every == 0 and i + 1 < len(cases):
            t = time.perf_counter()
            model_dir = fine_tune(ds.root, work, accepted, model_dir, args.minutes, len(fine_tunes) + 1)
            info = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
            model = load_model(model_dir)
            fine_tunes.append((len(accepted), time.perf_counter() - t, info["data"]["steps"]))

    n = len(rows)
    last = rows[-max(n // 3, 1) :]
    print()
    print(f"Effort on {n} PET sarcoma scans (clicks = 6 extreme + corrective; Dice target {args.target})")
    print(f"{'':34} {'six clicks':>11} {'model':>9} {'auto':>9}")

    def arms(label: str, *values: float, fmt: str = ".2f") -> None:
        print(f"{label:34} {values[0]:11{fmt}} " + " ".join(f"{v:9{fmt}}" for v in values[1:]))

    arms("clicks, all cases", cum_six, cum_model, cum_auto, fmt="d")
    arms("clicks per case, mean", cum_six / n, cum_model / n, cum_auto / n)
    kinds = ("six", "model", "auto")
    arms(f"clicks per case, last {len(last)} cases", *(np.mean([r[f"{k}_clicks"] for r in last]) for k in kinds))
    arms("final Dice, mean", *(np.mean([r[f"{k}_dice"] for r in rows]) for k in kinds), fmt=".3f")
    arms("cases reaching the target", *(sum(r[f"{k}_dice"] >= args.target for r in rows) for k in kinds), fmt="d")
    print(f"auto started {sum(r['auto_start'] == 'model' for r in rows)} of {n} cases from the model")

    def both(label: str, six_value: float, model_value: float, fmt: str = ".2f") -> None:
        print(f"{label:34} {six_value:11{fmt}} {model_value:9{fmt}}")

    assisted = [r for r in rows if r["trained_on"]]
    if assisted:
        start_six = np.mean([r["six_start_dice"] for r in assisted])
        both(
            "starting Dice, model-assisted cases", start_six, np.mean([r["model_start_dice"] for r in assisted]), ".3f"
        )
    contour = sum(r["contour_px"] for r in rows)
    print(
        f"full contouring: {contour} boundary pixels over all slices ({sum(r['contour_mm'] for r in rows):.0f} mm); "
        f"clicks as a share of it: six {100 * cum_six / contour:.1f} %, model {100 * cum_model / contour:.1f} %, "
        f"auto {100 * cum_auto / contour:.1f} %"
    )
    for k, (m, s, steps) in enumerate(fine_tunes, 1):
        print(f"fine-tune {k}: on {m} accepted cases, {steps} steps, {s:.0f} s")
    print(f"Total {time.perf_counter() - t_all:.0f} s wall; load average {os.getloadavg()[0]:.2f}")
    (work / "results.json").write_text(json.dumps({"rows": rows, "fine_tunes": fine_tunes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
