"""PET lesion read-out (pet_lesions.py): components, volumes, SUV, segments, warnings, all-or-nothing scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.image_io import read_image, select_label
from WeakAnnotateLib.methods.pet_boxes.lesions import (
    is_pet_model,
    label_lesions,
    lesions_of_nodes,
    modality_warnings,
    suv_warnings,
    voxel_volume_ml,
)

PET_CASE = "ibsi_STS_001_PET"


@pytest.fixture(scope="module")
def pet(data_dir):
    from conftest import case_by_id_in

    case = case_by_id_in(data_dir, PET_CASE)
    image = read_image(case.image)
    ref = read_image(case.mask)
    assert ref.geometry.same_grid(image.geometry)
    return image, select_label(ref.array, None)


def two_lesions(shape) -> np.ndarray:
    """Two separate cubes (3³ and 2³ voxels) plus a voxel touching the big one at a corner (26-connected)."""
    m = np.zeros(shape, bool)
    c = np.asarray(shape) // 2
    m[c[0] - 6 : c[0] - 3, c[1] - 6 : c[1] - 3, c[2] - 6 : c[2] - 3] = True
    m[c[0] - 3, c[1] - 3, c[2] - 3] = True  # corner contact: same lesion
    m[c[0] + 4 : c[0] + 6, c[1] + 4 : c[1] + 6, c[2] + 4 : c[2] + 6] = True
    return m


def test_reference_as_prediction(pet):
    image, mask = pet
    lesions, labels = label_lesions(mask, image.array, image.geometry)
    assert len(lesions) == 1  # every IBSI STS scan has one lesion
    (les,) = lesions
    ml = voxel_volume_ml(image.geometry)
    assert ml == pytest.approx(np.prod(image.geometry.spacing) / 1000.0)
    assert les.voxels == int(mask.sum())
    assert les.volume_ml == pytest.approx(mask.sum() * ml)
    assert les.suv_max == pytest.approx(float(image.array[mask].max()))
    assert les.suv_mean == pytest.approx(float(image.array[mask].mean()), rel=1e-6)
    centre = image.geometry.index_to_ras(np.argwhere(mask).mean(axis=0))[0]
    assert np.allclose(les.centre_ras, centre)
    assert les.name.startswith("Lesion 1 (") and "ml, SUVmax" in les.name
    assert np.array_equal(labels == 1, mask)
    assert suv_warnings(image.array) == []  # a real SUV scan: no warning


def test_synthetic_two_lesions(pet):
    image, _ = pet
    m = two_lesions(image.geometry.shape)
    lesions, labels = label_lesions(m, image.array, image.geometry)
    assert [les.voxels for les in lesions] == [28, 8]  # sorted by volume; the corner voxel joins lesion 1
    ml = voxel_volume_ml(image.geometry)
    for les in lesions:
        inside = labels == les.index
        assert les.volume_ml == pytest.approx(inside.sum() * ml)
        assert les.suv_max == float(image.array[inside].max())
    assert int((labels > 0).sum()) == int(m.sum())
    empty, empty_labels = label_lesions(np.zeros_like(m), image.array, image.geometry)
    assert empty == [] and not empty_labels.any()


def test_warnings_ct_and_modality(data_dir):
    from conftest import case_by_id_in

    ct = read_image(case_by_id_in(data_dir, "ts_ct_sm").image)
    warnings = suv_warnings(ct.array)
    assert warnings and any("does not look like" in w for w in warnings)
    assert any("< -1" in w for w in warnings)  # air is −1000 HU
    assert any("> 100" in w for w in suv_warnings(np.array([0.0, 5000.0])))  # Bq/ml
    assert any("< 1" in w for w in suv_warnings(np.array([0.0, 0.5])))
    info = {"name": "pet", "method": "pet_box_mdice_ms"}
    assert is_pet_model(info) and not is_pet_model({"method": "full_supervision"})
    assert modality_warnings(info, "CT") and "trained on PET" in modality_warnings(info, "CT")[0]
    assert modality_warnings(info, "PET") == [] and modality_warnings(info, "PT") == []
    assert modality_warnings(info, None) == []  # unknown modality: no guess
    assert modality_warnings({"method": "full_supervision", "modalities": ["CT"]}, "PET")


def test_segments_and_nothing_partial(pet, runtime, monkeypatch):
    from WeakAnnotateLib.files.image_io import Image
    from WeakAnnotateLib.scene import mrml_adapter
    from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, segment_ids, segment_mask

    image, _ = pet
    volume = add_volume_node(runtime, Image(image.array, image.geometry, "pet"))
    volume.SetAttribute("WeakAnnotate.modality", "CT")
    m = two_lesions(image.geometry.shape)
    node, lesions, warnings = lesions_of_nodes(
        runtime, volume, m, image.geometry, model_info={"name": "pet", "method": "pet_box_dice"}
    )
    assert any("trained on PET" in w for w in warnings)  # the node says CT
    ids = segment_ids(node)
    names = [node.GetSegmentation().GetSegment(i).GetName() for i in ids]
    assert names == [les.name for les in lesions] and names[0].startswith("Lesion 1 (")
    assert int(segment_mask(node, ids[1], image.geometry).sum()) == 8

    n_before = runtime.scene.GetNumberOfNodes()
    calls = {"n": 0}
    real = mrml_adapter.set_segment_mask

    def fail_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise InputError("boom")
        return real(*a, **k)

    monkeypatch.setattr(mrml_adapter, "set_segment_mask", fail_second)
    with pytest.raises(InputError, match="boom"):
        lesions_of_nodes(runtime, volume, m, image.geometry)
    assert runtime.scene.GetNumberOfNodes() == n_before  # the new segmentation node is gone
    calls["n"] = 0
    with pytest.raises(InputError, match="boom"):  # into an existing node: its first lesion segment is removed
        lesions_of_nodes(runtime, volume, m, image.geometry, segmentation_node=node)
    assert segment_ids(node) == ids


def test_panel_finish_prediction_lists_lesions(pet, monkeypatch):
    """The hub panel's logic headless (as test_training.py's panel_logic): a PET model's prediction → lesions."""
    import threading
    from pathlib import Path
    from types import SimpleNamespace

    from conftest import load_scripted_module
    from WeakAnnotateLib.files.image_io import Image
    from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, segment_ids
    from WeakAnnotateLib.scene.slicer_runtime import get_runtime

    rt = get_runtime()
    path = Path(__file__).resolve().parents[2] / "WeakAnnotate" / "WeakAnnotate.py"
    module = load_scripted_module(monkeypatch, path, "WeakAnnotatePanelPet", rt)
    logic = module.WeakAnnotateLogic()

    image, _ = pet
    volume = add_volume_node(rt, Image(image.array, image.geometry, "pet panel"))
    volume.SetAttribute("WeakAnnotate.modality", "CT")
    model = SimpleNamespace(name="petmodel", info={"name": "petmodel", "method": "pet_box_mdice_ms"})
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    mask = two_lesions(image.geometry.shape)
    logic._prediction = (thread, {"volume": volume, "geometry": image.geometry, "model": model, "mask": mask})
    text = logic.finishPrediction()
    assert [les.voxels for les in logic.lastLesions] == [28, 8]
    assert "2 lesion(s)" in text and "trained on PET" in text  # the warning reaches the status label
    node = rt.scene.GetFirstNodeByName("pet panel lesions")
    assert len(segment_ids(node)) == 2


