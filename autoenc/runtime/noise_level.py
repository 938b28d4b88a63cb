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
MAX_SAMPLES = 1 << 21  # diagonal details used per plane at most (a strided subset of a large image)


def estimate_sigma(planes: np.ndarray, max_value: float = 1.0) -> float:
    """Noise standard deviation of an (H, W) or (H, W, K) image whose full scale is
    ``max_value``, on the 0..1 scale (multiply by 255 for 8-bit levels). Integer images are
    converted only in the blocks used. Images under 2x2 pixels give 0."""
    x = np.asarray(planes)
    if x.ndim == 2:
        x = x[..., None]
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return 0.0
    step = 1
    while (h // (2 * step)) * (w // (2 * step)) > MAX_SAMPLES:  # whole 2x2 blocks, every step-th row/column of blocks
        step += 1
    blocks = x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1)[::step, :, ::step].astype(np.float32) / np.float32(max_value)
    hh = (blocks[:, 0, :, 0] - blocks[:, 0, :, 1] - blocks[:, 1, :, 0] + blocks[:, 1, :, 1]) / 2
    return float(np.mean(np.median(np.abs(hh.reshape(-1, hh.shape[-1])), axis=0)) / MAD_TO_SIGMA)
