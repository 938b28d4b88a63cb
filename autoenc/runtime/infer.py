"""Torch-free image inference: :class:`OnnxDenoiser` (one onnxruntime session, seamless tiling).

Tiling: tiles start on multiples of the model's ``size_multiple`` and overlap by
``2 * context + blend`` pixels, where ``context`` covers the model's receptive radius. Each
tile's weight is 0 over the ``context`` pixels next to an interior edge (where zero padding
would differ from the whole image), rises on a raised-cosine ramp over ``blend`` pixels, and is
1 elsewhere; image borders get full weight. Every pixel is thus a convex blend of tile outputs
that each equal the whole-image output, so tiled == whole up to float rounding, while memory is
bounded by one row of tiles (float32) besides the input and output arrays.

Memory budget: what a tile costs depends on the model (width, depth, and the channel rule:
a gray model on RGB runs three planes per tile), about 0.7-1.5 KB per tile pixel for the
shipped U-Nets. Before its first image, a denoiser with ``memory_mb`` runs one small probe tile
and measures how much the process grew (onnxruntime's arena keeps what a run needed); the tile
edge is then the largest whose working memory fits ``memory_mb``, never above ``tile``.

Noise level: a model built with a noise-level input gets one more plane, constant over the
image, holding :func:`estimate_sigma` of the whole image (not per tile, so tiling stays exact;
per plane when a gray model runs on each plane of a colour image), through the model's level
calibration where its file carries one (:func:`calibrated_level`), times the caller's
``strength``: above 1 smooths more, below 1 keeps more grain and detail. A model built with a
noise profile gets its six planes after that one (:func:`noise_profile` of the whole image, or
of each plane where the channel rule runs the planes one by one), times the same strength.

Channel rule: a model with as many channels as the image is applied directly. Otherwise each
image channel is denoised on its own: a 1-channel model runs on R, G, B (or C, M, Y, K)
separately; a 3-channel model gets a gray plane replicated to RGB and its 3 outputs are averaged.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from autoenc.runtime.job_settings import DEFAULTS, blind_strength_error
from autoenc.runtime.ledger import settings_tag
from autoenc.runtime.noise_level import blotchiness, calibrated_level, noise_profile, plane_sigmas
from autoenc.runtime.session import ModelError, OnnxModel, resolve_model  # noqa: F401  (re-exported)


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


def tile_spans(length: int, tile: int, context: int, blend: int, multiple: int) -> list[tuple[int, int]]:
    """Tile [start, end) spans along one axis: the fewest tiles of at most about ``tile`` px
    that overlap by ``2 * context + blend``, evenly spread, starts on multiples of ``multiple``."""
    if length <= tile:
        return [(0, length)]
    overlap = 2 * context + blend
    n = math.ceil((length - overlap) / (tile - overlap))
    t = math.ceil((math.ceil((length - overlap) / n) + overlap) / multiple) * multiple + multiple
    starts = [round(i * (length - t) / (n - 1)) // multiple * multiple for i in range(n)]
    return [(s, s + t) for s in starts[:-1]] + [(starts[-1], length)]


def span_weights(span: tuple[int, int], length: int, context: int, blend: int) -> np.ndarray:
    """Blend weights of one tile span: 0 on ``context`` px at interior edges, then a ramp."""
    s, e = span
    w = np.ones(e - s, dtype=np.float32)
    ramp = _ramp(blend)
    if s > 0:
        w[:context] = 0
        w[context : context + blend] = ramp
    if e < length:
        w[e - s - context :] = 0
        w[e - s - context - blend : e - s - context] = ramp[::-1]
    return w


def _rss_bytes() -> int | None:
    """This process's resident memory in bytes (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


ENSEMBLE_VIEWS = [(k, flip) for k in range(4) for flip in (False, True)]  # --ensemble's views: quarter turns (counter-clockwise), then a left-right flip; identity first


