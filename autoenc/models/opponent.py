"""Colour denoiser in an opponent colour space: luminance and two chrominance planes.

CBM3D's trick, made trainable: RGB goes through the fixed opponent map of
:mod:`autoenc.runtime.opponent` (orthogonal rows, so independent RGB noise stays independent;
all three planes stay on 0..1 like a gray photo). Most of the picture's detail lands in Y and
the chrominance planes are smooth, so a gray denoiser run on each of them removes more noise than run on R, G
and B. A gray ``unet_dae`` (shared across the three planes) does that here, plus:

- a noise-level plane per opponent plane: the RGB level the runtime estimates, times that
  plane's row norm (when built with ``noise_level_input``);
- with ``noise_profile``, two more planes per opponent plane: that plane's own noise at a fine
  and a coarse scale (:func:`autoenc.runtime.noise_level.noise_profile`, times the strength),
  which tells blotchy camera noise from fine grain where the one RGB level cannot;
- a zero-initialised *guide* conv with separate weights per plane that lets each plane see all
  three noisy opponent planes (luminance edges tell the chrominance where to keep detail);
- with ``plane_mixing``, a zero-initialised 1x1 conv at every coarser scale (after each encoder
  stage, and after each decoder stage but the last) that adds to each plane's features a mix of
  all three planes' features there. The guide alone lets the planes meet only at the input;
  camera noise, which demosaicing, the colour matrix and JPEG's chroma subsampling make blotchy
  and correlated across channels, is read at the coarse scales. Full resolution is left as it
  was: the stem's skip and the decoder's last stage stay one plane's, so int8 keeps them fp32
  exactly as before (:func:`autoenc.quantize.input_convs`, :func:`autoenc.quantize.output_tail`);
- the output ``x - noise``, where the RGB noise is the inverse map (a fixed 1x1 conv) of the
  three planes' predicted noise; int8 keeps both convs of that head in fp32.

With the guide (and the mixing convs) at zero it is exactly the gray model run on Y, C1 and C2,
so it starts from a trained gray ``unet_dae`` (``train.init_from``; narrower ones are widened)
and is fine-tuned on colour photos; one with ``plane_mixing`` also starts from a trained
``opponent_unet_dae`` without it, computing what that model did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.image import UNetDAE, _conv
from autoenc.models.registry import register_model
from autoenc.runtime.noise_level import PROFILE_SCALES, PROFILE_SIZE
from autoenc.runtime.opponent import OPPONENT, OPPONENT_OFFSET


class PlaneMix(nn.Module):
    """``f + mix(f)`` for the features ``f`` (N*P, C, H, W) of N images' P planes (in the batch
    dimension): ``conv``, a zero-initialised 1x1 conv over all P*C features of an image, adds to
    each plane's features a mix of every plane's. Starts as the identity. A module of its own so
    that quantization-aware training can round its sum as the int8 model does
    (:func:`autoenc.qat.conv_ranges`)."""

    def __init__(self, planes: int, features: int) -> None:
        super().__init__()
        self.planes = planes
        self.conv = nn.Conv2d(planes * features, planes * features, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        n, c, h, w = f.shape
        return f + self.conv(f.reshape(n // self.planes, self.planes * c, h, w)).reshape(n, c, h, w)


@register_model("opponent_unet_dae", modality="image")
class OpponentUNetDAE(nn.Module):
    """RGB denoiser: a gray U-Net on the luminance and chrominance planes (see module docstring).
    ``encode`` returns ``[x, skip_0, ..., latent]`` with the three planes in the batch
    dimension (N*3, ...).

    Args:
        channels: must be 3 (RGB).
        width, levels, bottleneck_blocks: of the shared gray U-Net (see ``unet_dae``).
        noise_level_input: the input carries a fourth plane with the estimated RGB noise level
            (0..1 scale), as for ``unet_dae``.
        noise_profile: the input also carries the six planes of the image's noise profile
            (:func:`autoenc.runtime.noise_level.noise_profile`, 0..1 scale) after the level
            plane; needs ``noise_level_input``.
        plane_mixing: add the zero-initialised cross-plane 1x1 convs at the coarser scales
            (module docstring): ``levels`` in the encoder, ``levels - 1`` in the decoder.
    """

    def __init__(self, channels: int = 3, width: int = 16, levels: int = 2, bottleneck_blocks: int = 1, noise_level_input: bool = False, noise_profile: bool = False, plane_mixing: bool = False) -> None:
        super().__init__()
        if channels != 3:
            raise ValueError(f"opponent_unet_dae denoises RGB (3 channels), not {channels}")
        if noise_profile and not noise_level_input:
            raise ValueError("opponent_unet_dae: noise_profile needs noise_level_input (the profile planes follow the level plane)")
        self.channels, self.width, self.levels = channels, width, levels
        self.noise_level_input, self.noise_profile = noise_level_input, noise_profile
        self.in_channels = channels + int(noise_level_input) + PROFILE_SIZE * int(noise_profile)
        self.net = UNetDAE(1, width, levels, bottleneck_blocks, noise_level_input=noise_level_input)
        if noise_profile:  # each plane's U-Net also reads that plane's two profile values
            self.net.in_channels += PROFILE_SCALES
            self.net.head[0] = _conv(self.net.in_channels, width)
        self.guide = _conv(channels, channels * width)
        nn.init.zeros_(self.guide.weight)
        nn.init.zeros_(self.guide.bias)
        self.plane_mixing = plane_mixing
        if plane_mixing:  # encoder scales 1..levels, then the decoder's levels-1..1
            scales = [*range(1, levels + 1), *reversed(range(1, levels))]
            self.mix = nn.ModuleList(PlaneMix(channels, width * 2**k) for k in scales)
        m = torch.tensor(OPPONENT)
        self.register_buffer("to_opponent", m.view(3, 3, 1, 1), persistent=False)
        self.register_buffer("opponent_offset", torch.tensor(OPPONENT_OFFSET), persistent=False)
        self.register_buffer("from_opponent", torch.linalg.inv(m), persistent=False)
        self.register_buffer("plane_gain", m.norm(dim=1).view(1, 3, 1, 1), persistent=False)

    @property
    def size_multiple(self) -> int:
        """Tile origins aligned to this many pixels keep tiled output equal to whole-image output."""
        return self.net.size_multiple

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained gray ``unet_dae`` (as wide or narrower, with or without a
        noise-level input: :meth:`UNetDAE.adopt`; the guide stays zero), or from an
        ``opponent_unet_dae`` of the same width without the noise profile or the plane mixing
        (the profile planes get zero weights and the mixing convs stay zero, so it begins
        computing exactly what that model did)."""
        if model == "opponent_unet_dae":
            if any(k.startswith("mix.") for k in state) and not self.plane_mixing:
                raise ValueError("opponent_unet_dae without plane_mixing cannot start from one with it (its mixing would be dropped)")
            self.net.adopt("unet_dae", {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
            guide = {k.removeprefix("guide."): v for k, v in state.items() if k.startswith("guide.")}
            if guide.get("weight") is None or guide["weight"].shape != self.guide.weight.shape:
                raise ValueError(f"opponent_unet_dae cannot start from this {model}: its guide is not width {self.width}'s")
            self.guide.load_state_dict(guide)
            return
        if model != "unet_dae":
            raise ValueError(f"opponent_unet_dae starts from a gray unet_dae or an opponent_unet_dae, not a {model}")
        self.net.adopt(model, state)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x, skip_0, ..., latent]``: ``x`` as given (N, C', H, W), the rest per opponent
        plane (N*3, ...)."""
        b, _, h, w = x.shape
        opp = F.conv2d(x[:, :3], self.to_opponent, self.opponent_offset)
        planes = opp.reshape(b * 3, 1, h, w)
        if self.noise_level_input:
            cond = [(x[:, 3:4] * self.plane_gain).reshape(b * 3, 1, h, w)]
            if self.noise_profile:  # (b, 6) planes ordered per opponent plane, then scale
                cond.append(x[:, 4 : 4 + PROFILE_SIZE].reshape(b * 3, PROFILE_SCALES, h, w))
            planes = torch.cat([planes, *cond], dim=1)
        guide = self.guide(opp).reshape(b * 3, self.width, h, w)
        top = F.relu(self.net.head[0](planes) + guide)
        if not self.plane_mixing:
            return [x, *self.net.descend(top)]
        feats = [top]
        for k, down in enumerate(self.net.downs, start=1):
            f = down(feats[-1])
            feats.append(self.mix[k - 1](self.net.bottleneck(f) if k == self.levels else f))
        return [x, *feats]

    def _ascend(self, skips: list[torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        """The full-resolution features the noise head reads (:meth:`ResidualUNet.ascend`, mixed
        after each decoder stage but the last with ``plane_mixing``)."""
        if not self.plane_mixing:
            return self.net.ascend(skips, latent)
        h = latent
        for j, (up, skip) in enumerate(zip(self.net.ups, reversed(skips))):
            h = up(h, skip)
            if j < self.levels - 1:  # not at full resolution
                h = self.mix[self.levels + j](h)
        return h

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The clean RGB estimate (N, 3, H, W): ``x`` minus the inverse-mapped plane noise."""
        x, h = codes[0], self._ascend(codes[1:-1], codes[-1])
        b, _, hh, ww = x.shape
        noise = self.net.tail(h).reshape(b, 3, hh, ww)  # each opponent plane's predicted noise
        return x[:, :3] - F.conv2d(noise, self.from_opponent.view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
