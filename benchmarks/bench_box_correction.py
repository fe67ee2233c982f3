"""Box correction (paper: box_correction, Table 2) on the IBSI sarcomas: slice-box IoU before and after.

For each modality (MR T1 and PET of the IBSI soft-tissue sarcomas; references are the **manual** radiotherapy
GTV contours from TCIA) the cases are sorted by id; the last ``--test`` are held out, the first 5 / 10 / 20 of
the rest train the patch classifier (nested subsets) at p = 16 and p = 32. On every held-out volume the raw
box is the tight 3D box of the reference (the paper's "3D non-tight" box) and we report

* box IoU: the mean over the box's slices of the IoU of the slice box against the tight box of the
  reference in that slice (:func:`slice_box_iou`, the paper's Table 2 metric), averaged over volumes;
* box Dice: Dice of the pseudo-mask (union of the slice boxes) against the reference. The paper's Dice
  (Table 1: 0.28 → 0.83–0.90) is of a 2.5D U-Net *trained* on those boxes; that is the second table;
* ceiling: the box IoU when every patch label is right (labels from the reference), the method's limit at p.

Training is CPU-sized (``--epochs``; ``--max-patches`` per volume at p = 16, scaled by (16/p)² so that
every p sees the same pixels); the paper trains VGG-16 for 50 epochs.

Then Table 1 / Table 2 of the tightness-prior paper in miniature (``--no-networks`` skips it): 2.5D residual
U-Nets (``box_prior`` and ``full_supervision`` with ``network: unet_2.5d``) trained through the real worker
on the MR T1 and PET training volumes (every volume but the held-out ones), each from one kind of label, and scored
by Dice on the held-out volumes' original grids. Crops are the object's 3D box + 16 mm at 4 mm, in training and
at test time: the network segments inside the box a radiologist draws, which is how the tool uses it (the
paper predicts whole slices; whole-image crops made the emptiness term dominate every slice without a box and
the networks predicted nothing at this CPU budget — see docs/box_correction.md):

* full supervision (Dice on the GTV contours): the upper bound;
* the tight 2D boxes' masks trained on as if they were contours (plain Dice): the naive baseline;
* tight 2D boxes (the reference's box in every slice) with the paper's λ = 1e-4 and ε = 0.1, with our
  default ε = 0.5, and with λ = 1; with masked cross-entropy instead of emptiness; with an 8 mm margin
  (2 crop voxels at 4 mm ≈ 8 MR voxels; the paper's margin is 10 pixels);
* the raw 3D box (tight in 3D, loose in its slices) with 2D bands per slice, and with 3D slabs (the 3D variant);
* corrected boxes: the raw 3D box of every training volume corrected by a patch classifier (p = 16 on MR,
  4 on PET) trained on the first 5 training volumes' contours.

    .venv/bin/python benchmarks/bench_box_correction.py --quick   # MR T1 only, 5 volumes, p = 16, 2 epochs
    .venv/bin/python benchmarks/bench_box_correction.py           # the full grid, then the networks (~30 min)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER_IOU = {16: {5: 0.87, 10: 0.89, 20: 0.93}, 32: {5: 0.89, 10: 0.89, 20: 0.92}}  # Table 2, raw 0.15
PAPER_DICE = {16: {5: 0.83, 10: 0.86, 20: 0.90}, 32: {5: 0.82, 10: 0.84, 20: 0.89}}  # Table 1, raw 0.28
# tightness-prior paper, PROMISE12 (prostate MR) Dice: Table 1 and Table 2 (margin 10)
PAPER_PRIOR = {
    "full supervision": "0.901",
    "tight 2D box masks as contours": "–",
    "tight 2D boxes, paper λ=1e-4 ε=0.1": "0.835",
    "tight 2D boxes": "–",
    "tight 2D boxes, λ=1": "–",
    "tight 2D boxes, masked CE": "0.774",
    "tight 2D boxes + 8 mm margin": "0.778",
    "raw 3D box, 2D bands": "–",
    "raw 3D box, 3D slabs": "–",
    "corrected boxes (5 vols, p=16)": "0.83*",
}
MODALITIES = {"MR_T1": "MR", "PET": "PT"}


def load(case) -> object:
    from WeakAnnotateLib.files.image_io import read_image, select_label
    from WeakAnnotateLib.methods.box_correction.classifier import LabelledVolume

    image = read_image(case.image)
    mask = select_label(read_image(case.mask).array, None).astype(bool)
    return LabelledVolume(image.array.astype(np.float32), mask, image.geometry, case.modality, case.id)


def oracle_iou(vol, p: int) -> float:
    """The method's ceiling: mean slice-box IoU when every patch label is right (taken from the reference)."""
    from WeakAnnotateLib.evaluation.simulate import box_index_bounds, tight_box
    from WeakAnnotateLib.methods.box_correction.classifier import box2d_iou, patch_labels, patch_starts, shrink_box

    lo, hi = box_index_bounds(tight_box(vol.mask, vol.geometry), vol.geometry)
    crop = vol.mask[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))]
    ious = []
    for plane in crop:
        if not plane.any():
            ious.append(0.0)
            continue
        rs, cs = patch_starts(plane.shape[0], p), patch_starts(plane.shape[1], p)
        fg = patch_labels(plane, p).reshape(len(rs), len(cs))
        c_lo, c_hi = shrink_box(fg, fg.astype(float), rs, cs, p, plane.shape)
        nz = np.argwhere(plane)
        ious.append(box2d_iou(c_lo, c_hi, tuple(nz.min(0)), tuple(nz.max(0))))
    return float(np.mean(ious))


