"""A learned spectral gate: a Wiener-like time-frequency gain with a learned noise-floor
tracker, as an exact, streamable, ONNX-exportable torch module.

A waveform U-Net with a few hundred thousand weights per stage has coarse frequency resolution:
it loses to a decision-directed Wiener filter on stationary noise (white, the steady part of
babble), which works on 32 ms frames with a noise floor estimated over seconds. The gate gives
the network that view: an STFT (sqrt-Hann, ``n_fft`` samples, hop ``n_fft / 4``) of its input,
a per-bin gain in (0, 2) computed from level-free features, and the inverse STFT by overlap-add.

Features per frame and bin, all invariant to the recording's level (so the denoiser stays
positively homogeneous, ``f(a x) = a f(x)``, wherever the ``2 * floor_frames + 1`` frames around
hold any signal at all):
- ``log(|X|^2 / m + 1e-6)``, where ``m`` is the mean power over bins and those frames (the
  1e-6 floor, -60 dB, keeps digital silence inside the range training shows: noise at up to
  60 dB SNR);
- a noise-floor estimate per bin: the log of the harmonic mean of that relative power over
  those frames, which the quietest frames dominate (a soft form of the minimum statistics a
  Wiener filter tracks; a running minimum itself does not export with a dynamic length).
A conv over frames (bins as channels), dilated residual blocks over time, then a 1x1 conv to
one gain per bin: ``gain = 2 * sigmoid(z)``. That conv starts at zero, so a new gate passes
its input through unchanged (perfect reconstruction, to float rounding) until training moves it.

Transforms are fixed convolutions over buffers (no weights in the state dict); every frame lies
on a grid of ``hop`` samples from the signal's start, so windows aligned to the hop give the
same frames as the whole file. The reach on each side (:attr:`SpectralGate.radius`) is
declared, not probed: the gain's sigmoid hides it from a gradient probe.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.registry import register_model
from autoenc.runtime.prefilter import WienerPrefilter


RELATIVE_FLOOR = 1e-6  # power relative to the local mean is floored here (-60 dB) before its log
BUFFERS = ("analysis", "synthesis")  # the fixed transforms, held as (non-persistent) buffers


class _Block(nn.Module):
    """Residual dilated conv over frames; ``mix`` starts at zero (the block is the identity)."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.mix(F.relu(self.conv(h))))


