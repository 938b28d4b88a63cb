"""How noisy an image is, estimated from the image alone (torch-free).

:func:`estimate_sigma` is the one noise-level estimator: inference reports it per file and
feeds it to models that take a noise-level input, and training computes the same number on
each noisy patch, so a model learns the estimator's habits (texture reads as a little noise;
spatially correlated camera noise reads low) instead of a true level users never have.

Method: the finest diagonal Haar detail ``(a - b - c + d) / 2`` of each 2x2 block has, for
white noise of standard deviation sigma, the same sigma and is nearly free of smooth image
content; its median absolute value / 0.6745 is a robust sigma (Donoho & Johnstone 1994, as in
scikit-image's ``estimate_sigma``). Planes are averaged. On 8-bit images the median is of half-level
steps, so the estimate is within about 0.4 levels of the true sigma.

:func:`noise_profile` says more for colour models built to take it (``noise_profile``): the same
estimate per luminance and chrominance plane at two scales, which tells blotchy camera noise
(strong at the coarse scale) from fine grain that the single number reads alike.

:func:`calibrated_level` is what a model is told for an estimate when its file carries a
level calibration (``level_calibration``, fitted on its validation pairs by
:mod:`autoenc.level_calibration`): the estimate times a gain that depends on the estimate, and
with knots by kind of noise also on the image's :func:`blotchiness` (white or camera-like).
Trained on estimates from small noisy patches (and on a mix of noises that read alike), a model
can do better on whole images when told a little less than the estimate at low levels.
"""

from __future__ import annotations

import numpy as np

from autoenc.runtime.opponent import to_opponent

MAD_TO_SIGMA = 0.6745  # median |x| of a standard normal
MAX_SAMPLES = 1 << 20  # diagonal details used per plane at most (whole 2x2 blocks of a strided grid on larger images)


def estimate_sigma(planes: np.ndarray, max_value: float = 1.0) -> float:
    """Noise standard deviation of an (H, W) or (H, W, K) image whose full scale is
    ``max_value``, on the 0..1 scale (multiply by 255 for 8-bit levels). One plane at a time
    and only the blocks used are converted to float (about 16 MB at most). Images under 2x2
    pixels give 0."""
    return float(np.mean(plane_sigmas(planes, max_value)))


