"""Residual 1-D convolutional denoising autoencoder on the waveform (a small Demucs-like U-Net).

Encoder: a full-rate conv, then ``levels`` strided conv stages (kernel ``2 * stride``, stride
``stride``) each followed by a 1x1 conv, down to the latent. Decoder: sub-sample-shuffle
upsampling (conv to ``stride`` phases, interleaved; no ConvTranspose, which stays fp32 under
int8), skip added, conv. The head predicts the noise; ``forward`` returns ``x - noise``. Any length works.

Optional context blocks (``context_dilations``) in the bottleneck: residual dilated convs at the
lowest rate (``stride ** levels`` samples per step, 16 ms at 16 kHz with the defaults) that widen
the receptive radius (the reach on each side) from ~75 ms to ~0.71 s with dilations 1, 3, 9, 27,
for +42% parameters and little compute: the conv stand-in for Demucs' bottleneck LSTM, since
telling a voice from babble or music needs syllables of context.

No layer has a bias, so with ReLU, reshapes and zero padding the network is positively
homogeneous: ``f(a * x) = a * f(x)`` for any gain ``a > 0``. A recording's level therefore
never matters (no per-window normalisation that would break exact streaming), and training can
use one fixed level.

An optional spectral gate (``spectral_gate``, :mod:`autoenc.models.spectral`) follows the U-Net:
a learned Wiener-like gain per STFT bin, fed level-free log-power and noise-floor features over
~0.5 s. It sharpens the frequency resolution the waveform network lacks on stationary noise;
it starts as the identity, so it can be added to a trained model.

Why the waveform and not an STFT mask: one network for every sample rate via resampling, phase
handled implicitly, and streaming with overlap-add is exact when windows align to
``size_multiple`` samples (``stride ** levels``, or a multiple of the gate's hop with a gate;
see ``autoenc.runtime.audio_infer``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.registry import register_model
from autoenc.models.spectral import SpectralGate
from autoenc.models.unet import ResidualUNet
from autoenc.runtime.prefilter import WienerPrefilter


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 2 * stride, stride=stride, padding=stride // 2, bias=False)
        self.mix = nn.Conv1d(cout, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mix(F.relu(self.conv(x))))


class _Up(nn.Module):
    """Sub-sample-shuffle upsampling: a conv makes ``stride`` phases per output channel at the
    low rate, interleaved to full rate (like ConvTranspose, but plain Conv + Reshape, which
    quantises cleanly); interpolation instead would low-pass away the high band."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.up = nn.Conv1d(cin, cout * stride, 3, padding=1, bias=False)
        self.body = nn.Conv1d(cout, cout, 5, padding=2, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.up(x))  # (B, cout * s, T)
        b, t = y.shape[0], y.shape[-1]
        y = y.reshape(b, -1, self.stride, t).transpose(2, 3).reshape(b, -1, t * self.stride)
        y = F.pad(y, (0, skip.shape[-1] - t * self.stride))  # T * s <= skip length by construction
        return F.relu(self.body(y + skip))


