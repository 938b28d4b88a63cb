"""Synthetic dead-leaves images: a seeded supplement to the few photos image models train on.

A dead-leaves image is a stack of opaque disks dropped one on another, radii drawn from a
power law ``p(r) ~ r^-3`` between :data:`R_MIN` pixels and the image size: it is scale-invariant
and has sharp occluding edges at every scale, the two statistics of natural photos a denoiser
most needs to learn (Matheron 1968; Lee, Mumford & Huang 2001). Training on such images comes
within about 0.5 dB of training on natural photos and helps when photos are few (Achddou,
Gousseau & Ladjal 2021, "Synthetic images as a regularity prior for image restoration neural
networks"). Our disks also carry a random sinusoidal texture or a linear shading, and a share
of the images is blurred as out-of-focus depth would.

Disks are painted back to front, each over its own bounding box, with analytic antialiasing: a
disk covers a pixel by ``clamp(r - d + 1/2, 0, 1)`` (``d`` the distance from its centre, pixels).
Enough disks are dropped that :data:`UNCOVERED` of the image is expected to show the background.
A pure function of the ``torch.Generator`` it is given, like the noise synthesis it precedes;
training renders a bank of these once per run and cuts patches from it like from photos.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from autoenc.noise import pair_generator

R_MIN = 1.0  # smallest disk radius, pixels
UNCOVERED = math.exp(-6)  # expected share of the image no disk covers
TEXTURE_SHARE = 0.5  # disks with a sinusoidal texture; as many again get a linear shading
TEXTURE_AMPLITUDE = 0.25  # texture and shading amplitude at most (0..1 scale)
BLUR_SHARE = 0.25  # images blurred as out of focus
BLUR_SIGMA = (0.5, 2.0)  # their Gaussian blur, pixels
CHROMA = 0.3  # colour images: spread of each channel around the disk's luminance (0..1 scale)


def disk_count(size: int) -> int:
    """Disks dropped on a ``size``-pixel square so that :data:`UNCOVERED` of it stays bare: the
    mean disk area under ``p(r) ~ r^-3`` on [R_MIN, size] is ``2 pi R_MIN^2 ln(size / R_MIN)``
    (nearly, for size >> R_MIN), and coverage is Poisson."""
    mean_area = 2 * math.pi * R_MIN**2 * math.log(size / R_MIN)
    return math.ceil(-math.log(UNCOVERED) * size * size / mean_area)


def dead_leaves(size: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """A ``(channels, size, size)`` float32 dead-leaves image on the 0..1 scale, drawn from
    ``generator`` (about 1.6 s for 512 pixels on this project's CPU)."""
    g = generator
    n = disk_count(size)
    u = torch.rand(n, 9, generator=g, dtype=torch.float64).numpy()
    a, b = R_MIN**-2, float(size) ** -2
    r = 1 / np.sqrt(a - u[:, 0] * (a - b))  # inverse distribution of p(r) ~ r^-3
    cy, cx = u[:, 1] * size, u[:, 2] * size
    lum = u[:, 3]
    chroma = torch.rand(n, channels, generator=g, dtype=torch.float64).numpy() - 0.5
    colour = lum[:, None] if channels == 1 else np.clip(lum[:, None] + CHROMA * chroma, 0, 1)
    kind, amp = u[:, 4], TEXTURE_AMPLITUDE * u[:, 5]
    freq, angle, phase = 0.5 * u[:, 6], 2 * np.pi * u[:, 7], 2 * np.pi * u[:, 8]  # cycles per pixel, radians
    out = np.empty((channels, size, size))
    out[:] = colour[0][:, None, None]  # background: what no disk covers
    grid = np.arange(size, dtype=np.float64)
    for k in range(n):
        y0, y1 = max(int(cy[k] - r[k] - 1), 0), min(int(cy[k] + r[k] + 2), size)
        x0, x1 = max(int(cx[k] - r[k] - 1), 0), min(int(cx[k] + r[k] + 2), size)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = grid[y0:y1, None] - cy[k], grid[None, x0:x1] - cx[k]
        alpha = np.clip(r[k] - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1)
        value = np.broadcast_to(colour[k][:, None, None], (channels, y1 - y0, x1 - x0))
        if kind[k] < 2 * TEXTURE_SHARE:
            along = dx * math.cos(angle[k]) + dy * math.sin(angle[k])  # pixels
            pattern = np.sin(2 * np.pi * freq[k] * along + phase[k]) if kind[k] < TEXTURE_SHARE else along / max(r[k], 1.0)
            value = np.clip(value + amp[k] * pattern, 0, 1)
        patch = out[:, y0:y1, x0:x1]
        patch += alpha * (value - patch)
    img = torch.from_numpy(out).float()
    if float(torch.rand((), generator=g)) < BLUR_SHARE:
        s = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * float(torch.rand((), generator=g))
        k = 2 * math.ceil(3 * s) + 1
        img = TF.gaussian_blur(img, [k, k], [s, s])
    return img.clamp(0, 1)


BANK_IMAGES = 32  # dead-leaves images rendered per training run (8.4 MP, about 50 s on one core)
BANK_SIZE = 512  # their side, pixels


def bank(channels: int, seed: int, images: int = BANK_IMAGES, size: int = BANK_SIZE) -> list[torch.Tensor]:
    """``images`` dead-leaves images of ``size`` pixels, image ``i`` drawn from (seed, i) alone."""
    return [dead_leaves(size, channels, pair_generator(seed, "dead-leaves", i)) for i in range(images)]