def box_dice(pseudo: np.ndarray, ref: np.ndarray) -> float:
    return float(2.0 * np.logical_and(pseudo, ref).sum() / max(pseudo.sum() + ref.sum(), 1))


def run_job(folder: Path, name: str, spec: dict) -> tuple[Path, float]:
    from WeakAnnotateLib.jobs.runner import TrainingJob

    env = {**os.environ, "OMP_NUM_THREADS": "2", "WEAKANNOTATE_THREADS": "2"}
    t0 = time.time()
    job = TrainingJob.run_to_end({**spec, "output": str(folder / name)}, folder / f"{name}.json", env=env)
    return job.output, time.time() - t0


NET_PATCH = {"MR_T1": 16, "PET": 4}  # classifier p for the corrected-boxes row (p = 16 is larger than PET tumours)
MARGIN_MM = 8.0  # the margin row: 2 crop voxels of 4 mm (≈ 8 MR voxels; the paper's 10 pixels)


def network_table(args: argparse.Namespace) -> None:
    """Table 1 / Table 2 of the tightness-prior paper in miniature (see the module docstring)."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0, cpu0 = time.time(), os.times()
    epochs, steps = (1, 2) if args.quick else (args.net_epochs, args.net_steps)
    modalities = ["MR_T1"] if args.quick else args.modalities.split(",")
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mod in modalities:
            rows += _modality_networks(Path(tmp) / mod, mod, args, epochs, steps)
    cpu = os.times()
    cpu_s = sum(cpu[:4]) - sum(cpu0[:4])
    print()
    print(
        f"Tightness prior, Table 1/2 in miniature — IBSI sarcomas (manual GTV), per modality the volumes before the "
        f"last {args.test} train (2 of them validate), the last {args.test} are held out; 2.5D residual U-Net "
        f"8-16-32-64, {epochs}×{steps} steps of batch 2, windows 64×48×48 at 4 mm, crops = box + 16 mm"
    )
    print(f"{'modality':<9}{'labels':<38}{'Dice (held out)':>18}{'labels Dice':>13}{'paper':>8}{'train s':>9}")
    for mod, name, mean, sd, label_dice, seconds in rows:
        paper = PAPER_PRIOR[name.replace(f"p={NET_PATCH[mod]}", "p=16")]
        print(f"{mod:<9}{name:<38}{mean:>10.3f} ± {sd:.3f}{label_dice:>13.3f}{paper:>8}{seconds:>9.0f}")
    print("paper: PROMISE12 prostate MR, 2.5D residual U-Net (Table 1; margin row: Table 2, 10 pixels);")
    print("*box-correction paper, liver CT, Table 1. labels Dice: the training labels (union of the boxes) against")
    print("the contours on the crop grid (on the image grid for the box-mask row).")
    print(f"wall {time.time() - t0:.0f} s, CPU {cpu_s:.0f} s, load average {os.getloadavg()[0]:.2f}")


def _modality_networks(root: Path, mod: str, args: argparse.Namespace, epochs: int, steps: int) -> list[tuple]:
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import tight_box
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.files.image_io import read_image, select_label, write_image
    from WeakAnnotateLib.methods.box_correction.classifier import BoxClassifierParams, correct_box, train_box_classifier
    from WeakAnnotateLib.methods.box_prior.training import slice_box_mask
    from WeakAnnotateLib.networks.prediction import load_model, predict_image

    cases = sorted(
        (c for c in load_cases() if c.id.startswith("ibsi_STS_") and c.id.endswith(f"_{mod}")), key=lambda c: c.id
    )
    test, pool = cases[-args.test :], cases[: -args.test]
    if args.quick:
        pool = pool[:6]
    ds = root / "ds"
    dataset = create_from_cases(ds, [c.id for c in pool])
    # the naive baseline's dataset: the tight slice boxes' masks taken as if they were contours (plain Dice)
    boxes_ds = root / "ds_box_masks"
    masks_dataset = create_from_cases(boxes_ds, [c.id for c in pool])
    # corrected boxes: a patch classifier on the first 5 training volumes' contours corrects every raw box
    t1 = time.time()
    p = NET_PATCH[mod]
    params = BoxClassifierParams(
        patch_size=p, epochs=args.epochs, max_patches_per_volume=max(1, round(args.max_patches * (16 / p) ** 2))
    )
    classifier = train_box_classifier([load(c) for c in pool[:5]], params)
    box_mask_dice = []
    for c in pool:  # each training volume read once for both kinds of label
        v = load(c)
        result = correct_box(classifier, v.image, v.geometry, tight_box(v.mask, v.geometry))
        out = ds / "annotations" / f"{c.id}_slice_boxes.json"
        out.write_text(json.dumps(result.to_json(image=str(c.image))), encoding="utf-8")
        dataset.case(c.id).annotations["slice_boxes"] = dataset.stored(out)
        as_contour = slice_box_mask(v.mask)
        box_mask_dice.append(dice(v.mask, as_contour))
        out = write_image(boxes_ds / "annotations" / f"{c.id}_slice_box_mask.nii.gz", as_contour.astype(np.uint8),
                          v.geometry)  # fmt: skip
        masks_dataset.case(c.id).reference = masks_dataset.stored(out)
    dataset.save()
    masks_dataset.save()
    print(f"{mod}: classifier trained, boxes corrected and box masks written for {len(pool)} training volumes in "
          f"{time.time() - t1:.0f} s", flush=True)  # fmt: skip
    base = {
        "dataset": str(ds),
        "method": "box_prior",
        "network": "unet_2.5d",
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": 2,
        "patch_size": [64, 48, 48],
        "channels": [8, 16, 32, 64],
        "spacing_mm": 4.0,
        "padding_mm": 16.0,  # the box + 16 mm, in training and at test time (see the module docstring)
        "learning_rate": 1e-3,
        "device": "cpu",
        "train_cases": [c.id for c in pool[2:]],
        "validation_cases": [c.id for c in pool[:2]],
    }
    margin = max(1, round(MARGIN_MM / base["spacing_mm"]))
    configs = {
        "full supervision": {"method": "full_supervision"},
        "tight 2D box masks as contours": {"method": "full_supervision", "dataset": str(boxes_ds)},
        "tight 2D boxes, paper λ=1e-4 ε=0.1": {"box_source": "tight_slices", "size_epsilon": 0.1},
        "tight 2D boxes": {"box_source": "tight_slices"},
        "tight 2D boxes, λ=1": {"box_source": "tight_slices", "tightness_lambda": 1.0},
        "tight 2D boxes, masked CE": {"box_source": "tight_slices", "background": "masked_ce"},
        "tight 2D boxes + 8 mm margin": {"box_source": "tight_slices", "box_margin_vox": margin},
        "raw 3D box, 2D bands": {"box_source": "box_3d"},
        "raw 3D box, 3D slabs": {"box_source": "box_3d", "tightness": "3d"},
        f"corrected boxes (5 vols, p={p})": {"box_source": "annotation"},
    }
    refs = {c.id: select_label(read_image(c.mask).array, None) > 0 for c in test}
    rows = []
    for n, (name, extra) in enumerate(configs.items()):
        job, seconds = run_job(root, f"job{n}", {**base, **extra})
        model = load_model(job)
        scores = []
        for c in test:
            image = read_image(c.image)
            index = np.argwhere(refs[c.id])  # the radiologist's box: the object's extent, as two corner voxels
            corners = image.geometry.index_to_ras(np.stack([index.min(axis=0), index.max(axis=0)]))
            mask, _ = predict_image(model, image, corners)
            scores.append(dice(refs[c.id], mask))
        if extra.get("method") != "full_supervision":
            label_dice = _label_dice(job, base["train_cases"])
        else:
            label_dice = 1.0 if "dataset" not in extra else float(np.mean(box_mask_dice[2:]))
        rows.append((mod, name, np.mean(scores), np.std(scores), label_dice, seconds))
        load_avg = os.getloadavg()[0]
        print(f"  {mod} {name}: Dice {np.mean(scores):.3f} ({seconds:.0f} s, load {load_avg:.2f})", flush=True)
    return rows


def _label_dice(job: Path, case_ids: list[str]) -> float:
    """Mean Dice of a job's box labels against the references on the crop grid."""
    from WeakAnnotateLib.evaluation.metrics import dice

    values = []
    for case_id in case_ids:
        labels = np.load(job / "targets" / "slice_boxes" / f"{case_id}.npy") > 0.5
        ref = np.load(job / "crops" / f"{case_id}.npz")["reference"] > 0.5
        values.append(dice(ref, labels))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MR T1, 5 training volumes, p = 16, 2 epochs")
    parser.add_argument("--modalities", default="MR_T1,PET")
    parser.add_argument("--train-sizes", default="5,10,20")
    parser.add_argument("--patch-sizes", default="16,32")
    parser.add_argument("--test", type=int, default=8, help="held-out volumes per modality")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--max-patches", type=int, default=1200, help="training patches per volume at p = 16; × (16/p)² at other p"
    )
    parser.add_argument("--no-networks", action="store_true", help="box IoU table only (skip the trained networks)")
    parser.add_argument("--networks-only", action="store_true", help="the trained networks' Dice table only")
    parser.add_argument("--net-epochs", type=int, default=50)
    parser.add_argument("--net-steps", type=int, default=10, help="steps per epoch of each network")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.test = 2, 4
    if not args.networks_only:
        iou_table(args)
    if not args.no_networks:
        network_table(args)


