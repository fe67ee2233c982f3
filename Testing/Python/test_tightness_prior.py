"""Log-barrier box constraints (tightness prior, emptiness, size): values by hand, bands, a tiny optimisation."""

from __future__ import annotations

import math

import pytest
import torch
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods.box_prior.tightness_prior import (
    BoxPriorLoss,
    barrier_t,
    box_masks,
    build_bands,
    constraint_violations,
    emptiness_loss,
    log_barrier,
    masked_cross_entropy,
    size_loss,
    slice_box_problem,
    tightness_loss,
)


@pytest.mark.parametrize("t", [5.0, 12.3])
def test_log_barrier_values_and_gradients_on_both_sides(t: float) -> None:
    z = torch.tensor([-2.0, -0.5, 0.0, 0.7], dtype=torch.float64, requires_grad=True)
    psi = log_barrier(z, t)
    psi.sum().backward()
    junction = -1.0 / t**2
    expected = [
        -math.log(2.0) / t,
        -math.log(0.5) / t,
        t * 0.0 - math.log(1 / t**2) / t + 1 / t,
        t * 0.7 - math.log(1 / t**2) / t + 1 / t,
    ]
    assert all(zz < junction for zz in (-2.0, -0.5))
    assert psi.detach().tolist() == pytest.approx(expected)
    assert z.grad.tolist() == pytest.approx([-1 / (t * -2.0), -1 / (t * -0.5), t, t])
    assert torch.isfinite(z.grad).all()


def test_log_barrier_is_continuous_with_continuous_slope_at_the_junction() -> None:
    t = 5.0
    j = -1.0 / t**2
    z = torch.tensor([j - 1e-9, j, j + 1e-9], dtype=torch.float64, requires_grad=True)
    psi = log_barrier(z, t)
    psi.sum().backward()
    assert psi[0].item() == pytest.approx(psi[2].item(), abs=1e-7)
    assert psi[1].item() == pytest.approx(-math.log(1 / t**2) / t)
    assert z.grad.tolist() == pytest.approx([t, t, t], rel=1e-6)


def test_log_barrier_schedule_and_bad_t() -> None:
    assert barrier_t(0) == 5.0
    assert barrier_t(3) == pytest.approx(5.0 * 1.1**3)
    with pytest.raises(InputError):
        log_barrier(torch.zeros(1), 0.0)


def test_bands_with_remainder_and_widths() -> None:
    # a 7-column x 3-row box: vertical bands of 5 + 2 columns, horizontal bands: one of 3 rows (remainder only)
    bands = build_bands([[(2, 1, 4, 7)]], (10, 10), width=5)
    assert bands.width.tolist() == [5.0, 2.0, 3.0]
    probs = torch.zeros(1, 10, 10)
    probs[0, 3, 1:8] = 1.0  # one full row crossing the box
    assert bands.sums(probs).tolist() == [5.0, 2.0, 7.0]
    # each box pixel is in exactly one vertical and one horizontal band
    assert bands.pixel.numel() == 2 * 3 * 7


def test_bands_at_image_borders_are_clipped() -> None:
    bands = build_bands([[(-3, 7, 2, 14)]], (6, 10), width=2)  # rows 0..2, cols 7..9 after clipping
    assert bands.width.tolist() == [2.0, 1.0, 2.0, 1.0]
    probs = torch.ones(1, 6, 10)
    assert bands.sums(probs).tolist() == [6.0, 3.0, 6.0, 3.0]
    with pytest.raises(InputError, match="outside"):
        build_bands([[(7, 0, 9, 3)]], (6, 10))
    with pytest.raises(InputError, match="zero extent"):
        build_bands([[(3, 3, 2, 5)]], (6, 10))


def test_bands_of_several_images_and_boxes_in_one_pass() -> None:
    bands = build_bands([[(0, 0, 4, 4)], [(0, 0, 1, 1), (5, 5, 9, 9)]], (10, 10), width=5)
    assert bands.count == 2 + 2 + 2
    probs = torch.zeros(2, 10, 10)
    probs[1, 5:10, 5:10] = 0.5
    assert bands.sums(probs).tolist() == [0, 0, 0, 0, 12.5, 12.5]
    # wrong shape is refused, not silently broadcast
    with pytest.raises(InputError):
        bands.sums(torch.zeros(1, 10, 10))


