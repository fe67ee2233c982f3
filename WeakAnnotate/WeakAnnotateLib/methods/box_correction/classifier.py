"""Box correction: one loose 3D box → a tight 2D box in every slice (paper: box_correction).

Why: a 3D box that is tight in 3D is loose in most of its slices (the paper measures a mean per-slice IoU of
0.15 against the tight slice boxes on liver CT), and box-supervised training (the tightness prior,
:mod:`.tightness_prior`) assumes every line across a slice's box meets the object. The paper's fix, done
here:

1. crop the 3D box's rectangle from each slice;
2. cut the crop into ``p × p`` patches with stride ``p/2``; for training, a patch is foreground when the
   object covers more than 50 % of it;
3. a small VGG-style CNN classifies the patches (trained on a few fully labelled volumes: 5/10/20 in the
   paper);
4. each slice's corrected box is the extent of its foreground patches, clipped to the original box.

Choices of ours, each for a reason:

* intensities are z-scored with the statistics of the voxels inside the 3D box, which are known at inference
  (the box is the input) and make one model usable across scanners of a modality;
* ``coords`` (on by default): three extra input channels give the patch's position inside the 3D box
  (row, column, slice, each in [−1, 1]). Where the object has no visible edge (sarcoma on CT/T1 in the shared
  data) the position is the only cue; the paper's liver CT has strong contrast and did not need it.
  ``coords=False`` is the paper's network;
* a slice where no patch is classified foreground keeps the single most probable patch (clipped to the box),
  not the raw box: inside a 3D box that is tight in 3D every slice holds some of the object, and the raw
  box is the worst possible answer;
* crops smaller than ``p`` are zero-padded (after normalisation) to one patch.

Arrays are ``[k, j, i]``; slices are taken along array ``axis`` (0 = k, the acquisition axis for axial
images). No torch import at module level: the Slicer panel imports this module on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.atomic_files import atomic_output
from ...core.box import Box
from ...core.errors import InputError
from ...core.geometry import Geometry
from ...evaluation.simulate import box_index_bounds, index_box, tight_box
from ...scene.mrml_adapter import box_of_node, image_of_node, segment_mask, set_segment_mask

METHOD = "box_patch_classifier"
MODEL_FILE, MODEL_INFO = "model.pt", "model.json"
MIN_TRAINING_VOLUMES = 3  # fewer fully labelled volumes: the classifier learns one object's look, not a class's
PAPER_IOU = {"raw": 0.15, "corrected": (0.87, 0.93)}  # Table 2, liver CT


# --- patches -------------------------------------------------------------------------------------------


def patch_starts(length: int, p: int) -> np.ndarray:
    """Patch origins along one side: stride p/2 from 0, plus one flush with the end so every pixel is seen."""
    if length <= p:
        return np.zeros(1, dtype=np.int64)
    stride = max(p // 2, 1)
    starts = np.arange(0, length - p + 1, stride)
    if starts[-1] != length - p:
        starts = np.append(starts, length - p)
    return starts.astype(np.int64)


def _pad_to(a: np.ndarray, p: int) -> np.ndarray:
    """Zero-pad the last two axes up to ``p`` (crops narrower than a patch)."""
    pad_r, pad_c = max(p - a.shape[-2], 0), max(p - a.shape[-1], 0)
    if not (pad_r or pad_c):
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, pad_r), (0, pad_c)])


def extract_patches(crop: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches (R*C, ..., p, p) of a crop (..., H, W), and the row and column origins (R,), (C,).

    Patches are ordered row-major over (row origin, column origin). Vectorised (a strided view + one gather).
    """
    h, w = crop.shape[-2:]
    rs, cs = patch_starts(h, p), patch_starts(w, p)
    padded = _pad_to(crop, p)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (p, p), axis=(-2, -1))  # (..., H', W', p, p)
    sel = windows[..., rs[:, None], cs[None, :], :, :]  # (..., R, C, p, p)
    lead = crop.ndim - 2
    sel = np.moveaxis(sel, (lead, lead + 1), (0, 1))  # (R, C, ..., p, p)
    return sel.reshape(len(rs) * len(cs), *sel.shape[2:]), rs, cs


