"""Datasets of cases for training: a folder with a manifest, batch pseudo-labelling, and streamed crops.

Why a folder + ``dataset.json`` manifest: the hub panel, the CLI and the training worker (another process,
maybe another machine) must agree on which images, annotations, reference masks, pseudo-labels and
predictions belong together, and on the annotation effort (clicks, seconds) that each case cost. Paths in
the manifest are relative to the folder when they lie inside it, absolute otherwise (the shared data is
never copied).

Why crops cached one file per case (:class:`CropCache`) and a map-style dataset that opens one file per item
(:class:`CropDataset`): loading a whole dataset into RAM is the out-of-memory crash users report with other
tools. A crop is the object's box (from the six extreme points, else the box annotation, else the reference
mask) plus a padding in mm, resampled to an isotropic grid; it is computed once per job from the original
files and then read back per item.

No torch import at module level: listing a dataset or pseudo-labelling it must not pay for torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_folder, atomic_output
from ..core.errors import InputError
from ..core.geometry import Geometry
from ..evaluation.simulate import box_index_bounds, extreme_points
from ..files.cases import find_case
from ..files.image_io import Image, read_image, read_mask, select_label

MANIFEST = "dataset.json"


# --- manifest -----------------------------------------------------------------------------------------


@dataclass
class CaseEntry:
    """One case of a dataset: paths are as stored in the manifest (relative to the folder or absolute)."""

    id: str
    image: str
    annotations: dict[str, str] = field(default_factory=dict)  # kind ("extreme_points", "box") -> .mrk.json
    reference: str | None = None
    reference_label: int | None = None  # None: every nonzero voxel of the reference is the object
    pseudo_label: str | None = None
    prediction: str | None = None
    effort: dict[str, float] = field(default_factory=lambda: {"clicks": 0, "seconds": 0.0})
    modality: str = ""

    def states(self, root: Path) -> list[str]:
        """What exists for this case: "annotated", "pseudo-labelled", "predicted", "reference"."""
        out = []
        if any(_resolve(root, p).is_file() for p in self.annotations.values()):
            out.append("annotated")
        if self.pseudo_label and _resolve(root, self.pseudo_label).is_file():
            out.append("pseudo-labelled")
        if self.prediction and _resolve(root, self.prediction).is_file():
            out.append("predicted")
        if self.reference:
            out.append("reference")
        return out


def _resolve(root: Path, path: str | None) -> Path:
    p = Path(path or "")
    return p if p.is_absolute() else root / p


def _stored(root: Path, path: str | Path) -> str:
    """Relative to ``root`` when inside it (the folder can move), absolute otherwise."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(root.resolve()))
    except ValueError:
        return str(p)


