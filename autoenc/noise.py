"""Image and audio noise synthesis: pure functions with an explicit generator, by name.

Image functions take a clean tensor ``x`` of shape (C, H, W) on the 0..1 scale; audio ones a
waveform (C, T) in -1..1. Each takes a ``torch.Generator`` and returns a new tensor; nothing
reads the global RNG, so a noisy pair is reproduced exactly from its seed
(see :func:`pair_generator`).
"""

from __future__ import annotations

import hashlib
import io
import math
from typing import Callable

import numpy as np
import torch
from PIL import Image

from autoenc.augment import change_speed, draw_speed, random_eq, speed_source_length
from autoenc.config import BabbleNoise, NoiseConfig

NoiseFn = Callable[..., torch.Tensor]
NOISES: dict[str, NoiseFn] = {}


def _registrar(table: dict[str, NoiseFn]) -> Callable[[str], Callable[[NoiseFn], NoiseFn]]:
    """A ``@register(name)`` decorator that adds functions to ``table``."""

    def register(name: str) -> Callable[[NoiseFn], NoiseFn]:
        def deco(fn: NoiseFn) -> NoiseFn:
            table[name] = fn
            return fn

        return deco

    return register


register_noise = _registrar(NOISES)


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


def log_uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    """Draw one float log-uniformly from [lo, hi] (lo > 0): every stop equally likely."""
    return math.exp(uniform(math.log(lo), math.log(hi), generator))