def test_emptiness_size_and_masked_ce_by_hand() -> None:
    t = 5.0
    inside = box_masks([[(1, 1, 2, 2)]], (4, 4))  # 4 pixels inside, 12 outside
    probs = torch.zeros(1, 4, 4, dtype=torch.float64)
    probs[0, 1:3, 1:3] = 0.5  # Σ inside = 2
    probs[0, 0, 0] = 0.25  # Σ outside = 0.25
    psi = lambda z: log_barrier(torch.tensor(z, dtype=torch.float64), t).item()  # noqa: E731
    assert emptiness_loss(probs, inside, t).item() == pytest.approx(psi(0.25))
    assert emptiness_loss(probs, inside, t).item() == pytest.approx(5 * 0.25 - math.log(1 / 25) / 5 + 1 / 5)
    # size: ε|Ω_I| − Σs = 0.4 − 2.25, Σs − |Ω_I| = 2.25 − 4
    assert size_loss(probs, inside, t, epsilon=0.1).item() == pytest.approx(psi(0.4 - 2.25) + psi(2.25 - 4))
    assert masked_cross_entropy(probs, inside).item() == pytest.approx(-math.log(0.75))
    v = constraint_violations(probs, build_bands([[(1, 1, 2, 2)]], (4, 4), 5), inside)
    assert v["emptiness_max"] == pytest.approx(0.25)
    assert v["tightness_violated"] == 0  # each band of 2 lines holds 4 x 0.5 = 2.0, exactly what it needs
    probs[0, 1, 1:3] = 0.25  # now the column band and the row band each hold 1.5: both short by 0.5
    v = constraint_violations(probs, build_bands([[(1, 1, 2, 2)]], (4, 4), 5), inside)
    assert v["tightness_violated"] == 2 and v["tightness_max"] == pytest.approx(0.5)


def test_tightness_loss_sums_barriers() -> None:
    bands = build_bands([[(0, 0, 1, 1)]], (3, 3), width=5)  # 2 bands (2 columns, 2 rows), each needs 2
    probs = torch.full((1, 3, 3), 0.75, dtype=torch.float64)  # each band holds 3 → z = −1
    expected = 2 * log_barrier(torch.tensor(-1.0, dtype=torch.float64), 5.0).item()
    assert tightness_loss(probs, bands, 5.0).item() == pytest.approx(expected)


def test_slice_box_problem_from_slice_boxes() -> None:
    from types import SimpleNamespace

    sb = [SimpleNamespace(slice_index=4, lo=(1, 2), hi=(3, 8)), SimpleNamespace(slice_index=5, lo=(0, 0), hi=(0, 0))]
    bands, inside, slices = slice_box_problem(sb, (10, 10), width=5)
    assert slices == [4, 5]
    assert inside.sum(dim=(1, 2)).tolist() == [21, 1]
    assert bands.width.tolist() == [5.0, 2.0, 3.0, 1.0, 1.0]


