"""Prediction with a trained model: MONAI sliding-window inference on the (points') crop, back on the image grid.

Why a crop: the networks are trained on the object's box plus padding resampled to a coarse isotropic grid
(see :mod:`.dataset`), so prediction does the same — around the six clicks when given (the extreme-point
network needs them for its Gaussian channel), else over the whole image. Why sliding windows: a crop can be
larger than the training window; MONAI's ``sliding_window_inference`` tiles it with overlap and blends.

A model is a job folder's ``model.pt`` *with* its ``model.json``: a ``model.pt`` without ``model.json`` is a
job that did not finish and is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.colors import segment_color
from ..core.errors import InputError
from ..data.dataset import crop_grid, gaussian_heatmap, normalise_crop, read_extreme_points, resample
from ..files.image_io import Image, read_image, write_image
from ..scene.markups_io import read_points
from ..scene.mrml_adapter import add_segmentation_node, image_of_node, points_of_node, set_segment_mask
from .build import build_network
from .model_files import MODEL_FILE, MODEL_INFO, model_paths


@dataclass
class LoadedModel:
    net: Any
    config: dict[str, Any]  # network and input settings (channels, spacing_mm, padding_mm, points_channel, ...)
    info: dict[str, Any]  # model.json
    path: Path

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.parent.name)

    @property
    def needs_points(self) -> bool:
        return bool(self.config.get("points_channel"))


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    import torch

    weights, info_path = model_paths(path)
    if not info_path.is_file():
        if weights.is_file():
            raise InputError(f"{weights} has no {MODEL_INFO} beside it: its training did not finish.")
        raise InputError(f"No trained model at {path} (expected {MODEL_FILE} and {MODEL_INFO}).")
    if not weights.is_file():
        raise InputError(f"{info_path} has no {MODEL_FILE} beside it.")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Cannot read {info_path}: {e}") from None
    if not isinstance(info, dict):
        raise InputError(f"{info_path} is not a model description (a JSON object).")
    if info.get("method") == "box_patch_classifier":
        raise InputError(
            f"{info_path.parent} is a box-correction classifier, not a segmentation network; use it with "
            "'weakannotate box-correct --model' (or the BoxCorrection panel)."
        )
    try:
        blob = torch.load(weights, map_location=device, weights_only=False)
        config = blob["config"]
        net = build_network(config)
        net.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001 - unpickling a damaged file raises almost any type
        raise InputError(f"Cannot load the model at {weights}: the file is damaged or not a WeakAnnotate model "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None  # fmt: skip
    net.to(device).eval()
    return LoadedModel(net, config, info, weights)


def sliding_probability(
    net: Any, x: np.ndarray, roi_size: tuple[int, ...], device: str = "cpu", overlap: float = 0.25
) -> np.ndarray:
    """Foreground probability (D, H, W) of an input (C, D, H, W) by sliding-window inference."""
    import torch
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device)
        logits = sliding_window_inference(t, roi_size=tuple(roi_size), sw_batch_size=1, predictor=net, overlap=overlap)
        return torch.sigmoid(logits)[0, 0].float().cpu().numpy()


def predict_image(
    model: LoadedModel, image: Image, points_ras: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mask bool, probability float32) on the image's full grid."""
    cfg = model.config
    geometry = image.geometry
    if points_ras is not None:
        points_ras = np.asarray(points_ras, dtype=float).reshape(-1, 3)
        index = geometry.ras_to_index(points_ras, what="point")
        lo, hi, padding = index.min(axis=0), index.max(axis=0), float(cfg["padding_mm"])
    elif model.needs_points:
        raise InputError(
            f"Model {model.name!r} was trained with the extreme-points channel: give the six clicks (--points)."
        )
    else:
        lo, hi, padding = np.zeros(3, int), np.asarray(geometry.shape) - 1, 0.0
    grid = crop_grid(geometry, lo, hi, padding_mm=padding, spacing_mm=cfg.get("spacing_mm") or None)
    crop = image.array[grid.slices]
    x = [normalise_crop(resample(crop, grid.resampled_shape), cfg.get("intensity", "percentile"))]
    if model.needs_points:
        spacing = float(
            np.mean(
                geometry.array_spacing
                * (np.asarray(grid.shape) - 1)
                / np.maximum(np.asarray(grid.resampled_shape) - 1, 1)
            )
        )
        pts = grid.to_resampled(geometry.ras_to_index(points_ras))
        x.append(gaussian_heatmap(grid.resampled_shape, pts, float(cfg["sigma_mm"]) / spacing))
    prob = sliding_probability(model.net, np.stack(x), tuple(cfg["patch_size"]), _device_of(model.net))
    prob = resample(prob, grid.shape)
    full = np.zeros(geometry.shape, np.float32)
    full[grid.slices] = prob
    return full >= float(cfg.get("threshold", 0.5)), full  # weak_net: γ; others 0.5


def _device_of(net: Any) -> str:
    try:
        return str(next(net.parameters()).device)
    except StopIteration:
        return "cpu"


def predict_file(
    model_path: str | Path, image_path: str | Path, output: str | Path, points_path: str | Path | None = None
) -> dict[str, Any]:
    """Read, predict, write the mask (uint8, on the image's grid) atomically; returns a summary."""

    model = load_model(model_path)
    image = read_image(image_path)
    points = None
    if points_path is not None:
        if model.needs_points:
            points = read_extreme_points(points_path, image.geometry)
        else:
            points, _ = read_points(points_path, min_count=2, geometry=image.geometry)
    mask, _prob = predict_image(model, image, points)
    write_image(output, mask.astype(np.uint8), image.geometry)
    return {"model": model.name, "output": str(output), "voxels": int(mask.sum()), "grid": image.geometry.describe()}


def predict_nodes(
    rt: Any,
    volume_node: Any,
    model_path: str | Path,
    points_node: Any = None,
    segmentation_node: Any = None,
) -> tuple[Any, str, LoadedModel]:
    """For the panels: predict on a volume node and load the result as a segment named after the model.

    Everything is computed before the scene is touched (an error leaves the scene as it was). The segment
    takes its colour from :func:`~WeakAnnotateLib.core.colors.segment_color` (anatomy colours by name).
    """

    model = load_model(model_path)
    image = image_of_node(volume_node)
    points = None
    if points_node is not None:
        points, _ = points_of_node(points_node)
        if len(points) == 0:
            points = None
    mask, _prob = predict_image(model, image, points)
    if segmentation_node is None:
        segmentation_node = add_segmentation_node(rt, f"{volume_node.GetName()} predictions", volume_node)
    segment_id = set_segment_mask(rt, segmentation_node, mask, image.geometry, model.name, segment_color(model.name))
    return segmentation_node, segment_id, model
