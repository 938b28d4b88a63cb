"""Clean-speech augmentation that multiplies voices: speed perturbation (tempo and pitch
together, as in Kaldi's 3-way speed perturbation) and random equalisation. Pure functions of
a clean segment and a ``torch.Generator``, like the noise synthesis they precede."""

from __future__ import annotations

import math

import torch

from autoenc.config import SPEED_STEP

EQ_BANDS = 3  # peaking filters per segment
EQ_HZ = (80.0, 6000.0)  # their centres, drawn log-uniformly (Hz)
EQ_Q = (0.5, 2.0)


def speed_source_length(n: int, speed: float) -> int:
    """Samples of source audio that become ``n`` samples at ``speed`` (``n`` at speed 1; else
    16 more, for the resampling filter's edge)."""
    return n if speed == 1.0 else int(math.ceil(n * speed)) + 16


def draw_speed(lo: float, hi: float, generator: torch.Generator) -> float:
    """A speed drawn uniformly from ``[lo, hi]`` on the :data:`SPEED_STEP` grid."""
    if hi <= lo:
        return lo
    steps = round((hi - lo) / SPEED_STEP)
    return lo + SPEED_STEP * int(torch.randint(0, steps + 1, (), generator=generator))


def change_speed(x: torch.Tensor, speed: float, n: int) -> torch.Tensor:
    """``x`` (..., T) played ``speed`` times faster, first ``n`` samples (band-limited resampling;
    ``speed`` is a multiple of :data:`SPEED_STEP`, as :func:`draw_speed` and the configs give it)."""
    import torchaudio.functional as AF

    if abs(speed - 1.0) < 1e-9:
        return x[..., :n]
    a, b = round(speed / SPEED_STEP), round(1 / SPEED_STEP)
    g = math.gcd(a, b)
    return AF.resample(x, a // g, b // g)[..., :n]


def random_eq(x: torch.Tensor, max_db: float, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` through :data:`EQ_BANDS` peaking biquads with gains uniform in +-``max_db`` dB,
    centres log-uniform in :data:`EQ_HZ`, Q uniform in :data:`EQ_Q`."""
    import torchaudio.functional as AF

    if max_db <= 0:
        return x
    y = x
    for _ in range(EQ_BANDS):
        u = torch.rand(3, generator=generator).tolist()
        centre = EQ_HZ[0] * (EQ_HZ[1] / EQ_HZ[0]) ** u[0]
        y = AF.equalizer_biquad(y, sample_rate, centre, (2 * u[1] - 1) * max_db, EQ_Q[0] + (EQ_Q[1] - EQ_Q[0]) * u[2])
    return y
