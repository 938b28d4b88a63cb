"""The opponent colour space, torch-free: luminance and two chrominance planes.

    Y  = (R + G + B) / 3,   C1 = (R - B) / 2 + 1/2,   C2 = (R - 2G + B) / 4 + 1/2

The rows are orthogonal, so noise that is independent across R, G, B with deviation sigma stays
independent across Y, C1, C2, with deviations sigma times each row's norm (0.577, 0.707,
0.612); the offsets keep all three planes on 0..1. ``opponent_unet_dae``
(:mod:`autoenc.models.opponent`) denoises in this space, and the noise profile
(:mod:`autoenc.runtime.noise_level`) is measured in it.
"""

from __future__ import annotations

import numpy as np

# Rows: Y, C1, C2 from R, G, B (orthogonal rows, so independent RGB noise stays independent).
OPPONENT = ((1 / 3, 1 / 3, 1 / 3), (1 / 2, 0.0, -1 / 2), (1 / 4, -1 / 2, 1 / 4))
OPPONENT_OFFSET = (0.0, 0.5, 0.5)  # keeps each plane on 0..1


def to_opponent(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB on 0..1 -> (H, W, 3) float32 Y, C1, C2 planes on 0..1."""
    m = np.asarray(OPPONENT, np.float32)
    return np.asarray(rgb, np.float32) @ m.T + np.asarray(OPPONENT_OFFSET, np.float32)
