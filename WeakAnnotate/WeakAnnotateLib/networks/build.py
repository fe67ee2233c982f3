"""The networks a model config describes: MONAI's 3D U-Net, the 2.5D residual U-Net, and the two wrappers some
methods add (a z-scored input for the PET box networks, U-Net 2 beside U-Net 1 for Weak-Net).

Why here and not in the methods: :func:`build_network` must rebuild any saved model from its ``config`` alone,
for prediction as for training, without knowing which method trained it.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import UNet

from .slice_stack_unet import SliceStackUNet


def build_network(config: dict[str, Any]) -> Any:
    """The MONAI 3D U-Net described by a model config (in_channels, channels), or the 2.5D residual U-Net
    (``"network": "unet_2.5d"``: three neighbouring slices in, the centre slice out; box_prior)."""
    channels = tuple(int(c) for c in config["channels"])
    extra = {"act": config["act"]} if config.get("act") else {}  # pet_box: SELU (paper); default PReLU
    if config.get("network") == "unet_2.5d":
        return SliceStackUNet(
            int(config["in_channels"]), channels, num_res_units=int(config.get("num_res_units", 2)), **extra
        )
    net = UNet(
        spatial_dims=3,
        in_channels=int(config["in_channels"]),
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=int(config.get("num_res_units", 1)),
        **extra,
    )
    if config.get("input_norm") == "zscore":  # pet_box: zero mean, unit variance per window
        return torch.nn.Sequential(InputZScore(), net)
    if config.get("reconstruction"):  # weak_net: U-Net 2 trains beside it; forward(x) is still U-Net 1 alone
        return WeakNetModule(net, build_reconstructor(config))
    return net


class InputZScore(torch.nn.Module):
    """Zero mean, unit variance per sample and channel: the paper's intensity normalisation, inside the net."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zscore(x)


def zscore(x: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True).clamp(min=1e-6)
    return (x - mean) / std


class WeakNetModule(torch.nn.Module):
    """U-Net 1 (segmenter) and U-Net 2 (reconstructor) in one module, so that the worker's optimiser,
    checkpoints, DDP wrapper and ``model.pt`` cover both without knowing about the second one.

    ``forward(x)`` is U-Net 1 alone (what validation, sliding-window inference and ``predict`` call);
    ``forward(x, reconstruct=True)`` also returns U-Net 2's reconstruction from sigmoid(Ŷ).
    """

    def __init__(self, segmenter: torch.nn.Module, reconstructor: torch.nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.reconstructor = reconstructor

    def forward(self, x: torch.Tensor, reconstruct: bool = False) -> Any:
        logits = self.segmenter(x)
        if not reconstruct:
            return logits
        return logits, self.reconstructor(torch.sigmoid(logits))


def build_reconstructor(config: dict[str, Any]) -> torch.nn.Module:
    """U-Net 2: the same MONAI U-Net as U-Net 1, segmentation probability in, image out (linear output)."""
    channels = tuple(int(c) for c in config["channels"])
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=int(config.get("num_res_units", 1)),
    )