@register_noise("camera")
def camera(
    x: torch.Tensor,
    *,
    iso: tuple[float, float],
    gain: tuple[float, float],
    makers: list[str],
    exclude_makers: list[str],
    profiles: str | None,
    demosaic: list[str],
    saturation: tuple[float, float],
    tone: tuple[float, float],
    jpeg_quality: tuple[float, float] | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Real-camera noise (see :mod:`autoenc.camera`): a random camera profile at an ISO drawn
    log-uniformly from ``iso``, a random colour matrix, tone curve, Bayer phase and demosaic,
    then (unless ``jpeg_quality`` is None) JPEG 4:2:0 at a drawn quality."""
    from autoenc import camera as cam

    table = cam.load_profiles(str(profiles or cam.profiles_path()), tuple(makers), tuple(exclude_makers))
    profile = cam.pick_profile(table, log_uniform(*iso, generator), generator)
    y = cam.camera_noise(
        x,
        profile=profile,
        gain=log_uniform(*gain, generator),
        ccm=cam.random_ccm(generator, uniform(*saturation, generator)),
        tone_strength=uniform(*tone, generator),
        demosaic_method=demosaic[int(torch.randint(0, len(demosaic), (), generator=generator))],
        phase=int(torch.randint(0, 4, (), generator=generator)),
        generator=generator,
    ).clamp(0, 1)
    if jpeg_quality is not None:
        y = jpeg(y, quality=uniform(*jpeg_quality, generator), generator=generator)
    return y


RANGE_FIELDS = ("sigma", "peak", "amount", "quality", "snr_db", "level", "gain_db")


def _draw_params(spec, generator: torch.Generator) -> dict[str, float]:
    """Draw each range-valued parameter of ``spec`` uniformly; pass others through."""
    params: dict[str, float] = {}
    for key, value in spec.model_dump(exclude={"name", "weight"}).items():
        if key in RANGE_FIELDS:
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


# --- audio -----------------------------------------------------------------------------------
# Audio functions take a clean waveform ``x`` of shape (C, T) in -1..1 and the context
# ``sample_rate`` (Hz) and ``banks`` (name -> list of 1-D waveforms at that rate), plus drawn
# parameters; additive noises are mixed at the drawn SNR with torchaudio.functional.add_noise.

AUDIO_NOISES: dict[str, NoiseFn] = {}
register_audio_noise = _registrar(AUDIO_NOISES)


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``x + a * noise`` with ``a`` chosen so that 10 log10(|x|^2 / |a noise|^2) = snr_db
    per channel (a silent ``x`` stays silent; a silent ``noise`` adds nothing)."""
    import torchaudio.functional as AF

    if not bool((noise.pow(2).sum(-1) > 0).all()):
        return x.clone()
    snr = torch.full(x.shape[:-1], float(snr_db), dtype=x.dtype)
    return AF.add_noise(x, noise.to(x.dtype), snr)


def _coloured(shape: tuple[int, ...], exponent: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    white = torch.randn(shape, generator=generator)
    if exponent == 0:
        return white
    spec = torch.fft.rfft(white, dim=-1)
    f = torch.arange(spec.shape[-1], dtype=torch.float32)
    f[0] = 1.0  # no DC boost
    spec = spec / f ** (exponent / 2)
    out = torch.fft.irfft(spec, n=shape[-1], dim=-1)
    return out / out.std().clamp(min=1e-12)


@register_audio_noise("white")
def white(x: torch.Tensor, *, snr_db: float, generator: torch.Generator, **ctx) -> torch.Tensor:
    """White gaussian noise at ``snr_db``."""
    return mix_at_snr(x, _coloured(x.shape, 0, generator), snr_db)


@register_audio_noise("pink")
def pink(x: torch.Tensor, *, snr_db: float, generator: torch.Generator, **ctx) -> torch.Tensor:
    """Pink (1/f) noise at ``snr_db``."""
    return mix_at_snr(x, _coloured(x.shape, 1, generator), snr_db)


@register_audio_noise("brown")
def brown(x: torch.Tensor, *, snr_db: float, generator: torch.Generator, **ctx) -> torch.Tensor:
    """Brown (1/f^2) noise at ``snr_db``."""
    return mix_at_snr(x, _coloured(x.shape, 2, generator), snr_db)


@register_audio_noise("hum")
def hum(x: torch.Tensor, *, snr_db: float, mains_hz: list[float], harmonics: int, generator: torch.Generator, sample_rate: int, **ctx) -> torch.Tensor:
    """Mains hum: partials at k * f0 (f0 picked from ``mains_hz``), amplitude 1/k, random phases."""
    f0 = float(mains_hz[int(torch.randint(0, len(mains_hz), (), generator=generator))])
    t = torch.arange(x.shape[-1], dtype=torch.float64) / sample_rate
    phases = 2 * torch.pi * torch.rand(harmonics, generator=generator, dtype=torch.float64)
    n = sum(torch.sin(2 * torch.pi * k * f0 * t + phases[k - 1]) / k for k in range(1, harmonics + 1) if k * f0 < sample_rate / 2)
    return mix_at_snr(x, n.to(x.dtype).expand_as(x), snr_db)


def _excerpt(bank: list[torch.Tensor], length: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``length``-sample excerpt of a random bank entry (looped if shorter); up to
    8 draws avoid a silent excerpt (recorded effects have gaps)."""
    if not bank:
        raise ValueError("noise bank is empty")
    for _ in range(8):
        src = bank[int(torch.randint(0, len(bank), (), generator=generator))]
        if src.shape[-1] < length:
            src = src.repeat(length // src.shape[-1] + 1)
        start = int(torch.randint(0, src.shape[-1] - length + 1, (), generator=generator))
        out = src[start : start + length]
        if out.abs().max() > 1e-4:
            break
    return out


@register_audio_noise("music")
def music(x: torch.Tensor, *, snr_db: float, generator: torch.Generator, banks: dict, **ctx) -> torch.Tensor:
    """A real background recording (``banks['music']``) mixed in at ``snr_db``."""
    return mix_at_snr(x, _excerpt(banks["music"], x.shape[-1], generator).expand_as(x), snr_db)


@register_audio_noise("effects")
def effects(x: torch.Tensor, *, snr_db: float, generator: torch.Generator, banks: dict, **ctx) -> torch.Tensor:
    """A recorded sound effect (``banks['effects']``, looped to length) mixed in at ``snr_db``."""
    return mix_at_snr(x, _excerpt(banks["effects"], x.shape[-1], generator).expand_as(x), snr_db)


@register_audio_noise("crackle")
def crackle(x: torch.Tensor, *, snr_db: float, clicks_per_s: tuple[float, float], generator: torch.Generator, sample_rate: int, **ctx) -> torch.Tensor:
    """An old recording's noise at ``snr_db``: clicks (impulses with random sign, heavy-tailed
    size and a ~0.1-1 ms decay), pink hiss and a low rumble, in random proportions."""
    t = x.shape[-1]
    hits = torch.rand(t, generator=generator) < log_uniform(*clicks_per_s, generator) / sample_rate
    size = torch.rand(t, generator=generator).clamp(min=1e-3) ** -1.5 * torch.sign(torch.randn(t, generator=generator))
    decay = uniform(0.1, 1.0, generator) * 1e-3 * sample_rate
    kernel = torch.exp(-torch.arange(int(5 * decay) + 1, dtype=torch.float32) / decay)
    clicks = torch.nn.functional.conv1d((hits * size).float()[None, None], kernel.flip(0)[None, None], padding=len(kernel) - 1)[0, 0, :t]
    parts = [clicks / clicks.std().clamp(min=1e-9), _coloured((t,), 1, generator), _coloured((t,), 2.5, generator)]
    w = torch.rand(3, generator=generator) + 0.1
    n = sum(wi * p for wi, p in zip(w, parts))
    return mix_at_snr(x, n.to(x.dtype).expand_as(x), snr_db)


@register_audio_noise("babble")
def babble(x: torch.Tensor, *, snr_db: float, talkers: tuple[int, int], generator: torch.Generator, banks: dict, sample_rate: int,
           talker_speed: tuple[float, float] = BabbleNoise.model_fields["talker_speed"].default,
           talker_eq_db: float = BabbleNoise.model_fields["talker_eq_db"].default, **ctx) -> torch.Tensor:
    """Babble: the sum of ``talkers`` other utterances (``banks['speech']``) at ``snr_db``,
    each at its own speed drawn from ``talker_speed`` and through its own random EQ of up to
    ``talker_eq_db`` dB (:mod:`autoenc.augment`; at the defaults nothing is drawn for them)."""
    k = int(torch.randint(talkers[0], talkers[1] + 1, (), generator=generator))
    length, n = x.shape[-1], None
    for _ in range(k):
        speed = draw_speed(*talker_speed, generator)
        voice = change_speed(_excerpt(banks["speech"], speed_source_length(length, speed), generator), speed, length)
        voice = random_eq(voice, talker_eq_db, sample_rate, generator)
        n = voice if n is None else n + voice
    return mix_at_snr(x, (n if n is not None else torch.zeros_like(x)).expand_as(x), snr_db)


@register_audio_noise("clipping")
def clipping(x: torch.Tensor, *, level: float, generator: torch.Generator, **ctx) -> torch.Tensor:
    """Hard clipping at ``level`` times the peak amplitude."""
    peak = x.abs().max().clamp(min=1e-8)
    return x.clamp(-level * peak, level * peak)


@register_audio_noise("gain")
def gain(x: torch.Tensor, *, gain_db: float, generator: torch.Generator, **ctx) -> torch.Tensor:
    """A level change of ``gain_db`` dB (put it in ``then`` to vary the level of the mixture;
    bias-free audio models are gain-invariant, so it matters only with clipping/quantisation)."""
    return x * 10 ** (gain_db / 20)


def synthesize_audio(x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator, *, sample_rate: int, banks: dict[str, list[torch.Tensor]]) -> tuple[torch.Tensor, list[dict]]:
    """Audio counterpart of :func:`synthesize`: one mixture member, then the ``then`` chain,
    then clipping to -1..1 and quantisation to ``quantize_bits`` PCM."""
    weights = torch.tensor([s.weight for s in cfg.mixture], dtype=torch.float64)
    pick = int(torch.multinomial(weights, 1, generator=generator).item())
    y, applied = x, []
    for spec in [cfg.mixture[pick], *cfg.then]:
        params = _draw_params(spec, generator)
        y = AUDIO_NOISES[spec.name](y, generator=generator, sample_rate=sample_rate, banks=banks, **params)
        applied.append({"name": spec.name, **params})
    if cfg.clip:
        y = y.clamp(-1.0, 1.0)
    if cfg.quantize_bits:
        levels = 2 ** (cfg.quantize_bits - 1)
        y = (y * levels).round() / levels
    return y, applied
