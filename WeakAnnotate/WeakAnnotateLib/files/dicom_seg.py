"""DICOM SEG ⇄ binary segments on the grid of the DICOM series they were drawn on, through highdicom.

A DICOM Segmentation object refers to its source images one by one (SOP Instance UIDs, frame by frame), so it
is written only for an image that came from a DICOM series: :func:`read_dicom_series` reads the series'
headers in the order of the voxel array's slices (SimpleITK's order, the one ``read_image`` gives), and
:func:`write_dicom_seg` writes one frame per slice that holds the segment. Reading back
(:func:`read_dicom_seg`) with the series open puts every frame on the series' own slices by SOP Instance UID;
a SEG whose referenced images are not in that series is refused.

Series without UIDs. Some anonymisers blank the SOP Class / SOP Instance UID (and the Study / Series Instance
UID) in the data set but keep the file meta header, whose Media Storage SOP Class / Instance UID is by the
standard (PS3.10) the same instance's. The SOP UIDs are then taken from the file meta, in memory (the source
files are never changed). A blank Study / Series Instance UID cannot be recovered: a stand-in derived from the
series' SOP Instance UIDs is used (the same for every export of that series) and reported in
:attr:`DicomSeries.notes`; images are matched by their SOP Instance UIDs, never by that stand-in. A file with
no SOP Instance UID anywhere is refused.

highdicom and pydicom are imported by the functions that use them: the scene layer (every face) imports
:class:`Code` and :class:`SegmentCodes` from here for the terminology and must not pay ~0.5 s for them.

Codes are (value, coding scheme, meaning) triples (:class:`Code`); each segment carries its category, type and
optional type modifier (:class:`SegmentCodes`), the same triples Slicer keeps in a segment's terminology entry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..core.atomic_files import atomic_output, full_suffix
from ..core.errors import InputError
from ..core.geometry import Geometry
from .image_io import geometry_of, is_dicom_file, read_sitk

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
# Algorithm family for semi-automatic / automatic segments (DCM 113037 "Image Processing", CID 7162).
ALGORITHM_FAMILY = ("113037", "DCM", "Image Processing")


@dataclass(frozen=True)
class Code:
    """A coded concept: Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str

    def coded_concept(self) -> Any:
        """As highdicom's ``CodedConcept``."""
        import highdicom as hd

        return hd.sr.CodedConcept(self.value, self.scheme, self.meaning)

    @classmethod
    def of_item(cls, item: Any) -> Code:
        """From a code sequence item (Code Value may also be a Long / URN Code Value)."""
        value = getattr(item, "CodeValue", None) or getattr(item, "LongCodeValue", None) or item.URNCodeValue
        return cls(str(value), str(item.CodingSchemeDesignator), str(item.CodeMeaning))

    def __str__(self) -> str:
        return f"{self.meaning} ({self.scheme} {self.value})"


@dataclass(frozen=True)
class SegmentCodes:
    """What a segment shows: category, type and an optional type modifier (e.g. Anatomical Structure, Kidney, Left)."""

    category: Code
    type: Code
    modifier: Code | None = None

    def describe(self) -> str:
        side = f", {self.modifier.meaning}" if self.modifier else ""
        return f"{self.category.meaning} / {self.type.meaning}{side}"


@dataclass
class CodedSegment:
    """One binary segment on a grid: its name, colour (RGB 0..1), codes and voxels (bool array [k, j, i])."""

    name: str
    mask: np.ndarray
    color: tuple[float, float, float]
    codes: SegmentCodes


@dataclass
class DicomSeries:
    """A single-frame DICOM series as the voxel array sees it: one header per slice k, in array order."""

    folder: Path
    files: list[Path]
    datasets: list[Any]  # pydicom Datasets: headers only, UIDs completed in memory (see the module docstring)
    geometry: Geometry
    notes: list[str] = field(default_factory=list)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    @property
    def series_instance_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(getattr(self.datasets[0], "FrameOfReferenceUID", "") or "")


