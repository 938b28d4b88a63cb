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
        noise_level_input: the input carries one more plane after the image's, filled with the
            noise level (0..1 scale) that :func:`autoenc.runtime.noise_level.estimate_sigma`
            gives, times the user's strength (FFDNet-style conditioning, fed by an estimator
            so the model stays blind to users); the output has ``channels`` planes.
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 2, bottleneck_blocks: int = 1, noise_level_input: bool = False) -> None:
        super().__init__()
        self.channels, self.width, self.levels = channels, width, levels
        self.noise_level_input = noise_level_input
        self.in_channels = channels + int(noise_level_input)
        widths = [width * 2**i for i in range(levels + 1)]
        self.head = nn.Sequential(_conv(self.in_channels, width), nn.ReLU(inplace=True))
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(levels))
        self.bottleneck = nn.Sequential(
            *[m for _ in range(bottleneck_blocks) for m in (_conv(widths[-1], widths[-1]), nn.ReLU(inplace=True))]
        )
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i]) for i in reversed(range(levels)))
        self.tail = _conv(width, channels)
        # Zero-initialised noise head: an untrained model is the identity, never worse than input.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    WIDEN_NOISE = 1e-3  # widening (adopt): noise on the copied weights, relative to each layer's weight std

    @property
    def size_multiple(self) -> int:
        """Tile origins aligned to this many pixels keep tiled output equal to whole-image output."""
        return 2**self.levels

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained ``unet_dae`` of the same channels, levels and bottleneck that is
        as wide or narrower, with or without a noise-level input, so the model begins computing
        exactly what the old one did:

        - missing conditioning planes (a noise-level plane, or an opponent model's noise
          profile: ``in_channels`` beyond the old model's) get zero input weights;
        - wider (Net2Net, Chen et al. 2016): each new feature map copies an old one (the first
          ones in order, the rest drawn), every conv reading a copied map divides its weights
          by the number of copies, and a little noise (1e-3 of each layer's weight scale, seeded)
          lets the copies grow apart in training.
        """
        head = "head.0.weight"
        if model != "unet_dae" or head not in state:
            raise ValueError(f"unet_dae cannot start from a {model} checkpoint")
        old_width, old_in = state[head].shape[0], state[head].shape[1]
        blocks = sum(isinstance(m, nn.Conv2d) for m in self.bottleneck)
        like = UNetDAE(self.channels, old_width, self.levels, blocks, noise_level_input=old_in > self.channels).state_dict()
        odd = [k for k in like if k not in state or state[k].shape != like[k].shape] + sorted(set(state) - set(like))
        if odd or old_width > self.width or not self.channels <= old_in <= self.in_channels:
            raise ValueError(f"unet_dae cannot start from this {model}: it lacks or reshapes {odd[:4]} (width {old_width}, {old_in} input planes; this one: width {self.width}, {self.in_channels} planes, {self.levels} levels, {blocks} bottleneck convs)")
        gen = torch.Generator().manual_seed(0)
        maps: dict = {}
        for k in range(self.levels + 1):
            new, old = self.width * 2**k, old_width * 2**k
            idx = torch.cat([torch.arange(old), torch.randint(0, old, (new - old,), generator=gen)])
            maps[k] = (idx, torch.bincount(idx, minlength=old).float())
            maps["cat", k] = (torch.cat([idx, idx + old]), torch.cat([maps[k][1], maps[k][1]]))
        maps["in"] = (torch.arange(old_in), torch.ones(old_in))
        maps["out"] = (torch.arange(self.channels), torch.ones(self.channels))
        taken = {}
        for name, (src, dst) in self._conv_spaces().items():
            (gi, ci), (go, _) = maps[src], maps[dst]
            w = state[name + ".weight"][go][:, gi] / ci[gi].view(1, -1, 1, 1)
            if old_width < self.width:
                w = w + self.WIDEN_NOISE * state[name + ".weight"].std() * torch.randn(w.shape, generator=gen)
            if src == "in" and w.shape[1] < self.in_channels:  # conditioning planes it lacked: no say yet
                w = torch.cat([w, w.new_zeros(w.shape[0], self.in_channels - w.shape[1], *w.shape[2:])], dim=1)
            taken[name + ".weight"], taken[name + ".bias"] = w, state[name + ".bias"][go]
        self.load_state_dict(taken)

    def _conv_spaces(self) -> dict[str, tuple]:
        """Each conv's (input, output) feature space: a level k, ("cat", k) for [upsampled, skip]
        at level k, "in" for the input planes, "out" for the predicted noise."""
        top = self.levels
        out = {"head.0": ("in", 0), "tail": (0, "out")}
        for i in range(self.levels):
            out[f"downs.{i}.body.0"], out[f"downs.{i}.body.2"] = (i, i + 1), (i + 1, i + 1)
        for j in range(self.levels):
            lvl = self.levels - 1 - j  # ups run from the coarsest level
            out[f"ups.{j}.up"], out[f"ups.{j}.body.0"], out[f"ups.{j}.body.2"] = (lvl + 1, lvl), (("cat", lvl), lvl), (lvl, lvl)
        for name, m in self.bottleneck.named_children():
            if isinstance(m, nn.Conv2d):
                out[f"bottleneck.{name}"] = (top, top)
        return out


@register_model("plane_unet_dae", modality="image")
class PlaneUNetDAE(nn.Module):
    """Colour denoiser built from a gray ``unet_dae``: the same U-Net denoises each plane (as a
    batch of gray images), and a zero-initialised *guide* conv lets each plane also see all
    the noisy channels (ordered: itself, the next, the one after), so the net can use the
    correlation between colour channels the way CBM3D does through luminance.

    With the guide at zero it is exactly the gray model applied per plane, so it can start
    from a trained gray checkpoint (``train.init_from``) and be fine-tuned on colour photos.
    The latent is per plane: ``encode`` returns ``[x, skips..., latent]`` with planes in the
    batch dimension (N*C, ...).

    Args:
        channels: image channels (3 for RGB; 1 works and is a gray U-Net with a guide).
        width, levels, bottleneck_blocks: of the shared gray U-Net (see ``unet_dae``).
    """

    def __init__(self, channels: int = 3, width: int = 16, levels: int = 3, bottleneck_blocks: int = 2) -> None:
        super().__init__()
        self.channels, self.width, self.levels = channels, width, levels
        self.net = UNetDAE(1, width, levels, bottleneck_blocks)
        self.guide = _conv(channels, width)
        nn.init.zeros_(self.guide.weight)
        nn.init.zeros_(self.guide.bias)

    @property
    def size_multiple(self) -> int:
        """Tile origins aligned to this many pixels keep tiled output equal to whole-image output."""
        return self.net.size_multiple

    def adopt(self, model: str, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained gray ``unet_dae`` checkpoint's weights (the guide stays zero)."""
        own = self.net.state_dict()
        odd = [k for k in own if k not in state or state[k].shape != own[k].shape] + sorted(set(state) - set(own))
        if model != "unet_dae" or odd:
            raise ValueError(f"plane_unet_dae can start from a gray unet_dae of its size, not this {model} (it lacks, reshapes or adds {odd[:4]})")
        self.net.load_state_dict(state)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x, skip_0, ..., latent]``: ``x`` as given (N, C, H, W), the rest per plane (N*C, ...)."""
        b, c, h, w = x.shape
        planes = x.reshape(b * c, 1, h, w)
        # Plane i of image n sees channels (i, i+1, ...) mod C of image n.
        order = torch.stack([torch.roll(x, -i, dims=1) for i in range(c)], dim=1).reshape(b * c, c, h, w)
        return [x, *self.net.descend(F.relu(self.net.head[0](planes) + self.guide(order)))]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The clean estimate (N, C, H, W): each plane minus its predicted noise."""
        x = codes[0]
        b, c, h, w = x.shape
        return self.net.decode([x.reshape(b * c, 1, h, w), *codes[1:]]).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