class DatasetFolder:
    """A dataset folder: ``dataset.json`` plus annotations, pseudo-labels and predictions beside it."""

    def __init__(self, root: str | Path, name: str = "", cases: list[CaseEntry] | None = None) -> None:
        self.root = Path(root)
        self.name = name or self.root.name
        self.cases: list[CaseEntry] = list(cases or [])

    # -- I/O --
    @classmethod
    def load(cls, root: str | Path, *, field_name: str = "dataset") -> DatasetFolder:
        """Read the manifest; every problem names the field and the case it is in."""
        root = Path(root)
        manifest = root / MANIFEST if root.is_dir() or not root.name.endswith(".json") else root
        if root.is_file() and root.name.endswith(".json"):
            root = root.parent
        if not manifest.is_file():
            raise InputError(
                f"{field_name}: {root} is not a dataset folder (no {MANIFEST}); create one with "
                "'weakannotate dataset create'."
            )
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{field_name}: {manifest} is not valid JSON ({e}).") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
            raise InputError(f"{field_name}: {manifest} must be an object with a 'cases' list.")
        cases = []
        for n, c in enumerate(doc["cases"]):
            if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("image"), str):
                raise InputError(f"{field_name}: case {n + 1} in {manifest} needs a string 'id' and 'image'.")
            known = {k: c[k] for k in CaseEntry.__dataclass_fields__ if k in c}
            entry = CaseEntry(**known)
            if not isinstance(entry.annotations, dict):
                raise InputError(f"{field_name}: case {entry.id!r}: 'annotations' must be an object kind -> file.")
            cases.append(entry)
        ids = [c.id for c in cases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InputError(f"{field_name}: case ids must be unique; repeated: {', '.join(dupes)}.")
        return cls(root, str(doc.get("name", root.name)), cases)

    def save(self) -> Path:
        """Write the manifest atomically (a reader never sees half of it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {"version": 1, "name": self.name, "cases": [asdict(c) for c in self.cases]}
        path = self.root / MANIFEST
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    # -- access --
    def path(self, stored: str | None) -> Path | None:
        return None if not stored else _resolve(self.root, stored)

    def stored(self, path: str | Path) -> str:
        return _stored(self.root, path)

    def case(self, case_id: str) -> CaseEntry:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise InputError(f"No case {case_id!r} in dataset {self.root}.")

    def add_case(self, entry: CaseEntry) -> CaseEntry:
        if any(c.id == entry.id for c in self.cases):
            raise InputError(f"Dataset {self.root} already has a case {entry.id!r}.")
        self.cases.append(entry)
        return entry

    def summary(self) -> list[dict[str, Any]]:
        """One row per case for a table: id, states, clicks, seconds."""
        return [
            {
                "id": c.id,
                "modality": c.modality,
                "state": ", ".join(c.states(self.root)) or "new",
                "clicks": int(c.effort.get("clicks", 0) or 0),
                "seconds": float(c.effort.get("seconds", 0.0) or 0.0),
            }
            for c in self.cases
        ]


# --- crop regions -------------------------------------------------------------------------------------


def read_extreme_points(path: str | Path, geometry: Geometry) -> np.ndarray:
    """RAS (6, 3) of an extreme-point file, checked against the image (Slicer's markups reader)."""
    # why here: reading or listing a dataset (the registry, job specs, panels) must not load the Slicer core
    from ..scene.markups_io import read_points

    points, _ = read_points(path, count=6, geometry=geometry, what="extreme points")
    return points


def object_bounds(
    dataset: DatasetFolder, entry: CaseEntry, image: Image
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Inclusive (k, j, i) bounds of the object and its extreme points (RAS) if annotated.

    The box comes from the six extreme points, else the box annotation, else the reference mask: the same
    crop a user's clicks would give at prediction time.
    """
    # why here: reading or listing a dataset (the registry, job specs, panels) must not load the Slicer core
    from ..scene.markups_io import read_box, read_points

    geometry = image.geometry
    ep = entry.annotations.get("extreme_points")
    if ep:
        points = read_extreme_points(dataset.path(ep), geometry)
        index = geometry.ras_to_index(points, what="extreme point")
        return index.min(axis=0), index.max(axis=0), points
    bx = entry.annotations.get("box")
    if bx:
        lo, hi = box_index_bounds(read_box(dataset.path(bx), geometry=geometry), geometry)
        return lo, hi, None
    sp = entry.annotations.get("surface_points")
    if sp:  # Weak-Net: the points lie on the object's surface, so their box is the object's box
        surface, _ = read_points(dataset.path(sp), min_count=5, geometry=geometry, what="surface points")
        index = geometry.ras_to_index(surface, what="surface point")
        return index.min(axis=0), index.max(axis=0), None
    if entry.reference:
        mask = read_reference(dataset, entry, geometry)
        coords = np.argwhere(mask)
        return coords.min(axis=0), coords.max(axis=0), None
    raise InputError(f"Case {entry.id!r} has no annotation and no reference: nothing tells where the object is.")


def read_reference(dataset: DatasetFolder, entry: CaseEntry, geometry: Geometry) -> np.ndarray:

    mask = read_mask(dataset.path(entry.reference), label=entry.reference_label, grid=geometry, what="reference")
    if not mask.any():
        raise InputError(f"Case {entry.id!r}: the reference mask is empty.")
    return mask


@dataclass(frozen=True)
class CropGrid:
    """A padded box on an image, and the isotropic grid it is resampled to (``align_corners`` mapping)."""

    start: tuple[int, int, int]  # (k, j, i) of the box's first voxel on the original grid
    shape: tuple[int, int, int]  # the box's shape on the original grid
    resampled_shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.shape, strict=True))

    def to_resampled(self, index_kji: np.ndarray) -> np.ndarray:
        """Continuous indices on the resampled grid of original-grid indices (N, 3)."""
        src = np.maximum(np.asarray(self.shape) - 1, 1)
        dst = np.asarray(self.resampled_shape) - 1
        return (np.atleast_2d(index_kji) - np.asarray(self.start)) * dst / src

    def to_dict(self) -> dict[str, list[int]]:
        return {"start": list(self.start), "shape": list(self.shape), "resampled_shape": list(self.resampled_shape)}

    def crop(self, full: np.ndarray, *, mode: str = "nearest") -> np.ndarray:
        """A full-grid array (e.g. a label map) cut to the box and resampled onto this grid, float32."""
        return resample(np.asarray(full)[self.slices].astype(np.float32), self.resampled_shape, mode=mode)


def crop_grid(
    geometry: Geometry,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    padding_mm: float,
    spacing_mm: float | None,
    min_size: int = 8,
) -> CropGrid:
    """The object's bounds grown by ``padding_mm`` (clipped to the image), and its resampled shape."""
    spacing = geometry.array_spacing
    pad = np.ceil(padding_mm / spacing).astype(int)
    shape = np.asarray(geometry.shape)
    b0 = np.maximum(np.asarray(lo) - pad, 0)
    b1 = np.minimum(np.asarray(hi) + pad, shape - 1)
    box_shape = b1 - b0 + 1
    if spacing_mm is None or spacing_mm <= 0:
        resampled = box_shape
    else:
        resampled = np.rint((box_shape - 1) * spacing / spacing_mm).astype(int) + 1
    resampled = np.maximum(resampled, min_size)
    return CropGrid(tuple(map(int, b0)), tuple(map(int, box_shape)), tuple(map(int, resampled)))


def resample(array: np.ndarray, shape: Sequence[int], *, mode: str = "trilinear") -> np.ndarray:
    """Resize a 3D array to ``shape`` (corner-aligned, as :meth:`CropGrid.to_resampled`) with torch."""
    import torch
    import torch.nn.functional as F

    a = np.asarray(array, dtype=np.float32)
    if tuple(a.shape) == tuple(shape):
        return a.copy()
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    kwargs = {"align_corners": True} if mode == "trilinear" else {}
    out = F.interpolate(t, size=tuple(int(s) for s in shape), mode=mode, **kwargs)
    return out[0, 0].numpy()


def normalise_intensity(array: np.ndarray) -> np.ndarray:
    """1st–99th percentile of the crop → [0, 1], so SUV, HU and z-scores look alike to the network."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = np.percentile(a, [1.0, 99.0])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def crop_zscore(array: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance of the raw values over the whole crop (pet_box ``suv_zscore``: the paper's
    normalisation of the SUV; no percentile clipping, so hot lesions keep their contrast)."""
    a = np.asarray(array, dtype=np.float32)
    return ((a - a.mean()) / max(float(a.std()), 1e-6)).astype(np.float32)


def normalise_crop(array: np.ndarray, intensity: str = "percentile") -> np.ndarray:
    """A crop's network input: "percentile" (:func:`normalise_intensity`) or "suv_zscore" (:func:`crop_zscore`)."""
    return crop_zscore(array) if intensity == "suv_zscore" else normalise_intensity(array)


def gaussian_heatmap(shape: Sequence[int], points: np.ndarray | None, sigma_vox: float) -> np.ndarray:
    """The points channel: max over points of a 3D Gaussian of ``sigma_vox`` (zeros when no points)."""
    out = np.zeros(tuple(shape), np.float32)
    if points is None or len(points) == 0:
        return out
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    s2 = 2.0 * max(float(sigma_vox), 1e-3) ** 2
    for p in np.atleast_2d(points):
        d2 = sum((g - float(c)) ** 2 for g, c in zip(grids, p, strict=True))
        np.maximum(out, np.exp(-d2 / s2).astype(np.float32), out=out)
    return out


# --- crop cache ---------------------------------------------------------------------------------------


def _save_npz(path: Path, **arrays: Any) -> None:
    with atomic_output(path) as tmp:
        np.savez(tmp, **arrays)


class CropCache:
    """One ``.npz`` per case under ``folder``: the normalised crop, its points and targets, and its grid."""

    def __init__(self, dataset: DatasetFolder, folder: str | Path, *, padding_mm: float, spacing_mm: float | None):
        self.dataset = dataset
        self.folder = Path(folder)
        self.padding_mm = float(padding_mm)
        self.spacing_mm = spacing_mm

    def path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.npz"

    def prepare(self, entry: CaseEntry, *, force: bool = False) -> Path:
        """Read the case's files once and write its crop (skipped when already cached)."""
        out = self.path(entry.id)
        if out.is_file() and not force:
            return out
        self.folder.mkdir(parents=True, exist_ok=True)
        image = read_image(self.dataset.path(entry.image), what=f"image of case {entry.id!r}")
        lo, hi, points = object_bounds(self.dataset, entry, image)
        grid = crop_grid(image.geometry, lo, hi, padding_mm=self.padding_mm, spacing_mm=self.spacing_mm)
        arrays: dict[str, Any] = {
            "image": normalise_intensity(resample(image.array[grid.slices], grid.resampled_shape)),
            "raw": resample(image.array[grid.slices], grid.resampled_shape),
            "grid": np.asarray([grid.start, grid.shape, grid.resampled_shape], np.int64),
        }
        if points is not None:
            arrays["points"] = grid.to_resampled(image.geometry.ras_to_index(points)).astype(np.float32)
            # Outside the points' box (grown by one voxel) is background by definition of extreme points.
            arrays["box"] = np.stack([grid.to_resampled(lo - 1)[0], grid.to_resampled(hi + 1)[0]]).astype(np.float32)
        if entry.reference:
            ref = read_reference(self.dataset, entry, image.geometry)
            arrays["reference"] = resample(ref[grid.slices].astype(np.float32), grid.resampled_shape)
        if entry.pseudo_label and self.dataset.path(entry.pseudo_label).is_file():
            pseudo = read_image(self.dataset.path(entry.pseudo_label), what=f"pseudo-label of case {entry.id!r}")
            if not pseudo.geometry.same_grid(image.geometry):
                raise InputError(f"Case {entry.id!r}: the pseudo-label is not on the image's grid.")
            arrays["pseudo"] = resample((pseudo.array[grid.slices] != 0).astype(np.float32), grid.resampled_shape)
        spacing = (
            image.geometry.array_spacing
            * (np.asarray(grid.shape) - 1)
            / np.maximum(np.asarray(grid.resampled_shape) - 1, 1)
        )
        arrays["spacing"] = spacing.astype(np.float32)
        _save_npz(out, **arrays)
        return out

    def load(self, case_id: str) -> dict[str, np.ndarray]:
        with np.load(self.path(case_id)) as z:
            return {k: z[k] for k in z.files}

    def grid(self, case_id: str) -> CropGrid:
        """The crop grid a cached case was cut with (stored as start / shape / resampled shape rows)."""
        g = self.load(case_id)["grid"]
        return CropGrid(tuple(map(int, g[0])), tuple(map(int, g[1])), tuple(map(int, g[2])))


class CropDataset:
    """Map-style dataset (works with torch's DataLoader and DistributedSampler) that opens one crop per item.

    ``target`` is "reference" or "pseudo"; ``target_dir`` (a folder of ``<id>.npy``) overrides it, which is
    how the extreme-point network's refined labels of the current round are fed back. Items are dicts with
    ``input`` (C, D, H, W) and ``target`` (1, D, H, W) float32 tensors, a random ``patch_size`` window when
    ``patch_size`` is given (zero-padded when the crop is smaller), the whole crop otherwise.
    """

    def __init__(
        self,
        cache: CropCache,
        case_ids: Sequence[str],
        *,
        target: str = "reference",
        target_dir: str | Path | None = None,
        points_channel: bool = False,
        sigma_mm: float = 3.0,
        patch_size: Sequence[int] | None = None,
        seed: int = 0,
        intensity: str = "percentile",
    ) -> None:
        self.cache = cache
        self.intensity = intensity  # "percentile" (the cached "image") or "suv_zscore" (the "raw" crop z-scored)
        self.case_ids = list(case_ids)
        self.target = target
        self.target_dir = Path(target_dir) if target_dir is not None else None
        self.points_channel = points_channel
        self.sigma_mm = sigma_mm
        self.patch_size = tuple(patch_size) if patch_size is not None else None
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.case_ids)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(input (C, D, H, W), target (1, D, H, W)) of the whole crop, as numpy."""
        case_id = self.case_ids[index]
        z = self.cache.load(case_id)
        if self.intensity == "suv_zscore":
            if "raw" not in z:
                raise InputError(f"Case {case_id!r}: the crop cache has no raw intensities; delete its crops/ folder.")
            channels = [crop_zscore(z["raw"])]
        else:
            channels = [z["image"]]
        if self.points_channel:
            spacing = float(np.mean(z["spacing"]))
            channels.append(gaussian_heatmap(z["image"].shape, z.get("points"), self.sigma_mm / spacing))
        if self.target_dir is not None and (self.target_dir / f"{case_id}.npy").is_file():
            target = np.load(self.target_dir / f"{case_id}.npy").astype(np.float32)
        elif self.target in z:
            target = z[self.target]
        else:
            raise InputError(f"Case {case_id!r} has no {self.target} label to train on.")
        return np.stack(channels).astype(np.float32), target[None].astype(np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        x, y = self.arrays(index)
        if self.patch_size is not None:
            x, y = _random_window(x, y, self.patch_size, self.rng)
        return {"input": torch.from_numpy(x), "target": torch.from_numpy(y), "case": self.case_ids[index]}


def _random_window(
    x: np.ndarray, y: np.ndarray, size: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    shape = np.asarray(x.shape[1:])
    size = np.asarray(size)
    pad = np.maximum(size - shape, 0)
    if pad.any():
        widths = [(0, 0)] + [(int(p // 2), int(p - p // 2)) for p in pad]
        x, y = np.pad(x, widths), np.pad(y, widths)
        shape = np.asarray(x.shape[1:])
    start = [int(rng.integers(0, s - n + 1)) for s, n in zip(shape, size, strict=True)]
    window = (slice(None),) + tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))
    return np.ascontiguousarray(x[window]), np.ascontiguousarray(y[window])


# --- building and pseudo-labelling --------------------------------------------------------------------


def create_from_cases(
    output: str | Path,
    case_ids: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    label: int | None = None,
    jitter_mm: float = 0.0,
    seed: int = 0,
) -> DatasetFolder:
    """A dataset of catalogue cases with simulated extreme points (6 clicks each) and their reference masks.

    For tests and benchmarks: the annotations a user would give, without a user. Effort records 6 clicks and
    0 s (simulated, not timed).
    """
    # why here: reading or listing a dataset (the registry, job specs, panels) must not load the Slicer core
    from ..scene.markups_io import write_points

    root = Path(output)
    if (root / MANIFEST).exists():
        raise InputError(f"{root} already holds a dataset; choose a new folder.")
    if root.is_dir() and any(root.iterdir()):
        raise InputError(f"{root} is not empty; give a new (or empty) folder for the dataset.")
    if not case_ids:
        raise InputError("Give at least one case id (--from-cases).")
    if root.is_dir():
        root.rmdir()  # empty: built beside it and moved in whole
    with atomic_folder(root) as building:  # the whole dataset or nothing
        _fill_from_cases(DatasetFolder(building, root.name), case_ids, data_dir, label, jitter_mm, seed, write_points)
    return DatasetFolder.load(root)


def _fill_from_cases(
    ds: DatasetFolder,
    case_ids: Sequence[str],
    data_dir: str | Path | None,
    label: int | None,
    jitter_mm: float,
    seed: int,
    write_points: Callable[..., Path],
) -> None:
    root = ds.root
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for n, case_id in enumerate(case_ids):
        case = find_case(case_id, data_dir)
        reference = case.reference_mask("simulating extreme points")
        ref = read_image(reference, what=f"mask of {case_id}")
        mask = select_label(ref.array, label, what="mask", path=reference)
        points, labels = extreme_points(mask, ref.geometry, jitter_mm=jitter_mm, seed=seed + n)
        ep = write_points(
            root / "annotations" / f"{case_id}.extreme_points.mrk.json", points, labels, "extreme", required=6
        )
        ds.add_case(
            CaseEntry(
                id=case_id,
                image=ds.stored(case.image),
                annotations={"extreme_points": ds.stored(ep)},
                reference=ds.stored(reference),
                reference_label=label,
                effort={"clicks": 6, "seconds": 0.0},
                modality=case.modality,
            )
        )
    ds.save()