def patch_labels(mask_crop: np.ndarray, p: int) -> np.ndarray:
    """1 where the object covers more than 50 % of the patch (paper), row-major like :func:`extract_patches`."""
    patches, _, _ = extract_patches(np.asarray(mask_crop, dtype=np.float32), p)
    return (patches.reshape(len(patches), -1).mean(axis=1) > 0.5).astype(np.int64)


def shrink_box(
    foreground: np.ndarray, probability: np.ndarray, rs: np.ndarray, cs: np.ndarray, p: int, shape: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Crop-relative inclusive (lo, hi) of the foreground patches' extent, clipped to the crop (H, W).

    ``foreground``/``probability`` are (R, C) over the patch grid; with no foreground patch the most
    probable one is the box (see the module docstring).
    """
    fg = np.asarray(foreground, dtype=bool)
    if not fg.any():
        fg = np.zeros_like(fg)
        fg[np.unravel_index(int(np.argmax(probability)), fg.shape)] = True
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    h, w = shape
    lo = (int(rs[rows[0]]), int(cs[cols[0]]))
    hi = (min(int(rs[rows[-1]]) + p - 1, h - 1), min(int(cs[cols[-1]]) + p - 1, w - 1))
    return lo, hi


# --- inputs --------------------------------------------------------------------------------------------


def box_statistics(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the voxels in the 3D box (the normalisation known at inference)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise InputError("The box holds no finite image value.")
    std = float(v.std())
    return float(v.mean()), std if std > 1e-6 else 1.0


def _coord_channels(n_slices: int, h: int, w: int) -> np.ndarray:
    """(3, S, H, W): row, column and slice position inside the 3D box, each in [−1, 1]."""

    def ramp(n: int) -> np.ndarray:
        return np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32)

    s, r, c = np.meshgrid(ramp(n_slices), ramp(h), ramp(w), indexing="ij")
    return np.stack([r, c, s])


def box_input(image: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int, coords: bool) -> np.ndarray:
    """(S, C, H, W) float32 network input of the 3D index box lo..hi (inclusive), slices along ``axis``."""
    region = np.asarray(image[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))], dtype=np.float32)
    mean, std = box_statistics(region)
    region = np.clip((region - mean) / std, -5.0, 5.0)
    region = np.nan_to_num(np.moveaxis(region, axis, 0))  # (S, H, W)
    channels = [region[None]]
    if coords:
        channels.append(_coord_channels(*region.shape))
    return np.moveaxis(np.concatenate(channels, axis=0), 0, 1).astype(np.float32)  # (S, C, H, W)


def _in_plane(a: np.ndarray | Sequence[int], axis: int) -> tuple[int, int]:
    rest = [int(v) for n, v in enumerate(a) if n != axis]
    return rest[0], rest[1]


# --- network -------------------------------------------------------------------------------------------


def build_classifier(in_channels: int, width: int = 8) -> Any:
    """A small VGG-style patch classifier (paper: VGG-16): 3×3 conv blocks doubling the features after each
    2× pooling, global average pool, one logit. CPU-sized — one conv per block, 8 features first — because
    applying it is interactive: a brain-tumour box (80 slices, ~10⁴ patches) must take well under a second."""
    import torch.nn as nn

    def block(cin: int, cout: int, pool: bool) -> list[Any]:
        layers: list[Any] = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        *block(in_channels, width, True),
        *block(width, 2 * width, True),
        *block(2 * width, 4 * width, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, 1),
    )


@dataclass
class BoxClassifierParams:
    """Hyper-parameters of the patch classifier; all copied into ``model.json``."""

    patch_size: int = 16  # p (paper: 16 or 32 on 1 mm-ish liver CT)
    axis: int = 0  # slices along this array axis (0 = k)
    coords: bool = True  # position channels (see the module docstring); False = the paper's input
    width: int = 8  # features of the first conv block
    epochs: int = 8
    learning_rate: float = 1e-3  # paper: 1e-4 for 50 epochs on a GPU; fewer epochs here
    batch_size: int = 64  # paper: 32
    margin_mm: float = 0.0  # training boxes: the tight 3D box grown by this
    max_patches_per_volume: int = 6000  # a random subset per volume bounds an epoch's time
    threshold: float = 0.5  # foreground when the probability exceeds this
    seed: int = 0

    def check(self) -> None:
        if self.patch_size < 4 or self.patch_size % 2:
            raise InputError(f"patch_size: an even size ≥ 4 is needed (paper: 16 or 32), got {self.patch_size}.")
        if self.axis not in (0, 1, 2):
            raise InputError(f"axis: 0, 1 or 2 (array axes k, j, i), got {self.axis}.")
        for name in ("width", "epochs", "batch_size", "max_patches_per_volume"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be ≥ 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate: must be > 0, got {self.learning_rate}.")
        if self.margin_mm < 0:
            raise InputError(f"margin_mm: must be ≥ 0, got {self.margin_mm}.")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold: must be in (0, 1), got {self.threshold}.")


@dataclass
class LabelledVolume:
    """A fully labelled training volume."""

    image: np.ndarray
    mask: np.ndarray
    geometry: Geometry
    modality: str = ""
    name: str = ""


@dataclass
class BoxCorrectionModel:
    """A trained patch classifier with what it was trained on (to warn when applied elsewhere)."""

    net: Any
    params: BoxClassifierParams
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return 4 if self.params.coords else 1


def _training_box(vol: LabelledVolume, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:

    box = tight_box(vol.mask, vol.geometry, margin_mm=margin_mm)
    return box_index_bounds(box, vol.geometry)


def training_patches(vol: LabelledVolume, params: BoxClassifierParams) -> tuple[np.ndarray, np.ndarray]:
    """All (patch, label) pairs of one labelled volume: its tight 3D box cut into slices, then patches."""
    lo, hi = _training_box(vol, params.margin_mm)
    x = box_input(vol.image, lo, hi, params.axis, params.coords)  # (S, C, H, W)
    m = np.moveaxis(vol.mask[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))], params.axis, 0)
    xs, ys = [], []
    for s in range(x.shape[0]):
        patches, _, _ = extract_patches(x[s], params.patch_size)
        xs.append(patches)
        ys.append(patch_labels(m[s], params.patch_size))
    return np.concatenate(xs), np.concatenate(ys)


def check_training_volumes(volumes: Sequence[LabelledVolume]) -> None:
    if len(volumes) < MIN_TRAINING_VOLUMES:
        raise InputError(
            f"Box correction needs at least {MIN_TRAINING_VOLUMES} fully labelled volumes to train its patch "
            f"classifier (the paper uses 5, 10 or 20); got {len(volumes)}."
        )
    for v in volumes:
        if v.image.shape != v.mask.shape:
            raise InputError(f"Volume {v.name or '?'}: image {v.image.shape} and mask {v.mask.shape} differ.")
        if not np.any(v.mask):
            raise InputError(f"Volume {v.name or '?'}: its mask is empty; a labelled volume needs the object.")


def train_box_classifier(
    volumes: Sequence[LabelledVolume],
    params: BoxClassifierParams | None = None,
    *,
    device: str = "cpu",
    on_epoch: Any = None,
    should_stop: Any = None,
) -> BoxCorrectionModel:
    """Train the patch classifier on fully labelled volumes (cross-entropy, Adam, class-balanced).

    ``on_epoch(dict)`` receives each epoch's loss, accuracy and time; ``should_stop()`` is polled per batch.
    """
    import torch

    params = params or BoxClassifierParams()
    params.check()
    check_training_volumes(volumes)
    rng = np.random.default_rng(params.seed)
    torch.manual_seed(params.seed)
    xs, ys = [], []
    for v in volumes:
        x, y = training_patches(v, params)
        if len(x) > params.max_patches_per_volume:
            keep = rng.choice(len(x), params.max_patches_per_volume, replace=False)
            x, y = x[keep], y[keep]
        xs.append(x)
        ys.append(y)
    x_all = torch.from_numpy(np.concatenate(xs))
    y_all = torch.from_numpy(np.concatenate(ys)).float()
    n_pos = float(y_all.sum())
    if n_pos == 0:
        raise InputError(
            f"No training patch is foreground at p = {params.patch_size}: the objects are smaller than half a "
            "patch; use a smaller patch_size."
        )
    pos_weight = torch.tensor((len(y_all) - n_pos) / n_pos)
    net = build_classifier(x_all.shape[1], params.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    history = []
    for epoch in range(params.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(params.seed + epoch))
        total, correct = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt
            idx = order[start : start + params.batch_size]
            xb, yb = x_all[idx].to(device), y_all[idx].to(device)
            logits = net(xb)[:, 0]
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int(((logits > 0).float() == yb).sum())
        record = {
            "epoch": epoch + 1,
            "epochs": params.epochs,
            "loss": total / len(order),
            "accuracy": correct / len(order),
            "seconds_per_epoch": time.perf_counter() - t0,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    net.eval()
    info = {
        "method": METHOD,
        "params": asdict(params),
        "modalities": sorted({v.modality for v in volumes if v.modality}),
        "intensity_range": _intensity_range(volumes, params),
        "cases": [v.name for v in volumes],
        "patches": int(len(y_all)),
        "foreground_fraction": n_pos / len(y_all),
        "history": history,
    }
    return BoxCorrectionModel(net.cpu(), params, info)


def _intensity_range(volumes: Sequence[LabelledVolume], params: BoxClassifierParams) -> list[float]:
    """The 1st–99th percentile span of the training boxes' raw intensities, to spot another modality."""
    lows, highs = [], []
    for v in volumes:
        lo, hi = _training_box(v, params.margin_mm)
        region = np.asarray(v.image[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))], dtype=np.float64)
        lows.append(float(np.nanpercentile(region, 1)))
        highs.append(float(np.nanpercentile(region, 99)))
    return [min(lows), max(highs)]