@pytest.mark.parametrize("background", ["emptiness", "masked_ce"])
def test_tiny_optimisation_satisfies_the_constraints(background: str) -> None:
    torch.manual_seed(0)
    shape = (20, 20)
    boxes = [[(4, 6, 15, 13)]]
    bands = build_bands(boxes, shape, width=5)
    inside = box_masks(boxes, shape)
    logits = torch.zeros(1, *shape, requires_grad=True)
    loss_fn = BoxPriorLoss(background=background)
    opt = torch.optim.Adam([logits], lr=0.05)
    for step in range(400):
        t = barrier_t(step // 20)  # one "epoch" = 20 steps
        opt.zero_grad()
        loss = loss_fn(torch.sigmoid(logits), bands, inside, t)
        loss.backward()
        opt.step()
    probs = torch.sigmoid(logits.detach())
    v = constraint_violations(probs, bands, inside)
    assert v["tightness_violated"] == 0, v
    assert v["size_low_max"] == 0 and v["size_high_max"] == 0, v
    # Σ s ≤ 0 holds only in the limit for a sigmoid: ask for less than one pixel's worth of foreground
    # spread over the 304 outside pixels (emptiness), and under 3 % per pixel for the weaker masked CE.
    n_outside = int((~inside).sum())
    assert v["emptiness_max"] < (1.0 if background == "emptiness" else 0.03 * n_outside), v


def test_slice_box_mask_and_window_boxes() -> None:
    import numpy as np
    from WeakAnnotateLib.methods.box_prior.training import slice_box_mask, window_boxes

    mask = np.zeros((3, 8, 8), bool)
    mask[1, 2, 3] = mask[1, 5, 6] = True  # slice 1: two pixels → one box rows 2..5, cols 3..6
    boxes = slice_box_mask(mask)
    assert boxes[0].sum() == 0 and boxes[2].sum() == 0 and boxes[1].sum() == 16
    found, index = window_boxes(torch.from_numpy(boxes[None, None].astype("float32")))
    assert found == [[(2, 3, 5, 6)]] and index == [(0, 1)]


def test_box_prior_worker_method_reaches_a_model(tmp_path, data_dir) -> None:
    """box_prior through the real worker: 2 PET crops (1 train, 1 validation), 1 epoch → model.json."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    from WeakAnnotateLib.data.dataset import create_from_cases

    cases = ["ibsi_STS_001_PET", "ibsi_STS_002_PET"]
    ds = tmp_path / "ds"
    create_from_cases(ds, cases, data_dir=data_dir)
    spec = {
        "dataset": str(ds),
        "output": str(tmp_path / "job"),
        "method": "box_prior",
        "epochs": 1,
        "batch_size": 1,
        "patch_size": [32, 32, 32],
        "channels": [4, 8, 16],
        "spacing_mm": 4.0,
        "padding_mm": 24.0,
        "device": "cpu",
        "train_cases": cases[:1],
        "validation_cases": cases[1:],
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "WEAKANNOTATE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "WeakAnnotateLib.jobs.worker", str(path)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert proc.returncode == 0, (lines[-1:], proc.stderr[-2000:])
    assert lines[-1]["event"] == "done"
    steps = [x for x in lines if x["event"] == "step"]
    assert steps and all(math.isfinite(x["loss"]) for x in steps)
    info = json.loads((tmp_path / "job" / "model.json").read_text())
    assert info["method"] == "box_prior"
    labels = np.load(tmp_path / "job" / "targets" / "slice_boxes" / f"{cases[0]}.npy")
    assert set(np.unique(labels)) == {0.0, 1.0}


# --- the 3D variant, the entropy term, the 2.5D network, box labels (issue 5, second part) --------------------


def test_slabs_along_three_axes_with_remainders_and_clipping() -> None:
    from WeakAnnotateLib.methods.box_prior.tightness_prior import build_slabs

    # a 3×7×5 box at the origin of a 4×8×6 volume, w = 5: axis 0 → one slab of 3 planes, axis 1 → 5 + 2,
    # axis 2 → one slab of 5; every box voxel counts once per axis
    slabs = build_slabs([(0, 0, 0, 2, 6, 4)], (4, 8, 6), width=5)
    assert slabs.width.tolist() == [3.0, 5.0, 2.0, 5.0]
    assert slabs.shape == (1, 4, 8, 6) and slabs.pixel.numel() == 3 * 3 * 7 * 5
    probs = torch.zeros((1, 4, 8, 6))
    probs[0, 1, 6, 2] = 1.0  # one voxel in plane k=1, j=6 (the remainder slab of axis 1), i=2
    assert slabs.sums(probs).tolist() == [1.0, 0.0, 1.0, 1.0]
    # a box reaching past the volume is clipped, a sample without a box adds nothing, outside is an error
    clipped = build_slabs([None, (-3, 5, 4, 9, 9, 9)], (4, 8, 6), width=5)
    assert clipped.width.tolist() == [4.0, 3.0, 2.0] and clipped.shape == (2, 4, 8, 6)
    assert int(clipped.pixel.min()) == 4 * 8 * 6 + 5 * 6 + 4  # second volume, first voxel (0, 5, 4)
    with pytest.raises(InputError, match="zero extent or lies outside"):
        build_slabs([(5, 0, 0, 6, 1, 1)], (4, 8, 6))


def test_volume_emptiness_size_and_entropy_by_hand() -> None:
    from WeakAnnotateLib.methods.box_prior.tightness_prior import box_entropy

    probs = torch.full((1, 2, 2, 2), 0.25)
    inside = torch.zeros((1, 2, 2, 2), dtype=torch.bool)
    inside[0, 0] = True  # 4 of 8 voxels
    t = 5.0
    assert float(emptiness_loss(probs, inside, t)) == pytest.approx(float(log_barrier(torch.tensor(1.0), t)))
    low = log_barrier(torch.tensor(0.1 * 4 - 2.0), t)  # ε|box| − Σ s
    high = log_barrier(torch.tensor(2.0 - 4.0), t)  # Σ s − |box|
    assert float(size_loss(probs, inside, t)) == pytest.approx(float(low + high))
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(box_entropy(probs, inside)) == pytest.approx(4 * h, rel=1e-5)
    loss = BoxPriorLoss(entropy_weight=0.5)
    bands = build_bands([[(0, 0, 1, 1)]], (2, 2))
    terms = loss.terms(probs[:, 0], bands, inside[:, 0], t)
    expected = terms["background"] + 1e-4 * terms["tightness"] + terms["size"] + 0.5 * terms["entropy"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    with pytest.raises(InputError, match="entropy_weight"):
        BoxPriorLoss(entropy_weight=-1.0)


def test_slice_stack_unet_sees_three_neighbouring_slices_only() -> None:
    from WeakAnnotateLib.networks.build import build_network

    torch.manual_seed(0)
    net = build_network({"network": "unet_2.5d", "in_channels": 1, "channels": [4, 8], "num_res_units": 2})
    net.eval()
    x = torch.randn(2, 1, 7, 16, 16)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 1, 7, 16, 16)
        changed = x.clone()
        changed[:, :, 5] += 3.0  # slice 5 feeds outputs 4, 5, 6 and nothing else
        diff = (net(changed) - y).abs().amax(dim=(0, 1, 3, 4))
    assert diff[:4].max() == 0 and diff[4:].min() > 0, diff
    # the batch and slice folding keeps samples apart: sample 1 alone gives sample 1's output
    with torch.no_grad():
        assert torch.allclose(net(x[1:]), y[1:], atol=1e-6)


def test_box_labels_tight_slices_3d_box_and_margins() -> None:
    import numpy as np
    from WeakAnnotateLib.methods.box_prior.training import box_3d_mask, slice_box_mask, window_boxes_3d

    mask = np.zeros((3, 12, 12), bool)
    mask[1, 4:6, 4:7] = True
    mask[2, 5, 5] = True
    tight = slice_box_mask(mask)
    assert tight[1].sum() == 6 and tight[2].sum() == 1 and tight[0].sum() == 0
    grown = slice_box_mask(mask, margin=5)  # in-plane only, clipped at the border
    assert grown[1].sum() == (min(5 + 5, 11) - 0 + 1) * (min(6 + 5, 11) - 0 + 1) and grown[0].sum() == 0
    box = box_3d_mask(mask, margin=1)  # all sides: slices 0..2 (clipped), rows 3..6, cols 3..7
    assert box.sum() == 3 * 4 * 5 and box[0].any()
    assert window_boxes_3d(torch.from_numpy(box[None, None].astype("float32"))) == [(0, 3, 3, 2, 6, 7)]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("box_source", "guess", "box_source: use one of"),
        ("tightness", "4d", "tightness: use one of"),
        ("background", "ce", "background: use one of"),
        ("box_margin_vox", -1, "box_margin_vox: must be ≥ 0"),
        ("entropy_weight", -0.1, "entropy_weight: must be ≥ 0"),
    ],
)
def test_box_prior_fields_are_checked(field: str, value: object, message: str) -> None:
    from WeakAnnotateLib.jobs.spec import spec_from_dict, validate

    spec = spec_from_dict({"dataset": "ds", "output": "out", "method": "box_prior", "box_prior": {field: value}})
    with pytest.raises(InputError, match=message):
        validate(spec)  # the section is checked before the dataset is looked at


def test_emptiness_tolerance_makes_the_constraint_satisfiable() -> None:
    """Σ_out s ≤ 0 never holds for a sigmoid: its loss grows like t. With one pixel of tolerance a nearly empty
    outside is on the barrier branch, and its loss *falls* as t grows (the wall becomes hard)."""
    probs = torch.zeros((1, 4, 4))
    probs[0, 0, 0] = 0.3  # 0.3 pixels of foreground outside a box at (2..3, 2..3)
    inside = box_masks([[(2, 2, 3, 3)]], (4, 4))
    strict = [float(emptiness_loss(probs, inside, t)) for t in (5.0, 50.0, 500.0)]
    tolerant = [float(emptiness_loss(probs, inside, t, tolerance=1.0)) for t in (5.0, 50.0, 500.0)]
    assert strict == pytest.approx([t * 0.3 - math.log(1 / t**2) / t + 1 / t for t in (5.0, 50.0, 500.0)])
    assert tolerant == pytest.approx([-math.log(0.7) / t for t in (5.0, 50.0, 500.0)])
    assert strict[2] > strict[0] and tolerant[2] < tolerant[0]
    # the upper size bound takes the same tolerance; an image without a box has no size constraints at all
    high = log_barrier(torch.tensor(0.3 - 4.0 - 1.0), 50.0)  # Σ s − |box| − tolerance
    low = log_barrier(torch.tensor(0.1 * 4.0 - 0.3), 50.0)  # ε|box| − Σ s
    assert float(size_loss(probs, inside, 50.0, tolerance=1.0)) == pytest.approx(float(low + high))
    no_box = torch.zeros((1, 4, 4), dtype=torch.bool)
    assert float(size_loss(probs, no_box, 50.0, tolerance=1.0)) == 0.0


def test_box_labels_from_annotations_slice_boxes_and_rois(tmp_path, data_dir) -> None:
    """box_source "annotation": a slice_boxes file (box-correct's BOXES.json) beats ROIs; ROIs are their union,
    grown by box_margin_vox; the labels land on the crop grid the network trains on."""
    import json

    import numpy as np
    from WeakAnnotateLib.data.dataset import CropCache, DatasetFolder, create_from_cases
    from WeakAnnotateLib.evaluation.simulate import index_box, tight_box
    from WeakAnnotateLib.files.image_io import read_image, read_mask
    from WeakAnnotateLib.methods.box_correction.classifier import BoxCorrectionResult, CorrectedSlice
    from WeakAnnotateLib.methods.box_prior.descriptor import BoxPriorOptions
    from WeakAnnotateLib.methods.box_prior.training import BoxPrior
    from WeakAnnotateLib.scene.markups_io import write_box
    from WeakAnnotateLib.training.job_spec import JobSpec

    case = "ibsi_STS_001_PET"
    ds = create_from_cases(tmp_path / "ds", [case], data_dir=data_dir)
    entry = ds.case(case)
    image = read_image(ds.path(entry.image))
    mask = read_mask(ds.path(entry.reference)).astype(bool)
    write_box(tmp_path / "ds" / "annotations" / "box.mrk.json", tight_box(mask, image.geometry))
    entry.annotations["box"] = ds.stored(tmp_path / "ds" / "annotations" / "box.mrk.json")
    ds.save()

    def labels(margin: int = 0) -> np.ndarray:
        options = BoxPriorOptions(box_source="annotation", box_margin_vox=margin)
        spec = JobSpec(dataset=str(ds.root), output=str(tmp_path / "job"), method="box_prior",
                       spacing_mm=4.0, padding_mm=16.0, options=options)  # fmt: skip
        cache = CropCache(DatasetFolder.load(ds.root), tmp_path / "crops", padding_mm=16.0, spacing_mm=4.0)
        cache.prepare(ds.case(case))
        return BoxPrior(spec, cache, {"train": [case], "validation": []}, tmp_path / "job").box_labels(case) > 0.5

    roi = labels()
    index = np.argwhere(roi)  # the ROI is one box on the crop grid, filled
    assert roi.sum() == np.prod(index.max(axis=0) - index.min(axis=0) + 1)
    grown = labels(margin=1)
    assert grown.sum() > roi.sum() and (grown & roi).sum() == roi.sum()

    # a slice_boxes file with a 2×3 box in two slices wins over the ROI
    k, j, i = (int(v) for v in np.argwhere(mask).min(axis=0))  # inside the crop: at the object's corner
    lo, hi = (j, i), (j + 1, i + 2)
    two = []  # two neighbouring 3.27 mm slices: resampling to 4 mm (nearest) may skip a single one
    for kk in (k, k + 1):
        box = index_box(np.array([kk, *lo]), np.array([kk, *hi]), image.geometry)
        two.append(CorrectedSlice(kk, lo, hi, lo, hi, box, box, 1.0))
    doc = BoxCorrectionResult(0, two, [], 0.0).to_json()
    (tmp_path / "ds" / "annotations" / "boxes.json").write_text(json.dumps(doc), encoding="utf-8")
    ds = DatasetFolder.load(ds.root)
    ds.case(case).annotations["slice_boxes"] = ds.stored(tmp_path / "ds" / "annotations" / "boxes.json")
    ds.save()
    sliced = labels()
    assert 0 < sliced.sum() < roi.sum() // 4
    assert 1 <= len(np.unique(np.argwhere(sliced)[:, 0])) <= 2  # two 3.27 mm slices → one or two 4 mm slices
