"""PET lesions from boxes (Afshari et al.): the losses against hand-computed values, the box simulator, the worker.

Loss tests use float64 tensors of 2×2×2 or 4×4×4 voxels; every expected number is derived in the comment
beside it from the printed formulas (3)–(7), so a change of reading shows up as a changed number.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from WeakAnnotateLib.methods.pet_boxes.losses import (
    dice_loss,
    modified_dice_loss,
    mumford_shah_loss,
    region_channels,
    regularised_heaviside,
    total_loss,
)

torch.set_num_threads(1)
F64 = torch.float64


def vol(values: list[float], shape: tuple[int, int, int] = (2, 2, 2)) -> torch.Tensor:
    """A (1, 1, D, H, W) float64 tensor from a flat list in C order."""
    return torch.tensor(values, dtype=F64).reshape(1, 1, *shape)


# 2×2×2: the box is the first plane (flat indices 0–3, Σb = 4); voxels 4–7 are outside.
BOX8 = vol([1, 1, 1, 1, 0, 0, 0, 0])


def mdice(prob: torch.Tensor, box: torch.Tensor = BOX8, **kw) -> float:
    return float(modified_dice_loss(prob, box, smooth=0.0, **kw))


# --- modified Dice (3)–(4) ----------------------------------------------------------------------------


def test_mdice_above_alpha_drops_unfilled_box_voxels():
    # p inside the box = [0.5, 0, 0, 0] → S = Σpb = 0.5, fill S/Σb = 0.125 > α = 0.1 → H = 1.
    # p outside = [0.2, 0, 0, 0] → Σp = 0.7.  M = Σb − S = 3.5.
    # denominator = Σp + Σb − M = 0.7 + 4 − 3.5 = 1.2 (= Σp + S);  L = 1 − 2·0.5 / 1.2 = 1/6.
    p = vol([0.5, 0, 0, 0, 0.2, 0, 0, 0])
    assert mdice(p) == pytest.approx(1.0 / 6.0, abs=1e-12)


def test_mdice_heaviside_switch_at_alpha():
    # just below: p_in = [0.36, 0, 0, 0], p_out = [0.2, ...]: fill 0.09 ≤ α → H = 0, plain Dice (2):
    #   L = 1 − 2·0.36 / (0.56 + 4) = 1 − 0.72 / 4.56 = 0.842105263...
    below = vol([0.36, 0, 0, 0, 0.2, 0, 0, 0])
    assert mdice(below) == pytest.approx(1 - 0.72 / 4.56, abs=1e-12)
    # exactly at α: p_in = 0.4 → fill 0.1 = α, H(0.1) = 0 (x ≤ α): L = 1 − 0.8 / (0.6 + 4) = 0.826086956...
    at = vol([0.4, 0, 0, 0, 0.2, 0, 0, 0])
    assert mdice(at) == pytest.approx(1 - 0.8 / 4.6, abs=1e-12)
    # just above: p_in = 0.44 → fill 0.11 > α → H = 1: denominator Σp + S = 0.64 + 0.44 = 1.08,
    #   L = 1 − 0.88 / 1.08 = 0.185185185...
    above = vol([0.44, 0, 0, 0, 0.2, 0, 0, 0])
    assert mdice(above) == pytest.approx(1 - 0.88 / 1.08, abs=1e-12)
    # the plain Dice (the box-only baseline) sees no switch: 1 − 0.88 / (0.64 + 4) = 0.810344827...
    assert float(dice_loss(above, BOX8, smooth=0.0)) == pytest.approx(1 - 0.88 / 4.64, abs=1e-12)
    # α is a parameter: with α = 0.2 the same prediction is below the switch
    assert mdice(above, alpha=0.2) == pytest.approx(1 - 0.88 / 4.64, abs=1e-12)


def test_mdice_above_alpha_box_size_does_not_matter_but_outside_does():
    # 4×4×4. A 2×2×2 prediction of 1 inside a box of 8 voxels, then of 27 voxels (fill 1 and 8/27 > α):
    # both H = 1, denominator Σp + S = 8 + 8, L = 1 − 16/16 = 0 — unfilled box voxels cost nothing.
    p = torch.zeros(1, 1, 4, 4, 4, dtype=F64)
    p[..., :2, :2, :2] = 1
    small = torch.zeros_like(p)
    small[..., :2, :2, :2] = 1
    large = torch.zeros_like(p)
    large[..., :3, :3, :3] = 1
    assert mdice(p, small) == pytest.approx(0.0, abs=1e-12)
    assert mdice(p, large) == pytest.approx(0.0, abs=1e-12)
    # below the switch (α = 0.5 > 8/27) the large box is plain Dice: 1 − 16 / (8 + 27) = 19/35.
    assert mdice(p, large, alpha=0.5) == pytest.approx(19 / 35, abs=1e-12)
    # one false-positive voxel of 1 outside the box: Σp = 9, S = 8, L = 1 − 16 / 17 = 1/17 (classical Dice).
    p_fp = p.clone()
    p_fp[..., 3, 3, 3] = 1
    assert mdice(p_fp, large) == pytest.approx(1 / 17, abs=1e-12)


def test_mdice_switch_per_box_region():
    # 4×4×4, two box regions of 8 voxels: A = [0:2]³ predicted 1 everywhere, B = [2:4]³ predicted 0.
    # As one union (K = 1, the printed formula): S = 8, Σb = 16, fill 0.5 > α → H = 1,
    #   denominator = Σp + S = 16, L = 1 − 16/16 = 0 (box B is silently ignored).
    # Per region (K = 2): H_A = 1 (M_A = 0), H_B = 0 (fill 0) → denominator = Σp + Σb − 0 = 8 + 16 = 24,
    #   L = 1 − 16/24 = 1/3: the empty box B is still pulled in.
    labels = torch.zeros(1, 1, 4, 4, 4, dtype=F64)
    labels[..., :2, :2, :2] = 1
    labels[..., 2:, 2:, 2:] = 2
    p = (labels == 1).to(F64)
    union = (labels > 0).to(F64)
    regions = region_channels(labels).to(F64)
    assert regions.shape == (1, 2, 4, 4, 4)
    assert mdice(p, union) == pytest.approx(0.0, abs=1e-12)
    assert mdice(p, regions) == pytest.approx(1 / 3, abs=1e-12)


def test_mdice_batch_is_mean_of_scans():
    a = vol([0.5, 0, 0, 0, 0.2, 0, 0, 0])  # 1/6 (above)
    b = vol([0.36, 0, 0, 0, 0.2, 0, 0, 0])  # 1 − 0.72/4.56 (below)
    both = modified_dice_loss(torch.cat([a, b]), torch.cat([BOX8, BOX8]), smooth=0.0)
    assert float(both) == pytest.approx((1 / 6 + 1 - 0.72 / 4.56) / 2, abs=1e-12)


def test_mdice_gradients_finite_and_signed():
    # Below α (plain Dice): raising p in the box lowers the loss (∂L/∂p < 0), outside raises it (> 0).
    p = vol([0.36, 0.01, 0, 0, 0.2, 0, 0, 0]).requires_grad_(True)
    modified_dice_loss(p, BOX8).backward()
    g = p.grad.flatten()
    assert torch.isfinite(g).all()
    assert (g[:4] < 0).all() and (g[4:] > 0).all()
    # Above α: L = 1 − 2S/(P_out + 2S), ∂L/∂S = −2 P_out/(P_out + 2S)² < 0 while something lies outside;
    # ∂L/∂p_out = 2S/(P_out + 2S)² > 0. Exact: S = 0.5, P_out = 0.2 → −0.4/1.44, +1/1.44.
    p = vol([0.5, 0, 0, 0, 0.2, 0, 0, 0]).requires_grad_(True)
    modified_dice_loss(p, BOX8, smooth=0.0).backward()
    g = p.grad.flatten()
    assert g[0].item() == pytest.approx(-0.4 / 1.44, abs=1e-12)
    assert g[3].item() == pytest.approx(-0.4 / 1.44, abs=1e-12)  # empty box voxels: same pull, no penalty
    assert g[4].item() == pytest.approx(1.0 / 1.44, abs=1e-12)
    # saturated sigmoid and an empty scan (no box, no prediction) stay finite
    logits = torch.tensor([[-50.0, 50.0, -50.0, 0, 0, 0, 0, 0]], dtype=F64).reshape(1, 1, 2, 2, 2)
    logits.requires_grad_(True)
    loss = modified_dice_loss(torch.sigmoid(logits), torch.cat([BOX8]) * 0)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(logits.grad).all()


# --- Mumford–Shah term (5)–(7) ------------------------------------------------------------------------

# 2×2×2, box = all 8 voxels; image: voxels 0, 1 = 3 (lesion, n1 = 2), the other six = 1 (n0 = 6).
IMG8 = vol([3, 3, 1, 1, 1, 1, 1, 1])
ALL8 = torch.ones_like(IMG8)
PERFECT8 = vol([1, 1, 0, 0, 0, 0, 0, 0])


def test_ms_perfect_split_hand_value():
    # ε → 0 (1e-7): H_ε(φ = ±0.5) = 1 / 0 up to 1e-7. C1 = 3, C2 = 1.
    # term1 (ω1 = 1): lesion: I·h = 3: |3 − 3| − |3 − 1| = −2 (×2 = −4); background: I·h = 0: |0 − 3| − |0 − 1| = 2
    #   (×6 = 12) → 8.
    # term2 (ω2 = 3): lesion: I·(1 − h) = 0: |0 − 1| − |0 − 3| = −2 (×2 = −4); background: I·(1 − h) = 1:
    #   |1 − 1| − |1 − 3| = −2 (×6 = −12) → −16.
    # L_MS = (1·8 + 3·(−16)) / Σb = −40 / 8 = −5  (= −(a − c)(2 n0 + 4 n1) / n = −2·20/8).
    assert float(mumford_shah_loss(PERFECT8, IMG8, ALL8, eps=1e-7)) == pytest.approx(-5.0, abs=1e-5)


def test_ms_epsilon_003_hand_value():
    # ε = 0.03: h = H_ε(0.5) = ½(1 + (2/π) arctan(0.5/0.03)) = 0.98092..., H_ε(−0.5) = 1 − h.
    h = 0.5 * (1 + 2 / math.pi * math.atan(0.5 / 0.03))
    assert h == pytest.approx(0.980924, abs=1e-6)
    assert float(regularised_heaviside(torch.tensor(0.5, dtype=F64))) == pytest.approx(h, abs=1e-12)
    # C1 = Σ I·h / Σ h = (2·3·h + 6·1·(1 − h)) / (2h + 6(1 − h)) = 6 / (6 − 4h)
    # C2 = Σ I·(1 − h) / Σ (1 − h) = (2·3·(1 − h) + 6·h) / (2(1 − h) + 6h) = 6 / (2 + 4h)
    c1, c2 = 6 / (6 - 4 * h), 6 / (2 + 4 * h)
    # lesion voxel: I·h = 3h, I(1 − h) = 3(1 − h); background: I·h = 1 − h, I(1 − h) = h.
    t1 = 2 * (abs(3 * h - c1) - abs(3 * h - c2)) + 6 * (abs((1 - h) - c1) - abs((1 - h) - c2))
    t2 = 2 * (abs(3 * (1 - h) - c2) - abs(3 * (1 - h) - c1)) + 6 * (abs(h - c2) - abs(h - c1))
    expected = (1 * t1 + 3 * t2) / 8  # = −4.6921770629...
    assert expected == pytest.approx(-4.6921770629, abs=1e-9)
    assert float(mumford_shah_loss(PERFECT8, IMG8, ALL8)) == pytest.approx(expected, abs=1e-10)
    # ω weights enter linearly: ω = (2, 0) gives 2·t1/8.
    assert float(mumford_shah_loss(PERFECT8, IMG8, ALL8, omega1=2, omega2=0)) == pytest.approx(2 * t1 / 8, abs=1e-10)


def test_ms_perfect_split_is_lowest_and_uniform_is_zero():
    # A uniform prediction makes C1 = C2 (both the box mean), so every |·| − |·| pair cancels: L_MS = 0.
    for value in (0.0, 0.5, 1.0):
        assert float(mumford_shah_loss(torch.full_like(IMG8, value), IMG8, ALL8)) == pytest.approx(0.0, abs=1e-12)
    perfect = float(mumford_shah_loss(PERFECT8, IMG8, ALL8))
    assert perfect < 0  # (5) is a difference of distances, not a non-negative energy: see the module docstring
    others = [
        vol([1, 0, 0, 0, 0, 0, 0, 0]),  # half the lesion
        vol([1, 1, 1, 0, 0, 0, 0, 0]),  # lesion + one background voxel
        vol([0, 0, 1, 1, 1, 1, 1, 1]),  # inverted
        vol([0.7, 0.7, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]),  # right side, less certain
    ]
    for p in others:
        assert float(mumford_shah_loss(p, IMG8, ALL8)) > perfect


def test_ms_only_box_voxels_count():
    # 4×4×4 with a 2×2×2 box [1:3]³ holding the 2×2×2 example; anything outside the box may change freely.
    img = torch.full((1, 1, 4, 4, 4), 7.0, dtype=F64)
    p = torch.rand(1, 1, 4, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    box = torch.zeros_like(img)
    box[..., 1:3, 1:3, 1:3] = 1
    img[..., 1:3, 1:3, 1:3] = IMG8[0, 0]
    p[..., 1:3, 1:3, 1:3] = PERFECT8[0, 0]
    inside_only = float(mumford_shah_loss(PERFECT8, IMG8, ALL8))
    p.requires_grad_(True)
    loss = mumford_shah_loss(p, img, box)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(inside_only, abs=1e-12)
    outside = box[0, 0] == 0
    assert (p.grad[0, 0][outside] == 0).all()
    img2 = img.clone()
    img2[..., 0, :, :] = -100.0
    assert float(mumford_shah_loss(p.detach(), img2, box)) == pytest.approx(inside_only, abs=1e-12)


def test_ms_gradients_finite_and_signed():
    # From an uncertain, right-sided prediction the gradient raises p on the bright voxels (∂L/∂p < 0) and
    # lowers it on the dark ones (> 0): descent moves towards the perfect split.
    p = vol([0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]).requires_grad_(True)
    mumford_shah_loss(p, IMG8, ALL8).backward()
    g = p.grad.flatten()
    assert torch.isfinite(g).all()
    assert (g[:2] < 0).all() and (g[2:] > 0).all()
    # a box with no voxel, and hard means, stay finite
    p2 = vol([0.6] * 8).requires_grad_(True)
    loss = mumford_shah_loss(p2, IMG8, ALL8 * 0) + mumford_shah_loss(p2, IMG8, ALL8, hard_means=True)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(p2.grad).all()


def test_ms_descent_recovers_the_lesion_inside_a_box():
    # 12³, lesion [4:8]³ of intensity 2 on 1 (+ noise), box [3:9]³; descend on free logits with L_MS alone.
    from WeakAnnotateLib.evaluation.metrics import dice

    g = torch.Generator().manual_seed(0)
    img = torch.ones(1, 1, 12, 12, 12)
    img[..., 4:8, 4:8, 4:8] = 2.0
    img = img + 0.1 * torch.randn(img.shape, generator=g)
    box = torch.zeros_like(img)
    box[..., 3:9, 3:9, 3:9] = 1
    z = (2 * box - 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        mumford_shah_loss(torch.sigmoid(z), img, box).backward()
        opt.step()
    ref = np.zeros((12, 12, 12), bool)
    ref[4:8, 4:8, 4:8] = True
    assert dice(ref, (torch.sigmoid(z)[0, 0] >= 0.5).numpy() & (box[0, 0] > 0).numpy()) > 0.95


def test_total_loss_is_beta_mdice_plus_lambda_ms():
    p = vol([0.5, 0, 0, 0, 0.2, 0, 0, 0])
    img = vol([3, 1, 1, 1, 1, 1, 1, 1])
    md = float(modified_dice_loss(p, BOX8))
    ms = float(mumford_shah_loss(p, img, BOX8))
    assert float(total_loss(p, img, BOX8)) == pytest.approx(10 * md + 1 * ms, abs=1e-12)
    assert float(total_loss(p, img, BOX8, beta=2, lam=0.5)) == pytest.approx(2 * md + 0.5 * ms, abs=1e-12)


# --- the box simulator (pet_boxes.py) -----------------------------------------------------------------


def _grid(shape, spacing=(2.0, 1.0, 1.0)):
    import SimpleITK as sitk
    from WeakAnnotateLib.files.image_io import geometry_of

    img = sitk.Image([int(s) for s in shape[::-1]], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing[::-1]])
    return geometry_of(img)


def test_lesion_boxes_one_per_component_and_union_regions():
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.methods.pet_boxes.boxes import box_dice, box_regions, boxes_mask, lesion_boxes

    g = _grid((10, 20, 20))  # k spacing 2 mm, j/i 1 mm
    mask = np.zeros(g.shape, bool)
    mask[2:4, 2:6, 2:6] = True  # lesion 1
    mask[5:7, 10:13, 14:18] = True  # lesion 2
    mask[7, 13, 18] = True  # touches lesion 2 at a corner only: same lesion (26-connectivity)
    boxes = lesion_boxes(mask, g)
    assert len(boxes) == 2
    tight = boxes_mask(boxes, g)
    # tight boxes: lesion 1's box is itself (32 voxels); lesion 2 + corner voxel: box [5:8, 10:14, 14:19] = 60
    assert tight.sum() == 32 + 3 * 4 * 5
    assert box_dice(mask, g, 0.0) == pytest.approx(dice(mask, tight))
    regions = box_regions(boxes, g)
    assert set(np.unique(regions)) == {0, 1, 2}
    # a 2 mm margin: one more slice along k (2 mm spacing), two more voxels along j and i, on both sides
    grown = boxes_mask(lesion_boxes(mask, g, margin_mm=2.0), g)
    assert grown[1:5, 0:8, 0:8].all() and grown.sum() > tight.sum()
    # a 6 mm margin makes the two boxes overlap: still two boxes, one region (merged by union)
    wide = lesion_boxes(mask, g, margin_mm=6.0)
    assert len(wide) == 2
    assert box_regions(wide, g).max() == 1
    # Dice falls as the margin grows
    assert box_dice(mask, g, 0.0) > box_dice(mask, g, 2.0) > box_dice(mask, g, 6.0)


def test_calibrate_margin_hits_the_target_on_a_cube():
    from WeakAnnotateLib.methods.pet_boxes.boxes import box_dice, calibrate_margin

    g = _grid((40, 40, 40), (1.0, 1.0, 1.0))
    mask = np.zeros(g.shape, bool)
    mask[15:25, 15:25, 15:25] = True  # 1000 voxels; margin m mm → box (10 + 2m)³
    # Dice = 2000 / (1000 + (10 + 2m)³) = 0.28 → (10 + 2m)³ = 6142.9 → side 18.3, m = 4.16 mm; the box is
    # voxel-quantised (its side jumps by 2 voxels per 1 mm of margin), so the found margin is within 1 mm.
    margin, per_scan = calibrate_margin([(mask, g)], 0.28, tol_mm=0.25)
    assert 3.5 <= margin <= 5.0
    assert per_scan[0] == pytest.approx(box_dice(mask, g, margin))
    assert abs(per_scan[0] - 0.28) < 0.06


def test_default_margin_matches_paper_box_dice_on_pet(data_dir):
    from WeakAnnotateLib.files.cases import load_cases
    from WeakAnnotateLib.files.image_io import read_image, select_label
    from WeakAnnotateLib.methods.pet_boxes.boxes import DEFAULT_MARGIN_MM, box_dice

    values = []
    for case in load_cases(data_dir):
        if case.id.startswith("ibsi_STS_") and case.id.endswith("_PET"):
            ref = read_image(case.mask)
            values.append(box_dice(select_label(ref.array, None), ref.geometry, DEFAULT_MARGIN_MM))
    assert len(values) == 30
    assert abs(float(np.mean(values)) - 0.28) < 0.01  # paper: 28 % ± 11 %; measured 0.278 ± 0.082


# --- the worker: pet_box_dice, then pet_box_mdice_ms started from it --------------------------------------

PET_CASES = ["ibsi_STS_001_PET", "ibsi_STS_002_PET"]
ENV = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _run_job(folder: Path, name: str, ds: Path, **fields) -> tuple[int, list[dict], Path]:
    spec = {
        "dataset": str(ds),
        "output": str(folder / name),
        "epochs": 2,
        "batch_size": 1,
        "patch_size": [32, 32, 32],
        "channels": [4, 8, 16],
        "spacing_mm": 4.0,
        "padding_mm": 24.0,
        "device": "cpu",
        "validation_cases": [PET_CASES[1]],
        "train_cases": [PET_CASES[0]],
        **fields,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "WeakAnnotateLib.jobs.worker", str(path)],
        env=ENV,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, lines, folder / name


def test_pet_box_methods_train_to_a_model(tmp_path, data_dir):
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.methods.pet_boxes.boxes import DEFAULT_MARGIN_MM
    from WeakAnnotateLib.networks.prediction import load_model

    ds = tmp_path / "ds"
    create_from_cases(ds, PET_CASES, data_dir=data_dir)
    rc, lines, out = _run_job(tmp_path, "dice", ds, method="pet_box_dice")
    assert rc == 0, lines[-1]
    assert lines[-1]["event"] == "done"
    info = json.loads((out / "model.json").read_text())
    assert info["method"] == "pet_box_dice"
    assert info["network"]["act"] == "SELU" and info["network"]["input_norm"] == "zscore"
    assert info["hyper_parameters"]["pet_box_dice"]["box_margin_mm"] == DEFAULT_MARGIN_MM
    assert info["data"]["train_cases"][0]["target"].startswith("boxes")
    labels = np.load(out / "targets" / "boxes" / f"{PET_CASES[0]}.npy")
    assert set(np.unique(labels)) == {0.0, 1.0}  # one lesion → one box region; the crop holds background too

    rc, lines, out2 = _run_job(tmp_path, "mdice_ms", ds, method="pet_box_mdice_ms", init_model=str(out), epochs=1)
    assert rc == 0, lines[-1]
    steps = [x for x in lines if x["event"] == "step"]
    assert steps and all(math.isfinite(x["loss"]) for x in steps)
    model = load_model(out2)
    assert model.info["hyper_parameters"]["pet_box_mdice_ms"]["init_model"] == str(out)
    assert model.info["validation"]["dice_native"] is not None

    # the paper's L_FS: the same SELU / z-score network on the contours (no box labels written), and it can
    # start a pet_box_mdice_ms job (same network)
    rc, lines, fs = _run_job(tmp_path, "fs", ds, method="pet_box_full_supervision", epochs=1)
    assert rc == 0, lines[-1]
    fs_info = json.loads((fs / "model.json").read_text())
    assert fs_info["network"]["act"] == "SELU" and fs_info["network"]["input_norm"] == "zscore"
    assert fs_info["data"]["train_cases"][0]["target"] == "reference masks"
    assert not (fs / "targets").exists()

    # a bad init_model is rejected before anything starts, naming the field
    rc, lines, _ = _run_job(tmp_path, "bad", ds, method="pet_box_mdice_ms", init_model=str(tmp_path / "nowhere"))
    assert rc == 2 and lines[-1]["error"].startswith("init_model:")
    rc, lines, _ = _run_job(tmp_path, "bad2", ds, method="pet_box_mdice_ms", ms_omega=[1.0])
    assert rc == 2 and lines[-1]["error"].startswith("ms_omega:")