# --- model files ---------------------------------------------------------------------------------------


def save_box_model(model: BoxCorrectionModel, folder: str | Path, name: str = "") -> Path:
    """``model.pt`` then ``model.json``, each atomically: a folder without ``model.json`` holds no model."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"network": METHOD, "in_channels": model.in_channels, "width": model.params.width}
    with atomic_output(folder / MODEL_FILE) as tmp:
        torch.save({"config": config, "state_dict": model.net.state_dict()}, tmp)
    info = {"name": name or f"{folder.name} (box correction)", **model.info, "config": config}
    with atomic_output(folder / MODEL_INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    return folder


def load_box_model(path: str | Path) -> BoxCorrectionModel:
    """A model saved by :func:`save_box_model` (a job folder, its model.pt or its model.json)."""
    import torch

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    weights, info_path = folder / MODEL_FILE, folder / MODEL_INFO
    if not info_path.is_file():
        if weights.is_file():
            raise InputError(f"{weights} has no {MODEL_INFO} beside it: its training did not finish.")
        raise InputError(f"No trained box-correction model at {path} (expected {MODEL_FILE} and {MODEL_INFO}).")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Cannot read {info_path}: {e}") from None
    if info.get("method") != METHOD:
        raise InputError(
            f"{folder} holds a {info.get('method', 'unknown')!r} model, not a box-correction patch classifier; "
            "train one with method 'box_patch_classifier'."
        )
    try:
        params = BoxClassifierParams(**info["params"])
        blob = torch.load(weights, map_location="cpu", weights_only=False)
        net = build_classifier(int(blob["config"]["in_channels"]), int(blob["config"]["width"]))
        net.load_state_dict(blob["state_dict"])
    except (OSError, KeyError, TypeError, RuntimeError) as e:
        raise InputError(f"Cannot load the box-correction model at {weights}: {e}") from None
    net.eval()
    return BoxCorrectionModel(net, params, info)


# --- correction ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrectedSlice:
    """One slice of a corrected box: raw and corrected in-plane bounds (inclusive array indices) and RAS boxes."""

    slice_index: int
    raw_lo: tuple[int, int]
    raw_hi: tuple[int, int]
    lo: tuple[int, int]
    hi: tuple[int, int]
    box: Box
    raw_box: Box
    max_probability: float


@dataclass
class BoxCorrectionResult:
    axis: int
    slices: list[CorrectedSlice]
    warnings: list[str]
    seconds: float

    def mask(self, shape: tuple[int, int, int], *, raw: bool = False) -> np.ndarray:
        """The pseudo-mask: the union of the (corrected or raw) slice boxes on the image grid."""
        out = np.zeros(shape, dtype=bool)
        for s in self.slices:
            lo, hi = (s.raw_lo, s.raw_hi) if raw else (s.lo, s.hi)
            index: list[Any] = [slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1)]
            index.insert(self.axis, s.slice_index)
            out[tuple(index)] = True
        return out

    def to_json(self, **extra: Any) -> dict[str, Any]:
        def box_json(b: Box) -> dict[str, Any]:
            return {"center": b.center.tolist(), "size": b.size.tolist(), "axes": b.axes.tolist()}

        return {
            "version": 1,
            "coordinateSystem": "RAS",
            "axis": self.axis,
            **extra,
            "warnings": self.warnings,
            "seconds": self.seconds,
            "slices": [
                {
                    "slice_index": s.slice_index,
                    "raw": {"lo": list(s.raw_lo), "hi": list(s.raw_hi), **box_json(s.raw_box)},
                    "corrected": {"lo": list(s.lo), "hi": list(s.hi), **box_json(s.box)},
                    "max_probability": s.max_probability,
                }
                for s in self.slices
            ],
        }


def read_slice_boxes(path: str | Path, geometry: Geometry) -> np.ndarray:
    """The corrected per-slice boxes of a BOXES.json (:meth:`BoxCorrectionResult.to_json`) as a mask on
    ``geometry``: the union of the corrected slice boxes. A file from another image (indices outside the grid,
    or slice boxes whose RAS centres do not fall on their indices) is an :class:`InputError`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        axis, slices = int(doc["axis"]), list(doc["slices"])
        boxes = [(int(s["slice_index"]), s["corrected"]) for s in slices]
        bounds = [(k, tuple(int(v) for v in c["lo"]), tuple(int(v) for v in c["hi"]), c["center"]) for k, c in boxes]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(
            f"Cannot read the corrected boxes {path}: {e}. Write them with 'weakannotate box-correct'."
        ) from None
    if axis not in (0, 1, 2) or not bounds:
        raise InputError(f"The corrected boxes {path} hold no slices (or a slice axis {axis} not in 0–2).")
    out = np.zeros(geometry.shape, dtype=bool)
    spacing = np.asarray(geometry.array_spacing, dtype=float)
    for k, lo, hi, center in bounds:
        index: list[Any] = [slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1)]
        index.insert(axis, k)
        corner_lo, corner_hi = list(lo), list(hi)
        corner_lo.insert(axis, k)
        corner_hi.insert(axis, k)
        if (
            min(corner_lo) < 0
            or any(h >= n for h, n in zip(corner_hi, geometry.shape, strict=True))
            or any(h < v for v, h in zip(lo, hi, strict=True))
        ):
            raise InputError(
                f"The corrected boxes {path} do not fit this image ({geometry.shape} voxels): slice {k} box "
                f"{lo}–{hi}. Were they corrected on another volume?"
            )
        mid = geometry.index_to_ras(((np.asarray(corner_lo) + np.asarray(corner_hi)) / 2.0)[None])[0]
        if np.linalg.norm(mid - np.asarray(center, dtype=float)) > float(spacing.max()):
            raise InputError(
                f"The corrected boxes {path} belong to another volume: slice {k}'s box centre is "
                f"{np.linalg.norm(mid - np.asarray(center, dtype=float)):.1f} mm from where its indices put it."
            )
        out[tuple(index)] = True
    return out