# --- training fidelity options (training/pet_box.py): optimizer "sgd", suv_zscore ------------------------------


def test_spec_validation_names_the_field(tmp_path, data_dir):
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.jobs.spec import spec_from_dict, validate

    ds = tmp_path / "ds"
    create_from_cases(ds, ["ibsi_STS_001_PET", "ibsi_STS_002_PET"], data_dir=data_dir)
    base = {"dataset": str(ds), "output": str(tmp_path / "out"), "method": "pet_box_dice", "device": "cpu"}
    assert spec_from_dict(base).optimizer == "adam" and spec_from_dict(base).options.suv_zscore is False
    validate(spec_from_dict({**base, "optimizer": "sgd", "pet_box_dice": {"suv_zscore": True}}))
    with pytest.raises(InputError, match=r"^optimizer: unknown optimizer 'rmsprop'"):
        validate(spec_from_dict({**base, "optimizer": "rmsprop"}))
    with pytest.raises(InputError, match=r"^suv_zscore: full_supervision has no fields of its own"):
        spec_from_dict({**base, "method": "full_supervision", "full_supervision": {"suv_zscore": True}})
    with pytest.raises(InputError, match=r"^suv_zscore: expected true or false"):
        spec_from_dict({**base, "pet_box_dice": {"suv_zscore": "yes"}})


def test_crop_zscore_and_augment_keep_the_crop_scaling():
    import torch
    from WeakAnnotateLib.data.dataset import crop_zscore, normalise_crop, normalise_intensity
    from WeakAnnotateLib.methods.pet_boxes.training import augment

    a = np.random.default_rng(0).gamma(2.0, 1.0, (8, 8, 8)).astype(np.float32) * 3
    a[4, 4, 4] = 60.0  # a hot voxel: clipped by the percentile scaling, kept by the z-score
    z = crop_zscore(a)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4
    assert np.argmax(z) == np.argmax(a) and z.max() > 10
    assert normalise_intensity(a).max() == 1.0 and np.array_equal(normalise_crop(a), normalise_intensity(a))
    assert np.array_equal(normalise_crop(a, "suv_zscore"), z)
    x = torch.from_numpy(z)[None, None] + 5.0  # not zero-mean: a window z-score would move it
    xa, _ = augment(x, torch.zeros_like(x), torch.Generator().manual_seed(0), window_zscore=False)
    assert abs(float(xa.mean()) - 5.0) < 0.1  # only flips and σ = 0.1 noise


def test_pet_box_sgd_suv_zscore_job(tmp_path, data_dir):
    import torch
    from test_pet_box_losses import PET_CASES, _run_job
    from WeakAnnotateLib.data.dataset import create_from_cases
    from WeakAnnotateLib.networks.prediction import load_model, predict_image

    ds = tmp_path / "ds"
    create_from_cases(ds, PET_CASES, data_dir=data_dir)
    rc, lines, out = _run_job(
        tmp_path, "sgd", ds, method="pet_box_dice", optimizer="sgd", learning_rate=1e-5, suv_zscore=True, epochs=1
    )
    assert rc == 0, lines[-1]
    info = json.loads((out / "model.json").read_text())
    assert (
        info["hyper_parameters"]["optimizer"] == "sgd"
        and info["hyper_parameters"]["pet_box_dice"]["suv_zscore"] is True
    )
    assert info["network"]["intensity"] == "suv_zscore" and "input_norm" not in info["network"]
    blob = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert blob["optimiser"]["param_groups"][0]["momentum"] == 0.9  # SGD, the paper's momentum
    model = load_model(out)
    assert model.config["intensity"] == "suv_zscore"
    from conftest import case_by_id_in

    image = read_image(case_by_id_in(data_dir, PET_CASES[1]).image)
    mask, prob = predict_image(model, image)
    assert mask.shape == image.geometry.shape and np.isfinite(prob).all()
