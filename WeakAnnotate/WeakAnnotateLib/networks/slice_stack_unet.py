"""The 2.5D residual U-Net of the tightness-prior paper: three neighbouring slices in, the centre slice out.

Why a wrapper with a volume's interface: the worker, the sliding-window validation and ``predict`` all pass
(B, C, D, H, W) windows and expect (B, 1, D, H, W) back. This module unfolds every slice along D with its two
neighbours into a batch of 2D inputs (B·D, 3·C, H, W), runs MONAI's 2D residual U-Net on them, and folds the
centre-slice outputs back into a volume — so a 2.5D network needs no other code path. The first and last
slice of a window repeat themselves as their missing neighbour (replicate padding); sliding windows overlap,
which hides that at window borders inside a volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NEIGHBOURS = 1  # slices on each side: 3 slices in


class SliceStackUNet(torch.nn.Module):
    """(B, C, D, H, W) → (B, 1, D, H, W) by a 2D U-Net on each slice and its neighbours along D."""

    def __init__(
        self, in_channels: int, channels: Sequence[int], *, num_res_units: int = 2, act: str | None = None
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        extra = {"act": act} if act else {}
        self.in_channels = int(in_channels)
        self.net = UNet(
            spatial_dims=2,
            in_channels=self.in_channels * (2 * NEIGHBOURS + 1),
            out_channels=1,
            channels=tuple(int(c) for c in channels),
            strides=(2,) * (len(channels) - 1),
            num_res_units=num_res_units,  # residual units: the paper's "residual version of the UNet"
            **extra,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        padded = torch.cat([x[:, :, :1]] * NEIGHBOURS + [x] + [x[:, :, -1:]] * NEIGHBOURS, dim=2)
        # (B, C, D + 2n, H, W) → (B, D, C·(2n+1), H, W): slice s gets slices s-n … s+n, channel-major per slice
        stack = padded.unfold(2, 2 * NEIGHBOURS + 1, 1)  # (B, C, D, H, W, 3)
        stack = stack.permute(0, 2, 1, 5, 3, 4).reshape(b * d, c * (2 * NEIGHBOURS + 1), h, w)
        out = self.net(stack)  # (B·D, 1, H, W)
        return out.reshape(b, d, 1, h, w).permute(0, 2, 1, 3, 4)