class OnnxDenoiser(OnnxModel):
    """An image model with tiling.

    Args:
        model: path to an autoenc ``.onnx`` file, or a shipped model name.
        threads: onnxruntime intra-op threads.
        tile: largest tile edge in pixels; images larger than this are tiled.
        memory_mb: working-memory budget for the tiles (MB); None keeps ``tile`` as given.
        blend: length in pixels of the cross-fade between tiles.
        strength: what a model with a noise-level input is told: ``strength`` times the
            estimated level. Blind models accept only 1.
        ensemble: average the model over the 8 flips/rotations of each tile. The image is first
            padded (edge) to a multiple of the model's size multiple, so every transformed tile
            sits on the model's grid and tiled output still equals whole-image output.
        calibrated: apply the level calibration the model's file carries (False tells the
            estimate as it is: what :mod:`autoenc.level_calibration` fits from).
    """

    PROBE = 256  # edge of the tile that measures what a tile pixel costs

    def __init__(self, model: str | Path, *, threads: int = DEFAULTS.threads, tile: int = DEFAULTS.tile, memory_mb: int | None = DEFAULTS.memory_mb, blend: int = 16, strength: float = DEFAULTS.strength, ensemble: bool = DEFAULTS.ensemble, calibrated: bool = True) -> None:
        super().__init__(model, threads=threads, modality="image", mem_pattern=False)
        self.level_knots = self.info.level_calibration if calibrated else None
        if strength != 1 and not self.info.noise_level_input:
            raise ModelError(blind_strength_error(self.path, strength))
        self.strength, self.ensemble = strength, ensemble
        m = self.info.size_multiple
        self.context = math.ceil(self.info.receptive_radius / m) * m
        self.blend = max(m, math.ceil(blend / m) * m)
        self.min_tile = 2 * (2 * self.context + self.blend)
        self.tile = max(math.ceil(tile / m) * m, self.min_tile)
        self.memory_mb = memory_mb
        self.bytes_per_pixel: dict[int, float] = {}  # by image channel count, once measured

    @property
    def identity(self) -> str:
        """The model's identity (see :class:`OnnxModel`) with the settings that change outputs."""
        return super().identity + settings_tag(self.strength, self.ensemble)

    def fit_tile(self, channels: int) -> int:
        """The tile edge for images of ``channels`` planes under ``memory_mb`` (measured once
        per channel count: the process's growth over one probe tile, per pixel)."""
        if self.memory_mb is None:
            return self.tile
        if channels not in self.bytes_per_pixel:
            before = _rss_bytes()
            self._apply(np.zeros((self.PROBE, self.PROBE, channels), np.float32))
            after = _rss_bytes()
            if before is None or after is None:
                return self.tile  # no way to measure here: the tile as given
            self.bytes_per_pixel[channels] = max((after - before) / self.PROBE**2, 64.0)
        m = self.info.size_multiple
        edge = int(math.sqrt(self.memory_mb * 2**20 / self.bytes_per_pixel[channels])) // m * m
        return max(self.min_tile, min(self.tile, edge))

    def _apply(self, tile: np.ndarray, level: float | np.ndarray = 0.0) -> np.ndarray:
        """Denoise an (h, w, K) float tile with the channel rule (see module docstring), or the
        mean over its 8 flips/rotations with ``ensemble``; ``level`` fills the noise-level plane
        of a model that takes one."""
        if not self.ensemble:
            return self._apply_once(tile, level)
        acc = np.zeros(tile.shape, np.float32)
        for k, flip in ENSEMBLE_VIEWS:
            t = np.rot90(tile, k)[:, ::-1] if flip else np.rot90(tile, k)
            y = self._apply_once(np.ascontiguousarray(t), level)
            acc += np.rot90(y[:, ::-1] if flip else y, -k)
        return acc / len(ENSEMBLE_VIEWS)

    def _apply_once(self, tile: np.ndarray, level: float | np.ndarray) -> np.ndarray:
        k, c = tile.shape[2], self.info.channels
        chw = tile.transpose(2, 0, 1)
        if k == c:
            return self._model(chw[None], level)[0].transpose(1, 2, 0)
        if c == 1:
            return self._model(chw[:, None], level)[:, 0].transpose(1, 2, 0)
        rep = np.repeat(chw[:, None], c, axis=1)  # each plane as a gray "colour" image
        return self._model(rep, level).mean(axis=1).transpose(1, 2, 0)

    def _model(self, x: np.ndarray, level: float | np.ndarray) -> np.ndarray:
        """One run on an (N, C, h, w) batch, with the conditioning planes appended if the model
        takes them (``level``: one value for all of them, or one row of
        ``info.conditioning_planes`` values for the batch or for each batch item)."""
        d = self.info.conditioning_planes
        if d:
            rows = np.asarray(level, np.float32)
            rows = rows.reshape(-1, d) if rows.size >= d else np.full((1, d), float(rows.reshape(-1)[0]), np.float32)
            planes = np.broadcast_to(rows[:, :, None, None], (x.shape[0], d, *x.shape[2:]))
            x = np.concatenate([x, planes], axis=1)
        return self._run(x)

    def noise_level(self, planes: np.ndarray, max_value: float = 1.0) -> np.ndarray:
        """The estimated noise standard deviation of each of the (H, W, K) planes, on the 0..1
        scale (shape (K,); their mean is the image's :func:`estimate_sigma`)."""
        return plane_sigmas(planes, max_value)

    def denoise(self, planes: np.ndarray, max_value: float = 1.0, *, level: float | np.ndarray | None = None) -> np.ndarray:
        """Denoise (H, W, K) planes: an integer array with full scale ``max_value`` returns the
        same dtype; a float array on the 0..1 scale (``max_value=1``) returns float32.
        A model with a noise-level input is told the strength times ``level`` (the estimate, on
        the 0..1 scale: one value, or one per plane as :meth:`noise_level` gives, which it
        computes when None) through the model's level calibration; a gray model on several
        planes gets each plane's, others the planes' mean.
        Blind models ignore it.

        Works one row of tiles at a time: rows of the float accumulator are finalised as soon
        as no later tile reaches them, so extra memory is about ``tile`` rows, whatever H is.
        """
        h, w, k = planes.shape
        told: float | np.ndarray = 0.0
        if self.info.noise_level_input:
            blotchy = blotchiness(planes, max_value) if isinstance(self.level_knots, dict) else None
            levels = np.broadcast_to(calibrated_level(self.noise_level(planes, max_value) if level is None else level, self.level_knots, blotchy), (k,))
            told = self.strength * (levels if self.info.channels == 1 and k > 1 else float(levels.mean()))
        if self.info.noise_profile:  # one row per batch item the channel rule makes: the image, or each of its planes
            profiles = [noise_profile(planes, max_value)] if k == 3 else [noise_profile(planes[..., i], max_value) for i in range(k)]
            told = np.array([[told, *(self.strength * p)] for p in profiles], np.float32)
        m = self.info.size_multiple
        if self.ensemble and (h % m or w % m):  # every flipped/rotated tile on the model's grid
            padded = np.pad(planes, ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
            return self._tiled(padded, max_value, told)[:h, :w]
        return self._tiled(planes, max_value, told)

    def _tiled(self, planes: np.ndarray, max_value: float, level: float | np.ndarray) -> np.ndarray:
        """:meth:`denoise` of planes, told ``level``, tile by tile."""
        h, w, k = planes.shape
        m = self.info.size_multiple
        tile = self.fit_tile(k) if max(h, w) > self.min_tile else self.tile  # small images: one tile anyway
        ys = tile_spans(h, tile, self.context, self.blend, m)
        xs = tile_spans(w, tile, self.context, self.blend, m)
        wx = [span_weights(s, w, self.context, self.blend) for s in xs]
        # Weights are separable over a grid of tiles, so their sum is an outer product.
        sum_y, sum_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
        for y0, y1 in ys:
            sum_y[y0:y1] += span_weights((y0, y1), h, self.context, self.blend)
        for (x0, x1), wx_j in zip(xs, wx):
            sum_x[x0:x1] += wx_j
        out = np.empty(planes.shape, np.float32 if planes.dtype.kind == "f" else planes.dtype)
        done, acc = 0, np.zeros((0, w, k), np.float32)  # acc holds rows [done, done + len(acc))
        for i, (y0, y1) in enumerate(ys):
            if y1 - done > acc.shape[0]:
                acc = np.concatenate([acc, np.zeros((y1 - done - acc.shape[0], w, k), np.float32)])
            wy = span_weights((y0, y1), h, self.context, self.blend)
            for (x0, x1), wx_j in zip(xs, wx):
                tile = planes[y0:y1, x0:x1].astype(np.float32) / max_value
                acc[y0 - done : y1 - done, x0:x1] += self._apply(tile, level) * (wy[:, None, None] * wx_j[None, :, None])
            final = ys[i + 1][0] if i + 1 < len(ys) else h
            out[done:final] = self._finish(acc[: final - done], sum_y[done:final], sum_x, max_value, out.dtype)
            acc, done = acc[final - done :], final
        return out

    @staticmethod
    def _finish(rows: np.ndarray, sum_y: np.ndarray, sum_x: np.ndarray, max_value: float, dtype) -> np.ndarray:
        """Normalise accumulated rows by their blend weights and convert to the output dtype."""
        rows = rows / (sum_y[:, None, None] * sum_x[None, :, None])
        np.nan_to_num(rows, copy=False, nan=0.0)
        np.clip(rows, 0.0, 1.0, out=rows)
        if np.dtype(dtype).kind == "f":
            return rows
        return (rows * max_value + 0.5).astype(dtype)