def plane_sigmas(planes: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """:func:`estimate_sigma` of each plane of an (H, W) or (H, W, K) image: shape (K,)."""
    x = np.asarray(planes)
    x = x[..., None] if x.ndim == 2 else x
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return np.zeros(x.shape[2])
    step = 1
    while (h // (2 * step)) * (w // (2 * step)) > MAX_SAMPLES:  # every step-th row and column of blocks
        step += 1
    out = []
    for k in range(x.shape[2]):
        corner = lambda dy, dx: x[dy:h:2 * step, dx:w:2 * step, k].astype(np.float32)  # noqa: E731
        hh = (corner(0, 0) - corner(0, 1) - corner(1, 0) + corner(1, 1)) / 2
        out.append(float(np.median(np.abs(hh))) / MAD_TO_SIGMA / max_value)
    return np.array(out)


BLOTCHY_RATIO = (1.3, 1.8)  # blotchiness (coarse / fine luminance noise) at and below which noise reads as white, at and above which as blotchy


def calibrated_level(levels: float | np.ndarray, knots: list[list[float]] | dict[str, list[list[float]]] | None, blotchy: float | None = None) -> np.ndarray:
    """What a model is told for estimated ``levels`` (0..1 scale, any shape): each times the
    gain its ``level_calibration`` ``knots`` ([level, gain] pairs, levels ascending, 0..1
    scale) give at it, linear between knots and the end gains beyond; ``None`` or no knots:
    the levels unchanged.

    Knots by kind of noise, ``{"white": knots, "blotchy": knots}``, give the gain of the curve
    the image's ``blotchy`` (:func:`blotchiness`; None reads as white) picks: the white curve at
    or below ``BLOTCHY_RATIO[0]``, the blotchy one at or above ``BLOTCHY_RATIO[1]``, a linear
    blend between. One number cannot tell camera noise that demosaicing made blotchy (which the
    fine-scale estimate reads far too low) from white noise of the same reading."""
    lv = np.asarray(levels, np.float64)
    if not knots:
        return lv
    if isinstance(knots, dict):
        w = blotchy_weight(blotchy)
        return lv * ((1 - w) * _gain(lv, knots["white"]) + w * _gain(lv, knots["blotchy"]))
    return lv * _gain(lv, knots)


def _gain(lv: np.ndarray, knots: list[list[float]]) -> np.ndarray:
    if not knots:
        return np.ones_like(lv)
    x, gain = np.asarray(knots, np.float64).T
    return np.interp(lv, x, gain)


def blotchy_weight(blotchy: float | None) -> float:
    """How far along from white (0) to blotchy (1) noise of ``blotchiness`` reads (BLOTCHY_RATIO)."""
    if blotchy is None:
        return 0.0
    lo, hi = BLOTCHY_RATIO
    return float(np.clip((blotchy - lo) / (hi - lo), 0.0, 1.0))


def blotchiness(planes: np.ndarray, max_value: float = 1.0) -> float:
    """The luminance noise at the coarse scale over that at the fine scale
    (:func:`noise_profile`) of an (H, W) or (H, W, K) image (its first three planes as RGB when
    it has three or more, else its first as gray): about 1 for white noise, 1.6-3.3 for the
    simulated camera's noise (demosaicing, JPEG) on the validation photos; textured pictures
    with little noise also read above 1. 1 where the fine scale reads 0."""
    x = np.asarray(planes)
    x = x if x.ndim == 2 else x[..., :3] if x.shape[2] >= 3 else x[..., 0]
    p = noise_profile(x, max_value)
    return float(p[1] / p[0]) if p[0] > 0 else 1.0


def describe_calibration(knots: list[list[float]] | dict[str, list[list[float]]]) -> str:
    """A level calibration's knots in words, levels on the 0..255 scale (one curve, or one per
    kind of noise and how a file's :func:`blotchiness` picks between them)."""
    curve = lambda ks: ", ".join(f"{g:g}x the estimate at {255 * lv:.1f}" for lv, g in ks)  # noqa: E731
    if isinstance(knots, dict):
        lo, hi = BLOTCHY_RATIO
        return (f"for white noise {curve(knots['white'])}; for blotchy (camera) noise {curve(knots['blotchy'])}; the curve chosen per file by its blotchiness "
                f"(coarse / fine luminance noise, `autoenc/runtime/noise_level.py`): white at or below {lo:g}, blotchy at or above {hi:g}, blended between")
    return curve(knots)


PROFILE_SCALES = 2  # the noise profile's scales: the finest detail, and the detail of 2x2 block means
PROFILE_SIZE = 3 * PROFILE_SCALES  # values in a noise profile: per opponent plane (Y, C1, C2), per scale
PROFILE_BLOCKS = 1 << 16  # 4x4 blocks a noise profile reads at most (a strided grid of them on larger images)


def noise_profile(rgb: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """How the noise of an (H, W, 3) RGB image (or an (H, W) / (H, W, 1) gray one, taken as
    R = G = B) is spread over colour and scale, on the 0..1 scale: for each opponent plane
    (Y, C1, C2 of :mod:`autoenc.runtime.opponent`), :func:`plane_sigmas` of the plane and twice
    that of its 2x2 block means, shape (6,) ordered Y fine, Y coarse, C1 fine, C1 coarse, C2
    fine, C2 coarse.

    White noise reads the same at both scales (block means of four samples halve its deviation);
    noise that demosaicing, JPEG or a camera's own processing made blotchy reads higher at the
    coarse scale (1.8-3.2x in luminance on the validation photos through the simulated camera).
    After JPEG's 4:2:0 chroma subsampling, C1 and C2 read near zero at the fine scale, so their
    coarse values carry the chroma noise. Images under 4x4 pixels give zeros."""
    x = np.asarray(rgb)
    x = x[..., None] if x.ndim == 2 else x
    k = x.shape[2]
    if k not in (1, 3):
        raise ValueError(f"noise_profile: an RGB or gray image, not {k} planes")
    h, w = x.shape[0] // 4 * 4, x.shape[1] // 4 * 4
    if h == 0 or w == 0:
        return np.zeros(PROFILE_SIZE)
    step = 1
    while (h // (4 * step)) * (w // (4 * step)) > PROFILE_BLOCKS:  # every step-th row and column of blocks
        step += 1
    rows = x[:h].reshape(h // 4, 4, x.shape[1], k)[::step]
    sub = rows[:, :, :w].reshape(rows.shape[0], 4, w // 4, 4, k)[:, :, ::step]
    hb, wb = sub.shape[0], sub.shape[2]
    sub = sub.reshape(hb * 4, wb * 4, k).astype(np.float32) / max_value
    opp = to_opponent(np.repeat(sub, 3 // k, axis=2))  # a gray image as R = G = B, only the blocks read
    coarse = opp.reshape(hb * 2, 2, wb * 2, 2, 3).mean(axis=(1, 3))
    return np.stack([plane_sigmas(opp), 2 * plane_sigmas(coarse)], axis=1).reshape(-1)
