"""A simulated camera: what a phone or camera does to sensor noise before a user sees a JPEG.

Following Brooks et al. 2019 ("Unprocessing images for learned raw denoising"): an sRGB photo
is *unprocessed* to the camera's linear, white-balanced colour space (inverse tone curve,
inverse sRGB gamma, inverse colour matrix), sampled on a Bayer mosaic, given Poisson-Gaussian
sensor noise from a **measured** profile (variance ``a * y + b`` per colour channel, ``y`` the
linear value with white at 1, as darktable measures it, after white balance), then
*processed* again: demosaic, colour matrix, sRGB gamma, tone curve.

The noise is what separates the processed noisy mosaic from the processed noiseless one, and
it is added to the photo itself, so the clean target is the photo exactly (no demosaic blur of
the content): ``noisy = x + P(raw + n) - P(raw)``. It is correlated over 2-3 px by the
demosaic, mixed between channels by the colour matrix, strongest in the shadows by the gamma,
and truncated at black like a real sensor's. JPEG (4:2:0) is applied afterwards by the caller.

Noise profiles: darktable's ``noiseprofiles.json`` (GPL-3, Debian ``darktable``), read at
training time and never shipped; :func:`profiles_path` finds it installed or extracted by
``make data``. All functions are pure and take an explicit ``torch.Generator``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DARKTABLE_PROFILES = Path("usr/share/darktable/noiseprofiles.json")  # inside the darktable package
DEMOSAICS = ("bilinear", "mhc")


@dataclass(frozen=True)
class NoiseProfile:
    """One camera at one ISO: noise variance ``a[c] * y + b[c]`` per channel (R, G, B)."""

    maker: str
    model: str
    iso: int
    a: tuple[float, float, float]
    b: tuple[float, float, float]


def profiles_path() -> Path:
    """darktable's noise profiles: installed (``/usr/...``) or extracted by ``make data``
    (``$AUTOENC_CACHE/debian/darktable/usr/...``). FileNotFoundError says how to get them."""
    cache = Path(os.environ.get("AUTOENC_CACHE", Path.home() / ".cache" / "autoenc"))
    for root in (Path("/"), cache / "debian" / "darktable"):
        if (root / DARKTABLE_PROFILES).is_file():
            return root / DARKTABLE_PROFILES
    raise FileNotFoundError(
        "camera noise needs darktable's measured noise profiles (/usr/share/darktable/noiseprofiles.json): "
        "run `make data` (extracts them from Debian's darktable package) or apt-get install darktable, "
        "or set the camera noise's `profiles` path"
    )


@functools.lru_cache(maxsize=4)
def load_profiles(path: str, makers: tuple[str, ...] = (), exclude_makers: tuple[str, ...] = ()) -> tuple[NoiseProfile, ...]:
    """Every (camera, ISO) profile in darktable's JSON, filtered by maker (case-insensitive)."""
    tree = json.loads(Path(path).read_text())
    keep = {m.lower() for m in makers}
    drop = {m.lower() for m in exclude_makers}
    out = []
    for maker in tree["noiseprofiles"]:
        name = maker["maker"]
        if (keep and name.lower() not in keep) or name.lower() in drop:
            continue
        for model in maker["models"]:
            for p in model["profiles"]:
                if len(p["a"]) == 3 and len(p["b"]) == 3 and p["iso"] > 0:
                    out.append(NoiseProfile(name, model["model"], int(p["iso"]), tuple(p["a"]), tuple(p["b"])))
    if not out:
        raise ValueError(f"{path}: no noise profile left after makers={list(makers)} exclude_makers={list(exclude_makers)}")
    return tuple(out)


def pick_profile(profiles: tuple[NoiseProfile, ...], iso: float, generator: torch.Generator) -> NoiseProfile:
    """A random camera, at its measured ISO nearest (in stops) to ``iso``."""
    cameras = sorted({(p.maker, p.model) for p in profiles})
    cam = cameras[int(torch.randint(0, len(cameras), (), generator=generator))]
    own = [p for p in profiles if (p.maker, p.model) == cam]
    return min(own, key=lambda p: (abs(math.log2(p.iso / iso)), p.iso))


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer curve (0..1 -> linear 0..1)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer curve; values are clipped to 0..1 first (a sensor clips at black and white)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def tone(x: torch.Tensor, strength: float) -> torch.Tensor:
    """A global S-curve: ``(1 - s) x + s * smoothstep(x)`` (s = 0 is the identity)."""
    return (1 - strength) * x + strength * (3 * x**2 - 2 * x**3)


def inverse_tone(y: torch.Tensor, strength: float, iterations: int = 30) -> torch.Tensor:
    """Inverse of :func:`tone` by bisection (it is monotonic on 0..1 for strength <= 1)."""
    lo, hi = torch.zeros_like(y), torch.ones_like(y)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = tone(mid, strength) < y
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def random_ccm(generator: torch.Generator, saturation: float = 0.8) -> torch.Tensor:
    """A camera-to-sRGB colour matrix like those in dcraw's tables: rows sum to 1 (white stays
    white), negative off-diagonals of up to ``saturation``, so the diagonal is 1..1 + 2 * saturation."""
    off = -saturation * torch.rand(3, 3, generator=generator, dtype=torch.float64)
    off.fill_diagonal_(0)
    return (torch.eye(3, dtype=torch.float64) - off.sum(1).diag() + off).float()


