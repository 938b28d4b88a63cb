"""Residual convolutional denoising autoencoder for images (a small U-Net).

Encoder: a full-resolution conv, then ``levels`` stride-2 conv stages (each halves H and W and
doubles width) down to the latent. Decoder: bilinear upsample to the skip's exact size + conv
(no ConvTranspose: it stays fp32 under int8 quantisation and leaves checkerboard artefacts),
concatenate the skip, two convs. The head predicts the noise; ``forward`` returns ``x - noise``
(residual learning as in DnCNN). Any H, W works, odd sizes included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.registry import register_model
from autoenc.models.unet import ResidualUNet


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="zeros")


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, 2), nn.ReLU(inplace=True), _conv(cout, cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = _conv(cin, cout)
        self.body = nn.Sequential(_conv(2 * cout, cout), nn.ReLU(inplace=True), _conv(cout, cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(self.up(x))
        return self.body(torch.cat([x, skip], dim=1))


@register_model("unet_dae", modality="image")
class UNetDAE(ResidualUNet):
    """Residual U-Net denoising autoencoder.

    Args:
        channels: image channels (1 gray, 3 RGB).
        width: feature maps at full resolution; doubled at each level.
        levels: number of stride-2 stages; tiles align to multiples of ``2**levels`` pixels.
        bottleneck_blocks: extra conv layers at the latent resolution.
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 2, bottleneck_blocks: int = 1) -> None:
        super().__init__()
        self.channels, self.width, self.levels = channels, width, levels
        widths = [width * 2**i for i in range(levels + 1)]
        self.head = nn.Sequential(_conv(channels, width), nn.ReLU(inplace=True))
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(levels))
        self.bottleneck = nn.Sequential(
            *[m for _ in range(bottleneck_blocks) for m in (_conv(widths[-1], widths[-1]), nn.ReLU(inplace=True))]
        )
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i]) for i in reversed(range(levels)))
        self.tail = _conv(width, channels)
        # Zero-initialised noise head: an untrained model is the identity, never worse than input.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def size_multiple(self) -> int:
        """Tile origins aligned to this many pixels keep tiled output equal to whole-image output."""
        return 2**self.levels
