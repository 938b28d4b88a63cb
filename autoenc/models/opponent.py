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
- the output ``x - noise``, where the RGB noise is the inverse map (a fixed 1x1 conv) of the
  three planes' predicted noise; int8 keeps both convs of that head in fp32.

With the guide at zero it is exactly the gray model run on Y, C1 and C2, so it starts from a
trained gray ``unet_dae`` (``train.init_from``; narrower ones are widened) and is fine-tuned on
colour photos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.image import UNetDAE, _conv
from autoenc.models.registry import register_model
from autoenc.runtime.noise_level import PROFILE_SCALES, PROFILE_SIZE
from autoenc.runtime.opponent import OPPONENT, OPPONENT_OFFSET


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
    """

    def __init__(self, channels: int = 3, width: int = 16, levels: int = 2, bottleneck_blocks: int = 1, noise_level_input: bool = False, noise_profile: bool = False) -> None:
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
        ``opponent_unet_dae`` of the same width without the noise profile (the profile planes
        get zero weights, so it begins computing exactly what that model did)."""
        if model == "opponent_unet_dae":
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
        return [x, *self.net.descend(F.relu(self.net.head[0](planes) + guide))]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The clean RGB estimate (N, 3, H, W): ``x`` minus the inverse-mapped plane noise."""
        x, h = codes[0], self.net.ascend(codes[1:-1], codes[-1])
        b, _, hh, ww = x.shape
        noise = self.net.tail(h).reshape(b, 3, hh, ww)  # each opponent plane's predicted noise
        return x[:, :3] - F.conv2d(noise, self.from_opponent.view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