def is_dicom_seg(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM Segmentation object (by its SOP Class, read from the header only)."""
    import pydicom

    p = Path(path)
    if not p.is_file() or not (is_dicom_file(p) or full_suffix(p) == ".dcm"):
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # pydicom raises many types for files that are not DICOM
        return False
    meta = getattr(ds, "file_meta", None)
    sop_class = str(getattr(ds, "SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", "") or "")
    return sop_class == SEGMENTATION_STORAGE or str(getattr(ds, "Modality", "")) == "SEG"


def _series_files(path: Path, series_uid: str | None) -> list[Path]:
    folder = path if path.is_dir() else path.parent
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(str(folder))
    uid = series_uid if series_uid is not None else uids[0]
    return [Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), uid)]


def _not_dicom(path: Path) -> InputError:
    return InputError(
        f"{path} is not a DICOM series: a DICOM SEG refers to the DICOM images it was drawn on, so it can only be "
        "written for an image loaded from a DICOM series (a folder of .dcm files). For a NIfTI/NRRD/MHA image "
        "export a .seg.nrrd or a label map instead (--format seg-nrrd / labelmap)."
    )


def read_dicom_series(path: str | Path, *, series_uid: str | None = None) -> DicomSeries:
    """The headers and grid of the DICOM series in ``path`` (a folder, or one of its files)."""
    import pydicom
    from pydicom.uid import generate_uid

    path = Path(path)
    if not path.exists():
        raise InputError(f"Image {path} does not exist.")
    if path.is_file() and not (is_dicom_file(path) or full_suffix(path) == ".dcm"):
        raise _not_dicom(path)
    if path.is_dir() and not sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)):
        raise _not_dicom(path)
    image = read_sitk(path, series_uid=series_uid, what="DICOM series")
    files = _series_files(path, series_uid)
    geometry = geometry_of(image)
    if len(files) != geometry.shape[0]:
        raise InputError(
            f"{path}: {len(files)} files for {geometry.shape[0]} slices; only single-frame series (one file per "
            "slice) can be the source of a DICOM SEG here."
        )
    datasets, notes = [], []
    filled_sop = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:  # pydicom raises many types for a corrupt file
            raise InputError(f"Cannot read DICOM header of {f} ({e}).") from None
        meta = getattr(ds, "file_meta", None)
        for attr, meta_attr in (
            ("SOPClassUID", "MediaStorageSOPClassUID"),
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
        ):
            if not str(getattr(ds, attr, "") or ""):
                value = str(getattr(meta, meta_attr, "") or "")
                if not value:
                    raise InputError(
                        f"{f} has no {attr} in its data set nor in its file meta header: a DICOM SEG cannot refer "
                        "to an image without one."
                    )
                setattr(ds, attr, value)
                filled_sop += attr == "SOPInstanceUID"
        datasets.append(ds)
    if filled_sop:
        notes.append(
            f"{filled_sop} of {len(files)} images had an empty SOP Class / SOP Instance UID in the data set; "
            "they were taken from each file's meta header (Media Storage SOP Class / Instance UID)."
        )
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    if len(set(sops)) != len(sops):
        raise InputError(f"{path}: several images share one SOP Instance UID; the series cannot be referenced.")
    for attr, what in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series")):
        values = {str(getattr(ds, attr, "") or "") for ds in datasets}
        if values == {""}:
            stand_in = generate_uid(entropy_srcs=[f"weakannotate {what}", *sops])
            for ds in datasets:
                setattr(ds, attr, stand_in)
            notes.append(
                f"The series has no {attr}; the SEG refers to the stand-in {stand_in} (derived from the images' "
                "SOP Instance UIDs) and to each image by its SOP Instance UID."
            )
        elif len(values) != 1 or "" in values:
            raise InputError(f"{path}: the images disagree on their {attr}; they are not one series.")
    return DicomSeries(path if path.is_dir() else path.parent, files, datasets, geometry, notes)


def _segment_description(number: int, segment: CodedSegment, algorithm_type: str) -> Any:
    import highdicom as hd

    automatic = algorithm_type != "MANUAL"
    rgb = np.clip(np.rint(np.asarray(segment.color, dtype=float) * 255), 0, 255).astype(int).tolist()
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.name,
        segmented_property_category=segment.codes.category.coded_concept(),
        segmented_property_type=segment.codes.type.coded_concept(),
        algorithm_type=algorithm_type,
        algorithm_identification=(
            hd.AlgorithmIdentificationSequence(
                name="WeakAnnotate", version=_version(), family=Code(*ALGORITHM_FAMILY).coded_concept()
            )
            if automatic
            else None
        ),
        display_color=hd.color.CIELabColor.from_rgb(*rgb),
    )
    if segment.codes.modifier is not None:
        # highdicom's SegmentDescription has no argument for it; the modifier lives inside the type's item.
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            segment.codes.modifier.coded_concept()
        ]
    return description


def _version() -> str:
    try:
        return version("weakannotate")
    except PackageNotFoundError:  # not installed as a package (desktop Slicer loads the module folder)
        return "0"


def write_dicom_seg(
    path: str | Path,
    segments: list[CodedSegment],
    series: DicomSeries,
    *,
    series_description: str = "WeakAnnotate segmentation",
    algorithm_type: str = "SEMIAUTOMATIC",
) -> Path:
    """A binary DICOM SEG of ``segments`` (masks on ``series.geometry``); the file appears only once complete."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    path = Path(path)
    algorithm_type = algorithm_type.upper()
    if algorithm_type not in ALGORITHM_TYPES:
        raise InputError(f"Algorithm type {algorithm_type!r}: use one of {', '.join(ALGORITHM_TYPES).lower()}.")
    if not segments:
        raise InputError("The segmentation has no segments to write.")
    for s in segments:
        if s.mask.shape != series.geometry.shape:
            raise InputError(
                f"Segment {s.name!r} ({s.mask.shape}) is not on the DICOM series' grid {series.geometry.shape}."
            )
        if not s.mask.any():
            raise InputError(f"Segment {s.name!r} is empty on the DICOM series' grid: nothing to write for it.")
    # highdicom pairs pixel_array[k] with source_images[k]: the headers are in the array's slice order.
    pixels = np.stack([s.mask.astype(np.uint8) for s in segments], axis=-1)
    descriptions = [_segment_description(n, s, algorithm_type) for n, s in enumerate(segments, start=1)]
    first = series.datasets[0]
    try:
        seg = hd.seg.Segmentation(
            source_images=[copy.copy(ds) for ds in series.datasets],
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=int(getattr(first, "SeriesNumber", None) or 0) + 1000,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="WeakAnnotate",
            manufacturer_model_name="WeakAnnotate",
            software_versions=_version(),
            device_serial_number="0",
            series_description=series_description[:64],
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise InputError(f"highdicom cannot build a DICOM SEG from {series.folder}: {e}") from None
    with atomic_output(path) as tmp:
        seg.save_as(tmp)
    return path


def _rgb_of(item: Any) -> tuple[float, float, float] | None:
    import highdicom as hd

    value = getattr(item, "RecommendedDisplayCIELabValue", None)
    if value is None:
        return None
    r, g, b = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in value)).to_rgb()
    return (r / 255.0, g / 255.0, b / 255.0)


