"""Residual 1-D convolutional denoising autoencoder on the waveform (a small Demucs-like U-Net).

Encoder: a full-rate conv, then ``levels`` strided conv stages (kernel ``2 * stride``, stride
``stride``) each followed by a 1x1 conv, down to the latent. Decoder: linear upsampling to the
skip's exact length + conv, skip added, conv (no ConvTranspose: cleaner int8 and no edge
artefacts). The head predicts the noise; ``forward`` returns ``x - noise``. Any length works.

Why the waveform and not an STFT mask: one network for every sample rate via resampling, phase
handled implicitly, and streaming with overlap-add is exact when windows align to
``stride ** levels`` samples (see ``autoenc.audio_infer``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.registry import register_model


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 2 * stride, stride=stride, padding=stride // 2)
        self.mix = nn.Conv1d(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mix(F.relu(self.conv(x))))


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Conv1d(cin, cout, 5, padding=2)
        self.body = nn.Conv1d(cout, cout, 5, padding=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-1], mode="linear", align_corners=False)
        return F.relu(self.body(F.relu(self.up(x)) + skip))


@register_model("unet1d_dae", modality="audio")
class UNet1dDAE(nn.Module):
    """Residual waveform U-Net denoising autoencoder (mono in, mono out).

    Args:
        channels: audio channels the network takes (1: files are denoised per channel).
        width: feature maps at full rate; doubled at each level.
        levels: strided stages; streaming windows align to ``stride ** levels`` samples.
        stride: downsampling factor per level.
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 4, stride: int = 4) -> None:
        super().__init__()
        self.channels, self.width, self.levels, self.stride = channels, width, levels, stride
        widths = [width * 2**i for i in range(levels + 1)]
        self.head = nn.Sequential(nn.Conv1d(channels, width, 7, padding=3), nn.ReLU(inplace=True))
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1], stride) for i in range(levels))
        self.bottleneck = nn.Sequential(nn.Conv1d(widths[-1], widths[-1], 3, padding=1), nn.ReLU(inplace=True))
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i]) for i in reversed(range(levels)))
        self.tail = nn.Conv1d(width, channels, 7, padding=3)
        nn.init.zeros_(self.tail.weight)  # untrained model is the identity
        nn.init.zeros_(self.tail.bias)

    @property
    def size_multiple(self) -> int:
        """Window starts aligned to this many samples keep chunked output equal to whole-file."""
        return self.stride**self.levels

    @property
    def min_length(self) -> int:
        """Shortest input (samples) every strided stage can take."""
        return self.stride**self.levels

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[x, skip_0, ..., skip_{L-1}, latent]``; latent is (B, width*2^L, T/stride^L)."""
        feats = [x, self.head(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        feats[-1] = self.bottleneck(feats[-1])
        return feats

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Decode latent + skips into the clean waveform estimate ``x - predicted_noise``."""
        x, skips, h = codes[0], codes[1:-1], codes[-1]
        for up, skip in zip(self.ups, reversed(skips)):
            h = up(h, skip)
        return x - self.tail(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
