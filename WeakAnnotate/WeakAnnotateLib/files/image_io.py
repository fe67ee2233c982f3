"""Reading and writing 3D images with exact geometry (NIfTI, NRRD, MHA, DICOM series) through SimpleITK.

Why SimpleITK and not Slicer's archetype reader: Slicer's reader re-orders a left-handed grid (it reversed
the slice axis of ``sct/t2`` together with its matrix), so the voxel grid it gives differs from the file's
although every voxel lands at the same RAS position. Reading with SimpleITK keeps the file's own grid, so a
mask computed on a node is written back on exactly the image's grid. ``Testing/Python/test_geometry.py``
checks both readers agree in physical space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..core.atomic_files import atomic_output, full_suffix
from ..core.errors import InputError
from ..core.geometry import Geometry

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass
class Image:
    """A 3D scalar image: array indexed [k, j, i] and its geometry."""

    array: np.ndarray
    geometry: Geometry
    name: str = "image"

    def __post_init__(self) -> None:
        if self.array.shape != self.geometry.shape:
            raise InputError(f"Array shape {self.array.shape} does not match geometry {self.geometry.shape}.")


def image_name(path: str | Path) -> str:
    p = Path(path)
    suffix = full_suffix(p)
    return p.name[: -len(suffix)] if suffix and p.is_file() else p.name


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(str(folder))
    if not uids:
        raise InputError(f"No DICOM series found in {folder}. Point to a folder of .dcm files of one series.")
    if series_uid is None:
        if len(uids) > 1:
            raise InputError(
                f"{folder} holds {len(uids)} DICOM series ({', '.join(uids)}); choose one with --series-uid."
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputError(f"DICOM series {series_uid} is not in {folder}; it holds {', '.join(uids)}.")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader.SetFileNames(files)
    return reader.Execute()


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry "DICM" after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def check_nifti_complete(path: Path) -> None:
    """ITK reads a truncated NIfTI without complaint (zero-filling the rest); check the data is all there."""
    import zlib

    import nibabel

    try:
        header = nibabel.load(str(path)).header
    except Exception as e:  # nibabel raises many types for a broken header
        raise InputError(f"Cannot read image {path}: the NIfTI header is corrupt ({e}).") from None
    need = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    if full_suffix(path) == ".nii":
        have = path.stat().st_size
    else:
        have, inflate = 0, zlib.decompressobj(wbits=31)
        try:
            with open(path, "rb") as f:
                while have < need and (chunk := f.read(1 << 20)):
                    have += len(inflate.decompress(chunk))
        except zlib.error as e:
            raise InputError(f"Cannot read image {path}: the file is corrupt ({e}).") from None
    if have < need:
        raise InputError(
            f"Cannot read image {path}: the file is corrupt or truncated ({have} of {need} bytes of data)."
        )


def read_sitk(path: str | Path, *, series_uid: str | None = None, what: str = "image") -> sitk.Image:
    """Read a file (or a DICOM folder) and check it is a 3D scalar image."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what.capitalize()} file {path} does not exist.")
    try:
        if path.is_dir():
            image = _read_dicom_series(path, series_uid)
        elif full_suffix(path) == ".dcm" or is_dicom_file(path):
            image = _read_dicom_series(path.parent, series_uid)
        else:
            if full_suffix(path) in (".nii", ".nii.gz"):
                check_nifti_complete(path)
            image = sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise InputError(
            f"Cannot read {what} {path}: not a readable NIfTI/NRRD/MHA/DICOM file or it is corrupt ({first})."
        ) from None
    dim = image.GetDimension()
    size = image.GetSize()
    if dim == 4 and size[3] == 1:
        image = image[:, :, :, 0]
        dim, size = 3, image.GetSize()
    if dim == 2 or (dim == 3 and size[2] == 1):
        raise InputError(f"{what.capitalize()} {path} is 2D ({'x'.join(map(str, size))}); a 3D volume is needed.")
    if dim != 3:
        raise InputError(
            f"{what.capitalize()} {path} is {dim}D ({'x'.join(map(str, size))}); a single 3D volume is needed "
            "(split a 4D series into 3D volumes first)."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{what.capitalize()} {path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a scalar (grey-level) volume is needed."
        )
    return image


def geometry_of(image: sitk.Image) -> Geometry:
    return Geometry.from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), image.GetSize())


