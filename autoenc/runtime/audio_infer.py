"""Torch-free audio inference: :class:`OnnxAudioDenoiser` streams a file through the model in
overlapping windows with cross-fade (overlap-add), so memory stays bounded for any duration.

Windows start on multiples of the model's ``size_multiple`` samples and overlap by
``2 * context + blend``; a window's weight is 0 over the ``context`` samples next to an interior
edge (at least the receptive radius, where its zero padding would differ from the whole file),
rises on a raised-cosine ramp over ``blend`` samples, then is 1 — the 1-D form of the image
tiler (``autoenc.runtime.infer``), so chunked output equals whole-file output up to float rounding and
chunk boundaries cannot click.

Files at another sample rate are resampled to the model's rate and back with soxr (streaming,
high quality), so the output has no content above half the model's rate (8 kHz for 16 kHz
models): the band the model never saw is dropped rather than passed through noisy. Each channel
is denoised on its own; the output has exactly the input's frames.

A model whose metadata names a prefilter (:mod:`autoenc.runtime.prefilter`, a Wiener filter
whose noise spectrum comes from seconds of the file) sees the stream through it first; the
prefilter streams exactly as well, so chunked output still equals whole-file output. A model
with a raw plane takes the filtered samples and the same samples unfiltered, side by side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from autoenc.runtime.audio_io import AudioInfo, probe_audio, read_blocks, write_stream
from autoenc.runtime.infer import span_weights
from autoenc.runtime.job_settings import DEFAULTS
from autoenc.runtime.prefilter import WienerPrefilter, WienerStream
from autoenc.runtime.session import OnnxModel


WINDOW_OVERLAPS = 8  # windows span at least this many overlaps, so at most 1/8 of the compute is recomputed context
# (a model with a long reach, e.g. unet1d_dae's context blocks, gets windows longer than chunk_seconds)


class _OverlapAdd:
    """Feed (C, n) model-rate samples; get finalised denoised samples back, in order."""

    def __init__(self, run, window: int, context: int, blend: int) -> None:
        self.run, self.window, self.context, self.blend = run, window, context, blend
        self.hop = window - 2 * context - blend
        self.buf: np.ndarray | None = None  # input from absolute sample index ``pos`` on
        self.pos = 0
        self.acc: np.ndarray | None = None  # weighted output sums from ``out_pos`` on (as many rows as ``run`` gives)
        self.wsum = np.zeros(0, np.float32)
        self.out_pos = 0

    def _process(self, end: int, final: bool) -> np.ndarray:
        """Run the window [pos, pos + end); return the output samples that are now final."""
        y = self.run(self.buf[:, :end])
        if self.acc is None:
            self.acc = np.zeros((y.shape[0], 0), np.float32)
        # Left edge has full weight only at the stream's start; right edge only at its end.
        w = span_weights((self.pos, self.pos + end), self.pos + end + (0 if final else 1), self.context, self.blend)
        skip = self.out_pos - self.pos  # already emitted; this window's weight there is 0
        need = end - skip
        if need > self.acc.shape[1]:
            grow = need - self.acc.shape[1]
            self.acc = np.concatenate([self.acc, np.zeros((self.acc.shape[0], grow), np.float32)], axis=1)
            self.wsum = np.concatenate([self.wsum, np.zeros(grow, np.float32)])
        self.acc[:, :need] += y[:, skip:] * w[skip:]
        self.wsum[:need] += w[skip:]
        # The next window starts at pos + hop with zero weight over its first `context` samples.
        done = (self.pos + end if final else self.pos + self.hop + self.context) - self.out_pos
        out = self.acc[:, :done] / self.wsum[:done]
        self.acc, self.wsum, self.out_pos = self.acc[:, done:], self.wsum[done:], self.out_pos + done
        self.buf, self.pos = self.buf[:, self.hop :], self.pos + self.hop
        return out

    def push(self, x: np.ndarray) -> Iterator[np.ndarray]:
        if self.buf is None:
            self.buf = x
        else:
            self.buf = np.concatenate([self.buf, x], axis=1)
        while self.buf.shape[1] > self.window:  # more input exists beyond this window
            yield self._process(self.window, final=False)

    def flush(self) -> Iterator[np.ndarray]:
        if self.buf is not None and self.buf.shape[1]:
            yield self._process(self.buf.shape[1], final=True)


class OnnxAudioDenoiser(OnnxModel):
    """An audio model with streaming overlap-add.

    Args:
        model: path to an autoenc ``.onnx`` file, or a shipped model name.
        threads: onnxruntime intra-op threads.
        chunk_seconds: the shortest window at the model's rate (memory/speed trade-off); a
            window is at least ``WINDOW_OVERLAPS`` times the overlap the model's receptive
            field needs (a 75 ms reach: 1.5 s; the shipped speech, 0.71 s reach: 11.8 s).
        blend_seconds: cross-fade length between windows.
    """

    def __init__(self, model: str | Path, *, threads: int = DEFAULTS.threads, chunk_seconds: float = DEFAULTS.chunk_seconds, blend_seconds: float = 0.02) -> None:
        super().__init__(model, threads=threads, modality="audio")
        m, sr = self.info.size_multiple, self.info.sample_rate
        self.context = math.ceil(self.info.receptive_radius / m) * m
        self.blend = max(m, math.ceil(blend_seconds * sr / m) * m)
        overlap = 2 * self.context + self.blend
        self.window = max(math.ceil(chunk_seconds * sr / m) * m, WINDOW_OVERLAPS * overlap)
        self.prefilter = WienerPrefilter.parse(self.info.prefilter)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        """Denoise (C, n) samples (for a raw-plane model (2C, n): the C filtered channels, then the
        same C unfiltered): each channel is one batch item; short input is zero-padded."""
        n = x.shape[1]
        m = self.info.size_multiple
        if n < m:
            x = np.pad(x, ((0, 0), (0, m - n)))
        planes = 2 if self.info.raw_plane else 1
        x = x.reshape(planes, -1, x.shape[1]).transpose(1, 0, 2)  # (C, planes, n)
        return self._run(np.ascontiguousarray(x))[:, 0, :n]

    def stream(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Denoise an iterator of (frames, channels) blocks at the model's rate (through the
        model's prefilter first, where it has one: it streams exactly too)."""
        ola = _OverlapAdd(self._apply, self.window, self.context, self.blend)
        pre: WienerStream | None = None
        raw: list[np.ndarray] = []  # a raw-plane model's unfiltered samples the filter has not yet returned

        def planes(filtered: np.ndarray) -> np.ndarray:
            """The network's input for the filter's next samples: them, and for a raw-plane
            model the same samples unfiltered after them."""
            if not self.info.raw_plane:
                return filtered
            held = np.concatenate(raw, axis=1)
            raw[:] = [held[:, filtered.shape[1] :]]
            return np.concatenate([filtered, held[:, : filtered.shape[1]]])

        for block in blocks:
            x = np.ascontiguousarray(block.T, dtype=np.float32)
            if self.prefilter is not None:
                pre = pre or WienerStream(self.prefilter, x.shape[0], self.info.sample_rate)
                if self.info.raw_plane:
                    raw.append(x)
                parts = [planes(part) for part in pre.push(x)]
            else:
                parts = [x]
            for part in parts:
                for out in ola.push(part):
                    yield out.T
        for part in pre.flush() if pre is not None else ():
            for out in ola.push(planes(part)):
                yield out.T
        for out in ola.flush():
            yield out.T

    def denoise(self, samples: np.ndarray) -> np.ndarray:
        """Denoise a (frames, channels) float array at the model's rate (in memory)."""
        block = 1 << 15
        parts = list(self.stream(samples[i : i + block] for i in range(0, len(samples), block)))
        return np.concatenate(parts) if parts else samples.astype(np.float32)

    def denoise_file(self, src: str | Path, dst: str | Path, *, min_seconds: float = 0.1, max_seconds: float = float("inf")) -> float:
        """Stream ``src`` to ``dst`` (same format, subtype, rate, channels, frames); returns the
        duration in seconds. Raises :class:`autoenc.runtime.media.MediaError` with a reason."""
        info = probe_audio(src, min_seconds=min_seconds, max_seconds=max_seconds)
        write_stream(dst, info, self._file_blocks(src, info))
        return info.seconds

    def _file_blocks(self, src: str | Path, info: AudioInfo) -> Iterator[np.ndarray]:
        sr = self.info.sample_rate
        blocks = read_blocks(src, expect_frames=info.frames)
        if info.samplerate != sr:
            import soxr

            down = soxr.ResampleStream(info.samplerate, sr, info.channels, dtype="float32", quality="HQ")
            up = soxr.ResampleStream(sr, info.samplerate, info.channels, dtype="float32", quality="HQ")
            blocks = _resampled(blocks, down, info.channels)
        remaining = info.frames
        for out in self.stream(blocks):
            if info.samplerate != sr:
                out = up.resample_chunk(np.ascontiguousarray(out, dtype=np.float32), last=False)
            if len(out):
                yield out[:remaining]
                remaining -= min(remaining, len(out))
        if info.samplerate != sr:
            tail = up.resample_chunk(np.zeros((0, info.channels), np.float32), last=True)
            yield tail[:remaining]
            remaining -= min(remaining, len(tail))
        if remaining > 0:  # resampler rounding or MP3 frame padding (< 50 ms): pad with silence
            yield np.zeros((remaining, info.channels), np.float32)


def _resampled(blocks: Iterator[np.ndarray], stream, channels: int) -> Iterator[np.ndarray]:
    for block in blocks:
        out = stream.resample_chunk(block, last=False)
        if len(out):
            yield out
    tail = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
    if len(tail):
        yield tail