class _Context(nn.Module):
    """Residual dilated block ``relu(h + mix(relu(conv_d(h))))`` through ``width // 2`` maps;
    ``mix`` starts at zero, so a new block leaves a trained network's function unchanged (its
    input is already non-negative) until training moves it."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.mix = nn.Conv1d(width // 2, width, 1, bias=False)
        nn.init.zeros_(self.mix.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.mix(F.relu(self.conv(h))))


@register_model("unet1d_dae", modality="audio")
class UNet1dDAE(ResidualUNet):
    """Residual waveform U-Net denoising autoencoder (mono in, mono out).

    Args:
        channels: audio channels the network takes (1: files are denoised per channel).
        width: feature maps at full rate; doubled at each level.
        levels: strided stages; streaming windows align to ``stride ** levels`` samples (and
            to the gate's hop, with a gate: :attr:`size_multiple`).
        stride: downsampling factor per level.
        context_dilations: one residual dilated block per entry in the bottleneck (dilation in
            bottleneck steps of ``stride ** levels`` samples); empty: none.
        spectral_gate: follow the U-Net with a learned STFT gain (:class:`SpectralGate`, mono
            only), which starts as the identity.
        prefilter: settings of a classical front end the input passes before the network
            (:class:`autoenc.runtime.prefilter.WienerPrefilter`, e.g. ``{"name": "wiener"}``),
            in training and at inference; outside the ONNX graph, recorded in its metadata.
            None: the network sees the input itself.
        raw_plane: with a prefilter, the network also takes the unfiltered input, as
            ``channels`` more planes after the filtered ones (its output is still the filtered
            planes minus the predicted noise): it can undo the filter where the filter harms,
            e.g. on a clean recording, and see what the filter removed.
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 4, stride: int = 4, context_dilations: tuple[int, ...] = (), spectral_gate: bool = False, prefilter: dict | None = None, raw_plane: bool = False) -> None:
        super().__init__()
        self.prefilter = WienerPrefilter.parse(prefilter)
        if raw_plane and self.prefilter is None:
            raise ValueError("unet1d_dae: raw_plane gives the network the input beside its prefiltered form; it needs a prefilter")
        self.raw_plane = bool(raw_plane)
        self.in_channels = channels * (1 + self.raw_plane)
        if spectral_gate and channels != 1:
            raise ValueError(f"unet1d_dae: the spectral gate takes mono audio, got channels={channels}")
        self.channels, self.width, self.levels, self.stride = channels, width, levels, stride
        self.context_dilations = tuple(int(d) for d in context_dilations)
        if any(d < 1 for d in self.context_dilations):
            raise ValueError(f"unet1d_dae: context_dilations must be >= 1, got {list(self.context_dilations)}")
        widths = [width * 2**i for i in range(levels + 1)]
        self.head = nn.Sequential(nn.Conv1d(self.in_channels, width, 7, padding=3, bias=False), nn.ReLU(inplace=True))
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1], stride) for i in range(levels))
        self.bottleneck = nn.Sequential(
            nn.Conv1d(widths[-1], widths[-1], 3, padding=1, bias=False), nn.ReLU(inplace=True), *(_Context(widths[-1], d) for d in self.context_dilations)
        )
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i], stride) for i in reversed(range(levels)))
        self.tail = nn.Conv1d(width, channels, 7, padding=3, bias=False)
        nn.init.zeros_(self.tail.weight)  # untrained model is the identity
        self.gate = SpectralGate() if spectral_gate else None

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The U-Net's clean estimate, through the spectral gate where there is one."""
        y = super().decode(codes)
        return y if self.gate is None else self.gate(y)

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained ``unet1d_dae`` of the same width, levels and stride that lacks
        parts this one has: a plain one (no context blocks, no gate), or, for a model with a
        spectral gate, the same model without it, or, for a model with a raw plane, the same
        model without it. Its weights are taken as they are and the added parts start as the
        identity (the raw planes with zero input weights), so the model begins computing
        exactly what the old one did.

        A source that has context blocks of its own loads only into a model with as many: its
        weights do not record their dilations, which are then this config's.
        """
        if model != "unet1d_dae":
            raise ValueError(f"unet1d_dae cannot start from a {model} checkpoint")
        sources = [UNet1dDAE(self.channels, self.width, self.levels, self.stride)]
        if self.gate is not None:
            sources.append(UNet1dDAE(self.channels, self.width, self.levels, self.stride, self.context_dilations))
        if self.raw_plane:
            sources.append(UNet1dDAE(self.channels, self.width, self.levels, self.stride, self.context_dilations, self.gate is not None))
        head = "head.0.weight"
        for source in sources:
            ref = source.state_dict()
            if set(state) == set(ref) and all(state[k].shape == ref[k].shape for k in ref):
                if state[head].shape[1] < self.in_channels:  # the raw planes: no say yet
                    state = {**state, head: torch.cat([state[head], torch.zeros_like(state[head])], dim=1)}
                self.load_state_dict({**self.state_dict(), **state})
                return
        plain = sources[0].state_dict()
        odd = [k for k in plain if k not in state or state[k].shape != plain[k].shape] + sorted(set(state) - set(plain))
        raise ValueError(f"unet1d_dae cannot start from this {model}: only a plain one of the same width, levels and stride, without context blocks (or, for a gated model, this one without its gate); it lacks, reshapes or adds {odd[:4]} (this one: width {self.width}, {self.levels} levels, stride {self.stride}, context {list(self.context_dilations)}, gate {self.gate is not None}, raw plane {self.raw_plane})")

    @property
    def unprobed_radius(self) -> int:
        """Reach (samples) a gradient probe of the receptive field cannot see: the gate's."""
        return 0 if self.gate is None else self.gate.radius

    @property
    def size_multiple(self) -> int:
        """Window starts aligned to this many samples keep chunked output equal to whole-file."""
        return math.lcm(self.stride**self.levels, self.gate.hop) if self.gate is not None else self.stride**self.levels

    @property
    def min_length(self) -> int:
        """Shortest input (samples) every strided stage can take."""
        return self.stride**self.levels