def header_spacing(path: Path) -> list[float] | None:
    """The voxel spacing a file's header states, before ITK reads it (ITK turns a zero spacing into 1 mm
    without a word); None for formats read otherwise (DICOM) or a header without one."""
    suffix = full_suffix(path)
    try:
        if suffix in (".nii", ".nii.gz"):
            import nibabel

            return [float(v) for v in nibabel.load(str(path)).header["pixdim"][1:4]]
        if suffix in (".nrrd", ".nhdr", ".seg.nrrd", ".mha", ".mhd"):
            with open(path, "rb") as f:
                head = f.read(65536).split(b"\n\n", 1)[0].decode("latin-1")
            separator = "=" if suffix in (".mha", ".mhd") else ":"
            for line in head.splitlines():
                key, _, value = line.partition(separator)
                key = key.strip().lower()
                if key == "spacings":
                    return [float(v) for v in value.split()[:3]]
                if key == "elementspacing":
                    return [float(v) for v in value.split()[:3]]
                if key == "space directions":
                    vectors = [v for v in value.replace(" ", "").split(")") if v.strip("(")]
                    out = []
                    for v in vectors:
                        if v.strip("(").lower() == "none":
                            continue
                        comps = [float(c) for c in v.strip("(").split(",")]
                        out.append(float(np.linalg.norm(comps)))
                    return out[:3]
    except Exception:  # noqa: BLE001 - an unreadable header: the reader below says what is wrong with the file
        return None
    return None


def check_spacing(spacing: Any, path: str | Path, what: str = "image") -> None:
    values = [float(v) for v in spacing]
    bad = [v for v in values if not np.isfinite(v) or v <= 0]
    if bad:
        raise InputError(
            f"{what.capitalize()} {path} has a voxel spacing of {' x '.join(f'{v:g}' for v in values)} mm; every "
            "spacing must be a positive number. Fix the file's header (e.g. in Slicer: Volumes › Volume "
            "information) and try again."
        )


def check_finite(array: np.ndarray, path: str | Path, what: str = "image") -> None:
    """NaN / Inf voxels wreck every method silently: refused with their count and where the first one is."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    n = int(np.count_nonzero(bad))
    if n:
        first = np.argwhere(bad)[0].tolist()
        kinds = "NaN" if np.isnan(array[bad]).all() else "NaN/Inf"
        raise InputError(
            f"{what.capitalize()} {path} has {n} {kinds} voxel(s) (the first at array index [k, j, i] = {first}); "
            "replace them with a number (e.g. the image's minimum) and try again."
        )


def read_image(path: str | Path, *, series_uid: str | None = None, what: str = "image") -> Image:
    """Read a 3D scalar image as (array [k, j, i], geometry); NaN/Inf voxels and a zero, negative or
    non-finite spacing (in the header or after reading) are refused."""
    path = Path(path)
    if path.is_file():
        stated = header_spacing(path)
        if stated is not None:
            check_spacing(stated, path, what)
    image = read_sitk(path, series_uid=series_uid, what=what)
    check_spacing(image.GetSpacing(), path, what)
    array = sitk.GetArrayFromImage(image)
    check_finite(array, path, what)
    return Image(array, geometry_of(image), image_name(path))


def read_mask(
    path: str | Path, *, label: int | None = None, grid: Geometry | None = None, what: str = "mask"
) -> np.ndarray:
    """Read a label map as a boolean mask (nonzero voxels, or ``== label``), optionally checking its grid."""
    img = read_image(path, what=what)
    if grid is not None and not img.geometry.same_grid(grid):
        raise InputError(
            f"The {what} {path} is on a different grid ({img.geometry.describe()}) than the image "
            f"({grid.describe()}); resample it onto the image first."
        )
    return select_label(img.array, label, what=what, path=path)


def select_label(values: np.ndarray, label: int | None, *, what: str = "mask", path: str | Path = "") -> np.ndarray:
    """Foreground of a label map: every nonzero voxel, or the voxels equal to ``label``."""
    if label is None:
        return values != 0
    selected = values == label
    if not selected.any():
        present = np.unique(values)
        raise InputError(
            f"Label {label} does not occur in the {what} {path}; it holds {present[present != 0].tolist()}."
        )
    return selected


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing, origin, direction = geometry.lps()
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def write_image(path: str | Path, array: np.ndarray, geometry: Geometry) -> Path:
    """Write a 3D array on ``geometry``; the file appears only once completely written."""
    path = Path(path)
    if full_suffix(path) not in IMAGE_SUFFIXES or full_suffix(path) == ".dcm":
        raise InputError(f"Cannot write {path}: use .nii.gz, .nii, .nrrd or .mha.")
    if array.shape != geometry.shape:
        raise InputError(f"Array shape {array.shape} does not match the grid {geometry.shape}.")

    def same_size(tmp: Path) -> None:  # a short write of a compressed NRRD/MHA is found only by reading it
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp))
        reader.ReadImageInformation()
        if tuple(reader.GetSize()) != tuple(int(s) for s in array.shape[::-1]):
            raise ValueError(f"the written file holds a {reader.GetSize()} image, not {array.shape[::-1]}")
        if full_suffix(tmp) not in (".nii", ".nii.gz"):
            reader.Execute()

    with atomic_output(path, check=same_size) as tmp:
        sitk.WriteImage(to_sitk(array, geometry), str(tmp), useCompression=True)
    return path