def _codes_of(item: Any) -> SegmentCodes:
    type_item = item.SegmentedPropertyTypeCodeSequence[0]
    modifiers = getattr(type_item, "SegmentedPropertyTypeModifierCodeSequence", None)
    return SegmentCodes(
        Code.of_item(item.SegmentedPropertyCategoryCodeSequence[0]),
        Code.of_item(type_item),
        Code.of_item(modifiers[0]) if modifiers else None,
    )


def referenced_sop_instance_uids(seg: Any) -> set[str]:
    """The SOP Instance UIDs of the images a SEG refers to (Referenced Series Sequence)."""
    out = set()
    for series in getattr(seg, "ReferencedSeriesSequence", []) or []:
        for item in getattr(series, "ReferencedInstanceSequence", []) or []:
            out.add(str(item.ReferencedSOPInstanceUID))
    return out


def _check_references(path: Path, seg: Any, series: DicomSeries) -> None:
    referenced = referenced_sop_instance_uids(seg)
    ours = set(series.sop_instance_uids)
    seg_series = ", ".join(str(s.SeriesInstanceUID) for s in getattr(seg, "ReferencedSeriesSequence", []) or [])
    if not referenced:
        raise InputError(f"DICOM SEG {path} lists no referenced images; it cannot be placed on {series.folder}.")
    if not referenced <= ours:
        missing = len(referenced - ours)
        raise InputError(
            f"DICOM SEG {path} was drawn on another series (series {seg_series or 'unknown'}): {missing} of the "
            f"{len(referenced)} images it refers to are not in the open series {series.folder} "
            f"({series.series_instance_uid}). Open the series it refers to."
        )
    seg_for = str(getattr(seg, "FrameOfReferenceUID", "") or "")
    if seg_for and series.frame_of_reference_uid and seg_for != series.frame_of_reference_uid:
        raise InputError(
            f"DICOM SEG {path} is in frame of reference {seg_for}, the open series in {series.frame_of_reference_uid}."
        )


