"""Standard terms on segments: chosen from the structure's name or by the user, kept by ``.seg.nrrd`` (read back
with slicerio, an independent reader, and with Slicer) and carried to DICOM SEG codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import slicerio
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.geometry import Geometry
from WeakAnnotateLib.scene.mrml_adapter import add_segmentation_node, segment_ids, set_segment_mask
from WeakAnnotateLib.scene.segmentation_io import (
    coded_segments,
    read_segmentation,
    segmentation_from_labelmap,
    write_segmentation,
)
from WeakAnnotateLib.scene.terminology import (
    DICOM_MASTER,
    TAG,
    codes_for_name,
    resolve_terminology,
    segment_terminology,
)

MORPH = "Morphologically Altered Structure"
ANATOMY = "Anatomical Structure"
# Every structure name in the data catalogue → (category, type, modifier) meanings; SNOMED CT codes for a few.
EXPECTED = {
    "spleen": (ANATOMY, "Spleen", None),
    "kidney_right": (ANATOMY, "Kidney", "Right"),
    "kidney_left": (ANATOMY, "Kidney", "Left"),
    "gallbladder": (ANATOMY, "Gallbladder", None),
    "liver": (ANATOMY, "Liver", None),
    "stomach": (ANATOMY, "Stomach", None),
    "pancreas": (ANATOMY, "Pancreas", None),
    "small_bowel": (ANATOMY, "Small Intestine", None),
    "duodenum": (ANATOMY, "Duodenum", None),
    "colon": (ANATOMY, "Colon", None),
    "aorta": (ANATOMY, "Aorta", None),
    "inferior_vena_cava": (ANATOMY, "Inferior vena cava", None),
    "portal_vein_and_splenic_vein": (ANATOMY, "Portal vein", None),
    "necrosis": (MORPH, "Necrosis", None),
    "edema": (MORPH, "Edema", None),
    "non-enhancing tumour": (MORPH, "Neoplasm", None),
    "enhancing tumour": (MORPH, "Neoplasm", None),
    "GTV_Mass (soft-tissue sarcoma)": (MORPH, "Neoplasm", None),
    "lesion ROI": (MORPH, "Mass", None),
    "spinal cord": (ANATOMY, "Spinal cord", None),
}
SNOMED = {"Liver": "10200004", "Neoplasm": "108369006", "Spinal cord": "2748008", "Kidney": "64033007"}


def _meanings(term) -> tuple[str, str, str | None]:
    c = term.codes
    return (c.category.meaning, c.type.meaning, c.modifier.meaning if c.modifier else None)


def test_every_catalogue_structure_gets_its_term(module_runtime, data_dir: Path) -> None:
    names = {n for case in json.loads((data_dir / "cases.json").read_text()) for n in case["labels"].values()}
    assert names == set(EXPECTED), "a structure of the catalogue has no expected term here"
    for name, expected in EXPECTED.items():
        term = codes_for_name(module_runtime, name)
        assert _meanings(term) == expected, name
        assert term.context == DICOM_MASTER
        if expected[1] in SNOMED:
            assert (term.codes.type.scheme, term.codes.type.value) == ("SCT", SNOMED[expected[1]])


def test_method_segment_names(module_runtime) -> None:
    """Names the methods give their segments: tumours are neoplasms; a name that names nothing is Tissue."""
    assert _meanings(codes_for_name(module_runtime, "tumour"))[1] == "Neoplasm"
    assert _meanings(codes_for_name(module_runtime, "tumour box corrected"))[1] == "Neoplasm"
    assert _meanings(codes_for_name(module_runtime, "lesion 3"))[1] == "Mass"
    assert _meanings(codes_for_name(module_runtime, "liver prediction"))[1] == "Liver"
    assert _meanings(codes_for_name(module_runtime, "extreme_net")) == ("Tissue", "Tissue", None)


def test_user_choice(module_runtime) -> None:
    assert _meanings(resolve_terminology(module_runtime, "Neoplasm")) == (MORPH, "Neoplasm", None)
    assert _meanings(resolve_terminology(module_runtime, "Kidney/Left")) == (ANATOMY, "Kidney", "Left")
    assert _meanings(resolve_terminology(module_runtime, "anatomical structure/spinal cord")) == (
        ANATOMY,
        "Spinal cord",
        None,
    )
    entry = resolve_terminology(module_runtime, "Kidney/Right").serialize()
    assert entry == (
        "Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~SCT^64033007^Kidney"
        "~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^"
    )
    assert resolve_terminology(module_runtime, entry).codes == resolve_terminology(module_runtime, "Kidney/Right").codes
    with pytest.raises(InputError, match="No terminology type 'Livr'.*Close: liver"):
        resolve_terminology(module_runtime, "Livr")


def _grid() -> Geometry:
    return Geometry.from_spacing_origin_direction((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), None, (6, 8, 10))


def test_segments_carry_terms_and_seg_nrrd_keeps_them(runtime, tmp_path: Path) -> None:
    """set_segment_mask tags every new segment; a user's choice wins; slicerio and Slicer read the tags back."""
    g = _grid()
    mask = np.zeros(g.shape, bool)
    mask[2:4, 2:5, 3:7] = True
    node = add_segmentation_node(runtime, "seg", g)
    set_segment_mask(runtime, node, mask, g, "liver")
    set_segment_mask(runtime, node, np.roll(mask, 2, axis=2), g, "tumour")
    set_segment_mask(runtime, node, np.roll(mask, 4, axis=1), g, "my structure", terminology="Spinal cord")
    set_segment_mask(runtime, node, np.roll(mask, 3, axis=0), g, "kidney_left")
    # Re-writing a segment's voxels keeps its term; an explicit choice replaces it.
    sid = set_segment_mask(runtime, node, mask, g, "liver")
    assert _meanings(segment_terminology(runtime, node, sid))[1] == "Liver"
    with pytest.raises(InputError, match="No terminology type"):
        set_segment_mask(runtime, node, mask, g, "new one", terminology="Not a term")
    assert len(segment_ids(node)) == 4, "a bad choice left a segment behind"

    path = write_segmentation(tmp_path / "seg.seg.nrrd", node)
    read = slicerio.read_segmentation(str(path), skip_voxels=True)
    got = {s["name"]: s["terminology"] for s in read["segments"]}
    assert got["liver"]["type"] == ["SCT", "10200004", "Liver"]
    assert got["liver"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    assert got["tumour"]["type"] == ["SCT", "108369006", "Neoplasm"]
    assert got["tumour"]["category"] == ["SCT", "49755003", MORPH]
    assert got["my structure"]["type"] == ["SCT", "2748008", "Spinal cord"]
    assert got["kidney_left"]["type"] == ["SCT", "64033007", "Kidney"]
    assert got["kidney_left"]["typeModifier"] == ["SCT", "7771000", "Left"]
    assert all(t["contextName"] == DICOM_MASTER for t in got.values())

    again = read_segmentation(runtime, path)
    codes = {s.name: s.codes for s in coded_segments(runtime, again, g)}
    assert codes["kidney_left"].modifier.meaning == "Left" and codes["tumour"].type.value == "108369006"
    segments = [again.GetSegmentation().GetSegment(s) for s in segment_ids(again)]
    tags = {s.GetName(): s.GetTerminology() for s in segments}  # vtkSegment's accessor of the TerminologyEntry tag
    assert tags["my structure"].split("~")[2] == "SCT^2748008^Spinal cord"
    assert segments[0].GetTerminologyEntryTagName() == TAG


def test_label_map_segments_and_node_default(runtime) -> None:
    """Segments of a label map get the terms of their names; a node's default term covers unnamed structures."""
    g = _grid()
    labels = np.zeros(g.shape, np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[3:5, 4:6, 5:8] = 2
    node = segmentation_from_labelmap(runtime, labels, g, names={1: "spleen", 2: "enhancing tumour"})
    terms = [_meanings(segment_terminology(runtime, node, s))[1] for s in segment_ids(node)]
    assert terms == ["Spleen", "Neoplasm"]

    node = add_segmentation_node(runtime, "lesions", g, terminology="Neoplasm")
    sid = set_segment_mask(runtime, node, labels == 1, g, "object 1")
    assert _meanings(segment_terminology(runtime, node, sid)) == (MORPH, "Neoplasm", None)
    sid = set_segment_mask(runtime, node, labels == 2, g, "liver")
    assert _meanings(segment_terminology(runtime, node, sid))[1] == "Liver"