def check_box_on_image(box: Box, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds of a 3D box on the image; zero extent or no voxel inside is an :class:`InputError`."""
    size = np.asarray(box.size, dtype=float)
    if np.any(~np.isfinite(size)) or np.any(size <= 0):
        raise InputError("The box has zero extent; drag its handles so that it encloses the object.")
    return box_index_bounds(box, geometry)


def modality_warnings(model: BoxCorrectionModel, region: np.ndarray, modality: str | None) -> list[str]:
    """Warn (not refuse) when the classifier meets a modality or intensities it was not trained on."""
    warnings = []
    trained = model.info.get("modalities") or []
    if modality and trained and modality.lower() not in {m.lower() for m in trained}:
        warnings.append(
            f"The classifier was trained on {', '.join(trained)} and is applied to {modality}; "
            "its corrected boxes may be wrong."
        )
    span = model.info.get("intensity_range")
    if span and region.size:
        median = float(np.nanmedian(region))
        lo, hi = span
        margin = 0.5 * (hi - lo)
        if not lo - margin <= median <= hi + margin:
            warnings.append(
                f"The box's median intensity {median:.4g} lies far outside the training range [{lo:.4g}, {hi:.4g}]: "
                "is this the modality the classifier was trained on?"
            )
    return warnings


def correct_box(
    model: BoxCorrectionModel, image: np.ndarray, geometry: Geometry, box: Box, *, modality: str | None = None
) -> BoxCorrectionResult:
    """Tighten ``box`` slice by slice; all patches of all slices go through the network in one pass."""
    import torch

    t0 = time.perf_counter()
    params = model.params
    lo, hi = check_box_on_image(box, geometry)
    if image.shape != geometry.shape:
        raise InputError(f"Image shape {image.shape} does not match its geometry {geometry.shape}.")
    region = np.asarray(image[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))])
    warnings = modality_warnings(model, region, modality)
    x = box_input(image, lo, hi, params.axis, params.coords)  # (S, C, H, W)
    n_s, _, h, w = x.shape
    patches, rs, cs = extract_patches(x, params.patch_size)  # (R*C, S, C, p, p)
    patches = np.moveaxis(patches, 1, 0).reshape(-1, *patches.shape[2:])  # (S*R*C, C, p, p)
    with torch.inference_mode():
        probs = []
        for start in range(0, len(patches), 4096):
            batch = torch.from_numpy(np.ascontiguousarray(patches[start : start + 4096]))
            probs.append(torch.sigmoid(model.net(batch)[:, 0]).numpy())
    prob = np.concatenate(probs).reshape(n_s, len(rs), len(cs))
    lo_plane, hi_plane = _in_plane(lo, params.axis), _in_plane(hi, params.axis)
    slices = []
    for s in range(n_s):
        c_lo, c_hi = shrink_box(prob[s] > params.threshold, prob[s], rs, cs, params.patch_size, (h, w))
        new_lo = (lo_plane[0] + c_lo[0], lo_plane[1] + c_lo[1])
        new_hi = (lo_plane[0] + c_hi[0], lo_plane[1] + c_hi[1])
        k = int(lo[params.axis]) + s
        slices.append(
            CorrectedSlice(
                slice_index=k,
                raw_lo=lo_plane,
                raw_hi=hi_plane,
                lo=new_lo,
                hi=new_hi,
                box=index_box(np.insert(new_lo, params.axis, k), np.insert(new_hi, params.axis, k), geometry),
                raw_box=index_box(np.insert(lo_plane, params.axis, k), np.insert(hi_plane, params.axis, k), geometry),
                max_probability=float(prob[s].max()),
            )
        )
    return BoxCorrectionResult(params.axis, slices, warnings, time.perf_counter() - t0)


# --- evaluation ----------------------------------------------------------------------------------------


def box2d_iou(a_lo: Sequence[int], a_hi: Sequence[int], b_lo: Sequence[int], b_hi: Sequence[int]) -> float:
    """IoU of two inclusive index rectangles."""
    inter = 1
    for a0, a1, b0, b1 in zip(a_lo, a_hi, b_lo, b_hi, strict=True):
        inter *= max(0, min(a1, b1) - max(a0, b0) + 1)
    area_a = np.prod([a1 - a0 + 1 for a0, a1 in zip(a_lo, a_hi, strict=True)])
    area_b = np.prod([b1 - b0 + 1 for b0, b1 in zip(b_lo, b_hi, strict=True)])
    return float(inter / (area_a + area_b - inter))


def slice_box_iou(result: BoxCorrectionResult, mask: np.ndarray) -> dict[str, float]:
    """Mean IoU of the raw and corrected slice boxes against the tight slice boxes of the reference (Table 2).

    Slices of the box without the object count as IoU 0 (the paper's boxes are tight in 3D, so there are none
    unless the user's box is loose along the slice axis).
    """
    raw, corrected = [], []
    for s in result.slices:
        plane = np.take(mask, s.slice_index, axis=result.axis)
        if not plane.any():
            raw.append(0.0)
            corrected.append(0.0)
            continue
        coords = np.argwhere(plane)
        t_lo, t_hi = tuple(coords.min(axis=0)), tuple(coords.max(axis=0))
        raw.append(box2d_iou(s.raw_lo, s.raw_hi, t_lo, t_hi))
        corrected.append(box2d_iou(s.lo, s.hi, t_lo, t_hi))
    return {"raw": float(np.mean(raw)), "corrected": float(np.mean(corrected)), "slices": len(raw)}


# --- scene ---------------------------------------------------------------------------------------------

RAW_SEGMENT_COLOR = (0.95, 0.75, 0.2)
CORRECTED_SEGMENT_COLOR = (0.2, 0.8, 0.4)


def apply_to_nodes(
    rt: Any, volume_node: Any, roi_node: Any, segmentation_node: Any, model: BoxCorrectionModel, *, name: str = ""
) -> tuple[BoxCorrectionResult, dict[str, str]]:
    """The panel's Apply: correct the ROI's box on the volume and show raw vs corrected as two segments.

    Why two segments (``<name> raw boxes``, ``<name> corrected``) and not one ROI node per slice: a box of 80
    slices would add 160 nodes to the scene; two labelmap segments show every slice's raw and corrected box in
    the slice views at no cost, and the corrected one *is* the pseudo-mask (union of corrected slice boxes).
    Returns the result and the segment IDs {"raw": ..., "corrected": ...}.
    """

    image = image_of_node(volume_node)
    result = correct_box(model, image.array, image.geometry, box_of_node(roi_node))
    name = name or (roi_node.GetName() if roi_node is not None else "box")
    shape = image.geometry.shape
    ids = {
        "raw": set_segment_mask(
            rt, segmentation_node, result.mask(shape, raw=True), image.geometry, f"{name} raw boxes", RAW_SEGMENT_COLOR
        ),
        "corrected": set_segment_mask(
            rt, segmentation_node, result.mask(shape), image.geometry, f"{name} corrected", CORRECTED_SEGMENT_COLOR
        ),
    }
    return result, ids


def accept_slice_boxes(result: BoxCorrectionResult, mask: np.ndarray, geometry: Geometry) -> BoxCorrectionResult:
    """The corrected boxes as the user left them: each slice's box is the extent of ``mask`` (the corrected
    segment after any edit) in that slice. A slice the user emptied is dropped; a slice painted outside the
    raw box's slices gets its painted extent as both raw and corrected box."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != geometry.shape:
        raise InputError(f"The corrected segment ({mask.shape}) is not on the volume's grid ({geometry.shape}).")
    axis = result.axis
    raw = {s.slice_index: s for s in result.slices}
    planes = np.moveaxis(mask, axis, 0)

    def box_of(k: int, lo: tuple[int, int], hi: tuple[int, int]) -> Box:
        return index_box(np.insert(lo, axis, k), np.insert(hi, axis, k), geometry)

    slices = []
    for k in (int(v) for v in np.flatnonzero(planes.reshape(planes.shape[0], -1).any(axis=1))):
        rows, cols = np.flatnonzero(planes[k].any(axis=1)), np.flatnonzero(planes[k].any(axis=0))
        lo, hi = (int(rows[0]), int(cols[0])), (int(rows[-1]), int(cols[-1]))
        before = raw.get(k)
        slices.append(
            CorrectedSlice(
                slice_index=k,
                raw_lo=before.raw_lo if before else lo,
                raw_hi=before.raw_hi if before else hi,
                lo=lo,
                hi=hi,
                box=box_of(k, lo, hi),
                raw_box=before.raw_box if before else box_of(k, lo, hi),
                max_probability=before.max_probability if before else 1.0,
            )
        )
    if not slices:
        raise InputError("The corrected segment is empty: nothing to accept. Apply again or paint the object.")
    return BoxCorrectionResult(axis, slices, list(result.warnings), result.seconds)


def accept_from_nodes(
    volume_node: Any,
    roi_node: Any,
    segmentation_node: Any,
    segment_id: str,
    result: BoxCorrectionResult,
    path: str | Path,
) -> BoxCorrectionResult:
    """The panel's Accept: the corrected segment (as edited) → per-slice boxes written to ``path`` (a
    box-correct BOXES.json, usable as a dataset's ``slice_boxes`` annotation), and the path stored on the ROI
    node (attribute ``WeakAnnotate.sliceBoxes``) so that the boxes stay with the case. Nothing is written and
    the ROI is unchanged when the segment is empty or the path is not a .json in an existing folder."""

    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"Cannot write {path}: the accepted boxes are saved as .json.")
    if not path.parent.is_dir():
        raise InputError(f"Folder {path.parent} does not exist; choose an existing folder for the boxes file.")
    geometry = image_of_node(volume_node).geometry
    accepted = accept_slice_boxes(result, segment_mask(segmentation_node, segment_id, geometry), geometry)
    edited = [(s.lo, s.hi) for s in accepted.slices] != [(s.lo, s.hi) for s in result.slices]
    doc = accepted.to_json(image=volume_node.GetName(), box=roi_node.GetName() if roi_node else "", edited=edited)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    if roi_node is not None:
        roi_node.SetAttribute("WeakAnnotate.sliceBoxes", str(path))
    return accepted