def _geometry_of_volume(volume: Any) -> Geometry:
    """Our IJK→RAS of a highdicom Volume (array [slice, row, column], affine to LPS millimetres)."""
    affine = np.asarray(volume.affine, dtype=float)
    # (i, j, k) = (column, row, slice): reorder the affine's index columns, then LPS → RAS.
    m = affine[:, [2, 1, 0, 3]]
    m = np.diag([-1.0, -1.0, 1.0, 1.0]) @ m
    return Geometry(m, tuple(int(s) for s in volume.spatial_shape))


def read_dicom_seg(path: str | Path, series: DicomSeries | None = None) -> tuple[list[CodedSegment], Geometry]:
    """The segments of a DICOM SEG: on the open ``series`` (checked to be the one it refers to), else on the
    SEG's own grid (the extent of its frames). Fractional segments are thresholded at one half."""
    import highdicom as hd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"DICOM SEG {path} does not exist.")
    if not is_dicom_seg(path):
        raise InputError(f"{path} is not a DICOM Segmentation object (SOP Class {SEGMENTATION_STORAGE}).")
    try:
        seg = hd.seg.segread(str(path))
    except Exception as e:  # highdicom/pydicom raise many types for a malformed object
        raise InputError(f"Cannot read DICOM SEG {path}: {e}") from None
    numbers = list(seg.segment_numbers)
    if not numbers:
        raise InputError(f"DICOM SEG {path} has no segments.")
    try:
        if series is not None:
            _check_references(path, seg, series)
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=series.sop_instance_uids,
                segment_numbers=numbers,
                assert_missing_frames_are_empty=True,
            )
            geometry = series.geometry
            masks = [pixels[..., n] > 0.5 for n in range(len(numbers))]
        else:
            volume = seg.get_volume(segment_numbers=numbers)
            geometry = _geometry_of_volume(volume)
            array = np.asarray(volume.array)
            masks = [array[..., n] > 0.5 for n in range(len(numbers))]
    except InputError:
        raise
    except (ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise InputError(f"Cannot place the frames of DICOM SEG {path} on a grid: {e}") from None
    items = {int(item.SegmentNumber): item for item in seg.SegmentSequence}
    segments = []
    for n, number in enumerate(numbers):
        item = items[number]
        rgb = _rgb_of(item) or (0.5, 0.5, 0.5)
        name = str(getattr(item, "SegmentLabel", "") or f"segment {number}")
        segments.append(CodedSegment(name, np.ascontiguousarray(masks[n]), rgb, _codes_of(item)))
    return segments, geometry