class _Spectrum(nn.Module):
    """The fixed parts every spectral gate shares: the STFT (sqrt-Hann, ``n_fft`` samples, hop
    ``n_fft / 4``) and its inverse as convolutions over buffers, the level-free features, and
    ``forward`` (spectrum, gain, masked spectrum back to a waveform). A subclass adds the
    learned network: ``hidden(power)`` and ``gain_from(h)``, and its reach in :attr:`net_frames`.

    Args:
        n_fft: frame length in samples (a multiple of 4; hop is ``n_fft // 4``).
        floor_frames: frames on each side for the level reference and the noise-floor mean.
    """

    def __init__(self, n_fft: int, floor_frames: int) -> None:
        super().__init__()
        if n_fft % 4:
            raise ValueError(f"spectral gate: n_fft must be a multiple of 4, got {n_fft}")
        self.n_fft, self.hop, self.floor_frames = n_fft, n_fft // 4, floor_frames
        self.bins = bins = n_fft // 2 + 1
        k = torch.arange(n_fft, dtype=torch.float64)
        ang = 2 * math.pi * torch.arange(bins, dtype=torch.float64)[:, None] * k[None, :] / n_fft
        win = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()
        analysis = torch.cat([torch.cos(ang), -torch.sin(ang)]) * win  # rows: Re, Im of each bin
        scale = torch.full((bins, 1), 2.0, dtype=torch.float64)
        scale[0] = scale[-1] = 1.0  # DC and Nyquist appear once in the half spectrum
        # inverse real DFT times the synthesis window, over the 2x sum of sqrt-Hann^2 at 75% overlap
        synthesis = torch.cat([torch.cos(ang) * scale, -torch.sin(ang) * scale]) * win / (n_fft * 2.0)
        # analysis (2F, 1, n_fft) and synthesis (n_fft, 2F, 1): not learned, not in the state dict
        for name, value in zip(BUFFERS, (analysis.float()[:, None, :], synthesis.float().T.contiguous()[:, :, None])):
            self.register_buffer(name, value, persistent=False)

    net_frames = 0  # frames on each side the learned network reaches (set by subclasses)

    @property
    def radius(self) -> int:
        """Samples on each side of an output sample that can change it (an upper bound)."""
        frames = self.net_frames + 2 * self.floor_frames  # the floor pools powers relative to a pooled mean
        return frames * self.hop + 2 * self.n_fft  # plus the frames over the output sample and the span of each frame read

    def features(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level-free ``(log relative power, log noise floor)``, each ``(B, F, frames)``, from the
        power spectrum ``(B, F, frames)`` (see the module docstring)."""
        w = self.floor_frames
        local = F.avg_pool1d(power.mean(dim=1, keepdim=True), 2 * w + 1, stride=1, padding=w, count_include_pad=False)
        rel = power / (local + 1e-30) + RELATIVE_FLOOR
        floor = -torch.log(F.avg_pool1d(1.0 / rel, 2 * w + 1, stride=1, padding=w, count_include_pad=False))
        return torch.log(rel), floor

    def gain(self, power: torch.Tensor) -> torch.Tensor:
        """Per-bin gain ``(B, F, frames)`` from the power spectrum of the same shape."""
        return self.gain_from(self.hidden(power))

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary STFT ``(B, F, frames)`` of a mono waveform ``(B, 1, T)``."""
        n, hop, length = self.n_fft, self.hop, x.shape[-1]
        pad = n - hop
        spec = F.conv1d(F.pad(x, (pad, pad + (-length) % hop)), self.analysis, stride=hop)  # (B, 2F, frames)
        bins = spec.shape[1] // 2
        return spec[:, :bins], spec[:, bins:]

    def synthesize(self, re: torch.Tensor, im: torch.Tensor, length: int) -> torch.Tensor:
        """The waveform ``(B, 1, length)`` of a (masked) spectrum: inverse DFT and overlap-add."""
        hop, pad = self.hop, self.n_fft - self.hop
        seg = F.conv1d(torch.cat([re, im], dim=1), self.synthesis)  # (B, n_fft, frames): windowed frames
        b, frames = seg.shape[0], seg.shape[-1]
        parts = seg.reshape(b, 4, hop, frames)
        ola = sum(F.pad(parts[:, r], (r, 3 - r)) for r in range(4))  # (B, hop, frames + 3): overlap-add
        y = ola.transpose(1, 2).reshape(b, 1, (frames + 3) * hop)
        return y[:, :, pad : pad + length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        re, im = self.spectrum(x)
        g = self.gain(re * re + im * im)
        return self.synthesize(re * g, im * g, x.shape[-1])


class SpectralGate(_Spectrum):
    """Time-frequency gain on a mono waveform ``(B, 1, T) -> (B, 1, T)``: the features of all
    bins as the channels of convs over frames.

    Args:
        n_fft: frame length in samples (a multiple of 4; hop is ``n_fft // 4``).
        hidden: feature maps of the gain network.
        dilations: one residual dilated block per entry (in frames).
        floor_frames: frames on each side for the level reference and the noise-floor mean.
    """

    def __init__(self, n_fft: int = 512, hidden: int = 96, dilations: tuple[int, ...] = (1, 2, 4, 8), floor_frames: int = 31) -> None:
        super().__init__(n_fft, floor_frames)
        self.dilations = tuple(int(d) for d in dilations)
        self.net_frames = 1 + sum(self.dilations)
        self.inp = nn.Conv1d(2 * self.bins, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(hidden, d) for d in self.dilations))
        self.out = nn.Conv1d(hidden, self.bins, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def hidden(self, power: torch.Tensor) -> torch.Tensor:
        """The gain network's features ``(B, hidden, frames)`` from the power spectrum ``(B, F, frames)``."""
        log_rel, floor = self.features(power)
        h = F.relu(self.inp(torch.cat([log_rel, floor], dim=1)))
        return self.blocks(h)

    def gain_from(self, h: torch.Tensor) -> torch.Tensor:
        """Per-bin gain in (0, 2) from the gain network's features."""
        return 2.0 * torch.sigmoid(self.out(h))


BAND_FEATURE_SCALE = 0.25  # the log features (about -14..+5) scaled into a conv's comfortable range


def _band_conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv over (bins, frames): ``stride`` over bins only, ``dilation`` over frames only."""
    return nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=(1, dilation), dilation=(1, dilation))


class _BandBlock(nn.Module):
    """Residual 3x3 conv dilated over frames; ``mix`` starts at zero (the block is the identity)."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = _band_conv(width, width, dilation=dilation)
        self.mix = nn.Conv2d(width, width, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.mix(F.relu(self.conv(h))))


class _BandUp(nn.Module):
    """Linear upsampling over bins to the skip's size (frames untouched), a conv, the skip
    added before the ReLU, a conv; ``last``: no ReLU after that conv (the gain head reads
    linear features). Both choices come from dead units in training: a ReLU after the last
    conv had 99.9% of its outputs zero after 200 steps at lr 1e-3, freezing the gain at 1; a
    ReLU on the upsampled path before the skip sum died in the last stage (99.7% zeros after 4
    epochs at lr 5e-4), cutting the gain off from the coarse stages."""

    def __init__(self, cin: int, cout: int, last: bool = False) -> None:
        super().__init__()
        self.up = _band_conv(cin, cout)
        self.conv = _band_conv(cout, cout)
        self.last = last

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        h = self.conv(F.relu(self.up(h) + skip))
        return h if self.last else F.relu(h)


class BandGate(_Spectrum):
    """Time-frequency gain on a mono waveform ``(B, 1, T) -> (B, 1, T)``: a U-Net over the
    (bins, frames) plane of the features, pooling frequency and not time.

    Why: :class:`SpectralGate` reads all bins at once through one dense layer, so what it learns
    at one frequency it must learn again at every other, and it learned slowly (11.9 dB after
    10 epochs against the waveform U-Net's 14.3). Convs over frequency share weights along the
    spectrum (a harmonic, an onset, a click look alike at every pitch), and stride-2 stages over
    bins give wide frequency context (GTCRN's and DeepFilterNet's band view) cheaply. Time
    context comes from convs dilated over frames at the coarsest stage; no stride over time, so
    any window aligned to the hop streams exactly.

    Args:
        n_fft: frame length in samples (a multiple of 4; hop ``n_fft // 4``).
        widths: feature maps at full frequency resolution, then after each stride-2 stage.
        dilations: one residual 3x3 block per entry at the coarsest stage (dilation in frames).
        floor_frames: frames on each side for the level reference and the noise-floor mean.
    """

    def __init__(self, n_fft: int = 512, widths: tuple[int, ...] = (8, 16, 24, 32), dilations: tuple[int, ...] = (1, 2, 4, 8, 16), floor_frames: int = 31) -> None:
        super().__init__(n_fft, floor_frames)
        self.widths, self.dilations = tuple(int(w) for w in widths), tuple(int(d) for d in dilations)
        if len(self.widths) < 1 or min(self.widths) < 1 or min(self.dilations, default=1) < 1:
            raise ValueError(f"band gate: widths and dilations must be positive, got {list(widths)}, {list(dilations)}")
        pairs = list(zip(self.widths[:-1], self.widths[1:]))
        self.inp = nn.Conv2d(2, self.widths[0], 3, padding=1)
        self.downs = nn.ModuleList(nn.Sequential(_band_conv(a, b, stride=2), nn.ReLU(inplace=True), _band_conv(b, b), nn.ReLU(inplace=True)) for a, b in pairs)
        self.blocks = nn.Sequential(*(_BandBlock(self.widths[-1], d) for d in self.dilations))
        self.ups = nn.ModuleList(_BandUp(b, a, last=i == len(pairs) - 1) for i, (a, b) in enumerate(reversed(pairs)))
        self.out = nn.Conv2d(self.widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.net_frames = 1 + 2 * len(pairs) + sum(self.dilations) + 2 * len(pairs) + 1  # every conv reaches one frame (or its dilation)

    def hidden(self, power: torch.Tensor) -> torch.Tensor:
        """Full-resolution features ``(B, widths[0], F, frames)`` from the power spectrum ``(B, F, frames)``."""
        log_rel, floor = self.features(power)
        h = F.relu(self.inp(torch.stack([log_rel, floor], dim=1) * BAND_FEATURE_SCALE))
        skips = [h]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = self.blocks(skips.pop())
        for up in self.ups:
            h = up(h, skips.pop())
        return h

    def gain_from(self, h: torch.Tensor) -> torch.Tensor:
        """Per-bin gain ``(B, F, frames)`` in (0, 2) from the full-resolution features."""
        return 2.0 * torch.sigmoid(self.out(h)[:, 0])


@register_model("spectral_dae", modality="audio")
class SpectralDAE(nn.Module):
    """A speech denoiser that is a learned spectral gate alone (mono): the STFT mask model of
    :class:`SpectralGate`, wider and deeper than the gate behind a U-Net, trained on its own.

    Why: the waveform U-Net (``unet1d_dae``) leaves non-stationary noise of voices and sounds
    it never heard (babble, effects) nearly untouched at 0 dB SNR, where a mask over 32 ms frames
    with ~0.5 s of context on each side, as DeepFilterNet computes, removes most of it; and the
    frame rate (one step per ``n_fft / 4`` samples) makes a step of training far cheaper than
    the U-Net's, so more of the CPU budget goes into data. Tried once from scratch
    (configs/speech-spectral.yaml, 10 epochs): 11.9 dB on the validation voices against the
    shipped U-Net's 14.3, babble untouched; its header says what a next try would change.

    Args:
        channels: audio channels (1 only: files are denoised per channel).
        n_fft: frame length in samples (hop ``n_fft / 4``; 512 = 32 ms at 16 kHz).
        hidden: feature maps of the gain network.
        dilations: one residual dilated block per entry (frames); their sum is the gain
            network's reach on each side, beyond the level reference's ``floor_frames``.
        floor_frames: frames on each side for the level reference and the noise-floor mean.
    """

    def __init__(self, channels: int = 1, n_fft: int = 512, hidden: int = 192, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1, 2, 4, 8, 16), floor_frames: int = 31) -> None:
        super().__init__()
        if channels != 1:
            raise ValueError(f"spectral_dae takes mono audio (files are denoised per channel), got channels={channels}")
        self.channels = 1
        self.gate = SpectralGate(n_fft, hidden, tuple(dilations), floor_frames)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x, h]``: the input and the gain network's features per frame (the latent)."""
        re, im = self.gate.spectrum(x)
        return [x, self.gate.hidden(re * re + im * im)]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The input's spectrum masked by the gain the features give, back to a waveform."""
        x, h = codes
        re, im = self.gate.spectrum(x)
        g = self.gate.gain_from(h)
        return self.gate.synthesize(re * g, im * g, x.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """No other model's weights fit this one (init_from needs a spectral_dae of the same shape)."""
        raise ValueError(f"spectral_dae cannot start from a {model} checkpoint: only from a spectral_dae of the same n_fft, hidden and dilations")

    @property
    def unprobed_radius(self) -> int:
        """The gate's reach (samples), which a gradient probe cannot see through its sigmoid."""
        return self.gate.radius

    @property
    def size_multiple(self) -> int:
        """Window starts aligned to the hop keep chunked output equal to whole-file output."""
        return self.gate.hop

    @property
    def min_length(self) -> int:
        """Shortest input (samples): one hop."""
        return self.gate.hop


@register_model("band_dae", modality="audio")
class BandDAE(SpectralDAE):
    """A speech denoiser that is a band gate (:class:`BandGate`: a U-Net over the spectrogram
    pooling frequency) alone, or behind the classical Wiener front end (``prefilter``) that the
    shipped waveform model has: the front end tracks the stationary floor over seconds, the gate
    removes what it leaves (babble, effects, music) frame by frame.

    Args:
        channels: audio channels (1 only: files are denoised per channel).
        n_fft: frame length in samples (hop ``n_fft / 4``; 512 = 32 ms at 16 kHz).
        widths: feature maps at full frequency resolution, then after each stride-2 stage over bins.
        dilations: one residual block per entry at the coarsest stage (dilation in frames).
        floor_frames: frames on each side for the level reference and the noise-floor mean.
        prefilter: settings of the classical front end the input passes first
            (:class:`autoenc.runtime.prefilter.WienerPrefilter`), in training and at inference;
            outside the ONNX graph, recorded in its metadata. None: the gate sees the input.

    Tried behind the front end (configs/speech-band.yaml, three starts of 3-4 epochs): 13.0 dB on the
    validation voices against the front end's 12.5 and the shipped U-Net's 14.4; it learned
    clicks, music and effects a little and left the front end's residual white noise and babble
    as they were. Its header says what a next try would change.
    """

    def __init__(self, channels: int = 1, n_fft: int = 512, widths: tuple[int, ...] = (8, 16, 24, 32), dilations: tuple[int, ...] = (1, 2, 4, 8, 16), floor_frames: int = 31, prefilter: dict | None = None) -> None:
        nn.Module.__init__(self)
        if channels != 1:
            raise ValueError(f"band_dae takes mono audio (files are denoised per channel), got channels={channels}")
        self.channels = 1
        self.prefilter = WienerPrefilter.parse(prefilter)
        self.gate = BandGate(n_fft, tuple(widths), tuple(dilations), floor_frames)

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """No other model's weights fit this one (init_from needs a band_dae of the same shape)."""
        raise ValueError(f"band_dae cannot start from a {model} checkpoint: only from a band_dae of the same n_fft, widths and dilations")
