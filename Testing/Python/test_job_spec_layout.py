"""Job specs: the common fields plus one section per method; the previous flat layout (and models trained with
it) still load; mixing the layouts or naming another method's section is an error that names the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.data.dataset import read_extreme_points
from WeakAnnotateLib.files.image_io import read_image
from WeakAnnotateLib.jobs.spec import job_document, spec_from_dict, validate
from WeakAnnotateLib.methods import registry
from WeakAnnotateLib.networks.prediction import load_model, predict_image

PREVIOUS = Path(__file__).resolve().parent / "data" / "previous_layout"


def test_previous_flat_job_json_loads_into_its_section():
    doc = json.loads((PREVIOUS / "job.json").read_text(encoding="utf-8"))
    assert "mdice_alpha" in doc and "weak_net_lambda" in doc  # flat: every method's fields
    spec = spec_from_dict(doc)
    assert spec.method == "extreme_point_network"
    assert (spec.options.sigma_mm, spec.options.rounds, spec.options.random_walker) == (2.5, 1, False)
    out = spec.to_json()
    assert out["extreme_point_network"]["sigma_mm"] == 2.5
    assert "mdice_alpha" not in out and "sigma_mm" not in out  # other methods' fields gone, own ones in the section
    assert spec_from_dict(out).to_json() == out  # the new layout round-trips


def test_previous_model_loads_and_predicts_as_before(case_by_id):
    info = json.loads((PREVIOUS / "model.json").read_text(encoding="utf-8"))
    assert spec_from_dict(info["hyper_parameters"]).options.sigma_mm == 2.5
    model = load_model(PREVIOUS)
    image = read_image(case_by_id("ibsi_STS_002_PET").image)
    points = read_extreme_points(PREVIOUS / "ibsi_STS_002_PET.extreme_points.mrk.json", image.geometry)
    mask, _ = predict_image(model, image, points)
    mask = np.asarray(mask, dtype=np.uint8)
    expected = json.loads((PREVIOUS / "expected_prediction.json").read_text(encoding="utf-8"))
    assert int(mask.sum()) == expected["voxels"]
    assert hashlib.sha256(mask.tobytes()).hexdigest() == expected["sha256"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"method": "weak_net", "weak_net": {"weak_net_lambda": 0.0}, "weak_net_threshold": 0.4}, "belongs in the"),
        ({"method": "weak_net", "box_prior": {"tightness": "2d"}}, "box_prior: a section for method"),
        ({"method": "weak_net", "weak_net": {"lambda": 1.0}}, "lambda: unknown weak_net section field"),
        ({"method": "weak_net", "colour": "red"}, "colour: unknown job spec field"),
        ({"method": "weak_net", "weak_net": [1]}, "weak_net: expected an object"),
        ({"method": "full_supervision", "full_supervision": {"x": 1}}, "x: full_supervision has no fields"),
        ({"method": "nope"}, "method: unknown method 'nope'"),
        ({"method": "weak_net", "weak_net": {"weak_net_threshold": "high"}}, "weak_net_threshold: expected a number"),
    ],
)
def test_bad_layouts_name_the_field(doc, message):
    with pytest.raises(InputError, match=message):
        spec_from_dict({"dataset": "ds", "output": "out", **doc})


def test_every_training_method_gets_a_valid_spec_from_its_defaults(tmp_path):
    for info in registry.training_methods():
        doc = job_document(info.name, {"dataset": "ds", "output": "out"})
        if info.standalone:
            assert doc["method"] == info.name and "dataset" in doc
            continue
        spec = spec_from_dict(doc)
        assert spec.method == info.name
        defaults = {f.name: f.default for f in info.fields()}
        assert (spec.options is None) == (not defaults)
        if spec.options is not None:
            assert {k: getattr(spec.options, k) for k in defaults} == defaults
        section = {f.name: f.default for f in info.fields()}
        assert spec_from_dict(job_document(info.name, {"dataset": "ds", "output": "out"}, section)).to_json() == (
            spec.to_json()
        )


def test_section_values_are_checked_before_the_dataset(tmp_path):
    spec = spec_from_dict(
        {"dataset": str(tmp_path / "none"), "output": "o", "method": "box_prior", "box_prior": {"tightness": "4d"}}
    )
    with pytest.raises(InputError, match="tightness: use one of 2d, 3d, 2d\\+3d"):
        validate(spec)
    spec = spec_from_dict({"dataset": str(tmp_path / "none"), "output": "o", "method": "pet_box_mdice_ms"})
    with pytest.raises(InputError, match="init_model: pet_box_mdice_ms starts from a finished pet_box_dice job"):
        validate(spec)
