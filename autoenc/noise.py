"""Image noise synthesis: pure functions with an explicit generator, collected by name.

Every function takes a clean image tensor ``x`` of shape (C, H, W) on the 0..1 scale and a
``torch.Generator`` and returns a new tensor; nothing reads the global RNG, so a noisy pair is
reproduced exactly from its seed (see :func:`pair_generator`).
"""

from __future__ import annotations

import hashlib
import io
from typing import Callable

import numpy as np
import torch
from PIL import Image

from autoenc.config import NoiseConfig

NoiseFn = Callable[..., torch.Tensor]
NOISES: dict[str, NoiseFn] = {}


def register_noise(name: str) -> Callable[[NoiseFn], NoiseFn]:
    def deco(fn: NoiseFn) -> NoiseFn:
        NOISES[name] = fn
        return fn

    return deco


def pair_generator(seed: int, *keys: int | str) -> torch.Generator:
    """A generator seeded from (seed, epoch, index, ...): the address of one noisy pair."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    """Draw one float uniformly from [lo, hi] with ``generator``."""
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


@register_noise("gaussian")
def gaussian(x: torch.Tensor, *, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Additive white gaussian noise; ``sigma`` is the std on the 0..255 scale."""
    return x + (sigma / 255.0) * torch.randn(x.shape, generator=generator, dtype=x.dtype)


@register_noise("poisson")
def poisson(x: torch.Tensor, *, peak: float, generator: torch.Generator) -> torch.Tensor:
    """Shot noise: photon counts ~ Poisson(x * peak), rescaled; ``peak`` photons at white."""
    return torch.poisson(x.clamp(min=0) * peak, generator=generator) / peak


@register_noise("speckle")
def speckle(x: torch.Tensor, *, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative noise ``x * (1 + n)``, n ~ N(0, sigma^2) (0..1 scale)."""
    return x * (1 + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype))


@register_noise("salt_pepper")
def salt_pepper(
    x: torch.Tensor, *, amount: float, salt_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Impulse noise: a fraction ``amount`` of pixel positions become white or black."""
    u = torch.rand(x.shape[1:], generator=generator)
    salt = torch.rand(x.shape[1:], generator=generator) < salt_ratio
    hit = u < amount
    out = x.clone()
    out[:, hit & salt] = 1.0
    out[:, hit & ~salt] = 0.0
    return out


@register_noise("jpeg")
def jpeg(x: torch.Tensor, *, quality: float, generator: torch.Generator) -> torch.Tensor:
    """JPEG compression artefacts at ``quality`` (1..100); deterministic given quality."""
    del generator  # the codec is deterministic; kept for a uniform signature
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(round(quality)))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
    if out.ndim == 2:
        out = out[..., None]
    return torch.from_numpy(out.copy()).permute(2, 0, 1).to(x.dtype)


def _draw_params(spec, generator: torch.Generator) -> dict[str, float]:
    """Draw each range-valued parameter of ``spec`` uniformly; pass scalars through."""
    params: dict[str, float] = {}
    for key, value in spec.model_dump(exclude={"name", "weight"}).items():
        if isinstance(value, (tuple, list)):
            params[key] = uniform(float(value[0]), float(value[1]), generator)
        else:
            params[key] = value
    return params


def apply_spec(x: torch.Tensor, spec, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Apply one noise spec, drawing its parameters; returns (noisy, drawn parameters)."""
    params = _draw_params(spec, generator)
    return NOISES[spec.name](x, generator=generator, **params), {"name": spec.name, **params}


def synthesize(
    x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator
) -> tuple[torch.Tensor, list[dict]]:
    """Make the noisy version of ``x`` per ``cfg``: one mixture member, then the ``then`` chain,
    then clipping and quantisation like a saved file. Returns (noisy, what was applied)."""
    weights = torch.tensor([s.weight for s in cfg.mixture], dtype=torch.float64)
    pick = int(torch.multinomial(weights, 1, generator=generator).item())
    y, drawn = apply_spec(x, cfg.mixture[pick], generator)
    applied = [drawn]
    for spec in cfg.then:
        y, drawn = apply_spec(y, spec, generator)
        applied.append(drawn)
    if cfg.clip:
        y = y.clamp(0.0, 1.0)
    if cfg.quantize_bits:
        levels = 2**cfg.quantize_bits - 1
        y = (y * levels).round() / levels
    return y, applied