def bayer_masks(h: int, w: int, phase: int) -> torch.Tensor:
    """(3, H, W) 0/1 masks of an RGGB mosaic shifted by ``phase`` (0..3: RGGB, GRBG, GBRG, BGGR)."""
    dy, dx = divmod(phase, 2)
    yy = (torch.arange(h)[:, None] + dy) % 2
    xx = (torch.arange(w)[None, :] + dx) % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    return torch.stack([r, ~(r | b), b]).float()


_BILINEAR_G = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=torch.float32) / 4
_BILINEAR_RB = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32) / 4
# Malvar, He & Cutler 2004: gradient-corrected linear interpolation (what many cameras beat
# only slightly); kernels in eighths.
_MHC = {
    "g_at_rb": [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    "rb_at_g_row": [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    "rb_at_br": [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
}


def _conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Same-size 2-D convolution of (N, H, W) with reflect padding."""
    p = k.shape[-1] // 2
    return F.conv2d(F.pad(x[:, None], (p, p, p, p), mode="reflect"), k[None, None])[:, 0]


def demosaic(mosaic: torch.Tensor, masks: torch.Tensor, method: str) -> torch.Tensor:
    """Full RGB (3, H, W) from a single-plane mosaic (H, W) and its :func:`bayer_masks`."""
    if method == "bilinear":
        planes = mosaic[None] * masks
        g = _conv(planes[1:2], _BILINEAR_G)[0]
        rb = _conv(planes[0::2], _BILINEAR_RB)
        return torch.stack([rb[0], g, rb[1]])
    if method != "mhc":
        raise ValueError(f"unknown demosaic {method!r}; known: {DEMOSAICS}")
    k = {name: torch.tensor(v, dtype=torch.float32) / 8 for name, v in _MHC.items()}
    m = mosaic[None]
    g_at = _conv(m, k["g_at_rb"])[0]
    along = _conv(m, k["rb_at_g_row"])[0]  # R (B) at a green site whose row holds R (B)
    across = _conv(m, k["rb_at_g_row"].T.contiguous())[0]  # ... whose column holds it
    diag = _conv(m, k["rb_at_br"])[0]  # R at B sites and B at R sites
    r_mask, g_mask, b_mask = masks
    h, w = mosaic.shape
    # Which green sites share a row with red: rows that contain any red site.
    red_rows = (r_mask.sum(1, keepdim=True) > 0).float().expand(h, w)
    r = r_mask * mosaic + b_mask * diag + g_mask * (red_rows * along + (1 - red_rows) * across)
    b = b_mask * mosaic + r_mask * diag + g_mask * ((1 - red_rows) * along + red_rows * across)
    g = g_mask * mosaic + (1 - g_mask) * g_at
    return torch.stack([r, g, b])


def camera_noise(
    x: torch.Tensor,
    *,
    profile: NoiseProfile,
    gain: float,
    ccm: torch.Tensor,
    tone_strength: float,
    demosaic_method: str,
    phase: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``x`` (3, H, W, sRGB 0..1) with the noise of ``profile`` through a simulated camera.

    ``gain``: digital gain after the sensor (an underexposed shot brightened, as phones do at
    night): the sensor sees ``y / gain``, so relative noise grows by about sqrt(gain) (shot)
    to gain (read). Returns ``x + P(raw + n) - P(raw)`` on the 0..1 scale, not yet clipped.
    """
    if x.shape[0] != 3:
        raise ValueError(f"camera noise needs RGB input (3 channels), got {x.shape[0]}")
    h, w = x.shape[1:]
    linear = srgb_to_linear(inverse_tone(x.clamp(0, 1), tone_strength))
    cam = torch.linalg.solve(ccm, linear.reshape(3, -1)).reshape(3, h, w)  # sRGB-linear -> camera RGB
    masks = bayer_masks(h, w, phase)
    raw = (cam * masks).sum(0) / gain  # what the sensor records, white balanced
    a = (masks * torch.tensor(profile.a)[:, None, None]).sum(0)
    b = (masks * torch.tensor(profile.b)[:, None, None]).sum(0)
    var = (a * raw.clamp(min=0) + b).clamp(min=1e-10)
    noisy_raw = (raw + var.sqrt() * torch.randn(raw.shape, generator=generator)).clamp(min=0)  # clipped at black

    def process(r: torch.Tensor) -> torch.Tensor:
        rgb = demosaic(r * gain, masks, demosaic_method)
        return tone(linear_to_srgb((ccm @ rgb.reshape(3, -1)).reshape(3, h, w)), tone_strength)

    return x + process(noisy_raw) - process(raw.clamp(min=0))
