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
"""

from __future__ import annotations

import numpy as np

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
