"""What the image and audio denoisers share: a residual U-Net's encode/decode/forward.

A subclass builds ``head`` (full-resolution features), ``downs`` (strided stages),
``bottleneck``, ``ups`` (each ``up(h, skip)``) and ``tail`` (predicts the noise). Inputs may
carry extra conditioning planes after the ``channels`` signal planes (``in_channels`` > ``channels``);
the noise is subtracted from the signal planes.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualUNet(nn.Module):
    def descend(self, top: torch.Tensor) -> list[torch.Tensor]:
        """``[skip_0, ..., skip_{L-1}, latent]`` from the full-resolution features ``top``
        (what ``head`` gives; the colour models add their guide first)."""
        feats = [top]
        for down in self.downs:
            feats.append(down(feats[-1]))
        feats[-1] = self.bottleneck(feats[-1])
        return feats

    def ascend(self, skips: list[torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        """The full-resolution features the noise head reads, from the latent and the skips."""
        h = latent
        for up, skip in zip(self.ups, reversed(skips)):
            h = up(h, skip)
        return h

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[x, skip_0, ..., skip_{L-1}, latent]``; the latent is the coarsest features."""
        return [x, *self.descend(self.head(x))]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Decode latent + skips into the clean estimate ``x - predicted_noise``."""
        x, h = codes[0], self.ascend(codes[1:-1], codes[-1])
        if getattr(self, "in_channels", self.channels) != self.channels:
            x = x[:, : self.channels]
        return x - self.tail(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