def iou_table(args: argparse.Namespace) -> None:
    """Table 2 of the box-correction paper (see the module docstring)."""

    import torch
    from WeakAnnotateLib.core.errors import InputError
    from WeakAnnotateLib.evaluation.simulate import tight_box
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.methods.box_correction.classifier import (
        BoxClassifierParams,
        correct_box,
        slice_box_iou,
        train_box_classifier,
    )

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    modalities = args.modalities.split(",")
    sizes = [int(v) for v in args.train_sizes.split(",")]
    patch_sizes = [int(v) for v in args.patch_sizes.split(",")]
    if args.quick:
        modalities, sizes, patch_sizes = ["MR_T1"], [5], [16]
    t0, cpu0 = time.time(), time.process_time()
    all_cases = load_cases()
    rows = []
    for mod in modalities:
        cases = sorted(
            (c for c in all_cases if c.id.startswith("ibsi_STS_") and c.id.endswith(f"_{mod}")), key=lambda c: c.id
        )
        gt = sorted({c.gt_type for c in cases})
        test_cases, pool = cases[-args.test :], cases[: -args.test]
        print(f"{mod}: {len(cases)} cases, reference: {'; '.join(gt)}; held out {[c.id for c in test_cases]}")
        test = [load(c) for c in test_cases]
        train_all = [load(c) for c in pool[: max(sizes)]]
        for p in patch_sizes:
            for n in sizes:
                if n > len(train_all):
                    print(f"  p={p} n={n}: only {len(train_all)} training volumes, skipped")
                    continue
                t1 = time.time()
                params = BoxClassifierParams(
                    patch_size=p,
                    epochs=args.epochs,
                    max_patches_per_volume=max(1, round(args.max_patches * (16 / p) ** 2)),  # same pixels per volume
                    batch_size=64,
                )
                try:
                    model = train_box_classifier(train_all[:n], params)
                except InputError as e:
                    rows.append((mod, p, n, None, str(e).split(";")[0], time.time() - t1, 0.0))
                    print(f"  p={p} n={n}: not trainable ({e})")
                    continue
                model.info["modalities"] = [MODALITIES[mod]]
                t_train = time.time() - t1
                ious, dices, t_apply = [], [], 0.0
                for v in test:
                    box = tight_box(v.mask, v.geometry)
                    result = correct_box(model, v.image, v.geometry, box)
                    t_apply += result.seconds
                    iou = slice_box_iou(result, v.mask)
                    shape = v.geometry.shape
                    ious.append((iou["raw"], iou["corrected"]))
                    dices.append((box_dice(result.mask(shape, raw=True), v.mask), box_dice(result.mask(shape), v.mask)))
                oracle = np.mean([oracle_iou(v, p) for v in test])
                rows.append((mod, p, n, (np.array(ious), np.array(dices), oracle), "", t_train, t_apply / len(test)))
                print(
                    f"  p={p} n={n}: IoU {np.mean(ious, 0)[0]:.3f} → {np.mean(ious, 0)[1]:.3f}, "
                    f"train {t_train:.0f} s, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    print()
    print(
        f"Table 2 on IBSI sarcomas (manual GTV): held-out {args.test} volumes per modality, classifier "
        f"{args.epochs} epochs × ≤{args.max_patches}·(16/p)² patches/volume, coords on, width 8"
    )
    head = f"{'modality':<8}{'p':>4}{'n':>4}{'IoU raw':>15}{'IoU corrected':>17}{'ceiling':>9}{'paper':>12}"
    print(head + f"{'box Dice raw':>15}{'box Dice corr.':>17}{'paper Dice*':>13}{'train s':>9}{'apply s':>9}")
    for mod, p, n, res, note, t_train, t_apply in rows:
        paper_iou = f"0.15→{PAPER_IOU[p][n]:.2f}" if p in PAPER_IOU and n in PAPER_IOU[p] else "–"
        paper_dice = f"0.28→{PAPER_DICE[p][n]:.2f}" if p in PAPER_DICE and n in PAPER_DICE[p] else "–"
        if res is None:
            print(f"{mod:<8}{p:>4}{n:>4}  n/a: {note}")
            continue
        iou, dice, oracle = res
        print(
            f"{mod:<8}{p:>4}{n:>4}{iou[:, 0].mean():>8.3f} ± {iou[:, 0].std():.2f}"
            f"{iou[:, 1].mean():>10.3f} ± {iou[:, 1].std():.2f}{oracle:>9.3f}{paper_iou:>12}"
            f"{dice[:, 0].mean():>8.3f} ± {dice[:, 0].std():.2f}{dice[:, 1].mean():>10.3f} ± {dice[:, 1].std():.2f}"
            f"{paper_dice:>13}{t_train:>9.1f}{t_apply:>9.2f}"
        )
    print("paper: liver CT (LiTS), VGG-16 patch classifier; *paper Dice = a 2.5D U-Net trained on the boxes (Table 1),")
    print(
        "ours = Dice of the boxes' union itself (networks trained on boxes: the next table). ceiling = IoU with every "
        "patch label right."
    )
    print(f"wall {wall:.0f} s, CPU (this process) {cpu:.0f} s, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
