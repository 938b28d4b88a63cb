"""Torch-free classical front end for audio models: a decision-directed Wiener filter
(Ephraim-Malah) that a model with ``prefilter`` metadata sees its input through, in training and
at inference alike.

Why: the speech U-Net reaches 0.71 s around a sample, so it cannot tell a stationary floor of
noise (hiss, a distant crowd) from the quiet parts of a voice it never heard; a Wiener filter
whose noise spectrum comes from the quietest frames of several seconds can. The U-Net then
repairs what the filter leaves (musical noise, non-stationary noise, clipped speech).

The filter is a function of the whole signal that streams exactly: STFT frames of ``N_FFT``
samples every ``HOP`` samples (periodic Hann analysis and synthesis, the first frame starting
``N_FFT - HOP`` samples before the signal, so every sample lies in four frames), grouped into
blocks of ``block_seconds`` counted from the first frame. The noise power spectrum used for a
block is the mean power of the quietest ``quantile`` of the frames of that block and the block before
it that lie wholly inside the signal (all frames, for a clip shorter than one frame); the decision-directed a-priori SNR runs across block edges. So whole-array
and chunked processing give the same samples, whatever the chunk sizes, and memory is bounded by
two blocks. A clip shorter than one block is filtered with the noise of the whole clip, like the
benchmark's Wiener baseline.

A clean recording has no noise floor: its quietest frames are the soft ends of words, and a
filter that takes them for noise dulls the voice (clean Dutch speech came back from `speech` at
29.7 dB SI-SDR, from its U-Net alone at 46.0). With ``clean_db`` set, a block whose noise
estimate lies more than ``clean_db`` below the mean frame power of its pool is taken for clean:
its noise estimate is lowered by ``CLEAN_SLOPE`` dB per dB beyond that margin, so the filter
fades out continuously as the recording gets cleaner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np

N_FFT = 512  # samples per STFT frame (32 ms at 16 kHz)
HOP = 128  # samples between frames (a quarter frame: Hann^2 sums to 1.5 everywhere)
CLEAN_SLOPE = 3.0  # with clean_db: dB the noise estimate is lowered per dB it lies below clean_db


@dataclass(frozen=True)
class WienerPrefilter:
    """Settings of the Wiener front end (stored whole in checkpoints and ONNX metadata, so a
    model keeps its filter even if these defaults change).

    Args:
        alpha: decision-directed smoothing of the a-priori SNR (0..1).
        floor_db: lowest gain (dB, < 0): how far a noise-only bin is attenuated. Not deeper
            than -9 by default: the network behind it can still see (and restore) what the
            filter turned down; on `speech`'s validation voices -9 scored best of -6..-20
            (configs/speech-wiener.yaml).
        quantile: fraction of the quietest frames whose mean power is the noise spectrum (5%:
            clean speech trimmed of its pauses loses less than with the classical 10%; the
            best validation score for `speech`, configs/speech-wiener.yaml).
        block_seconds: frames are grouped into blocks this long (s); a block's noise comes from
            it and the block before it.
        clean_db: a block whose noise estimate lies below this level (dB, < 0) relative to the
            mean frame power of its pool is taken for clean and filtered less (the module's
            docstring); None: never (the models made before this setting).
    """

    name: str = "wiener"
    alpha: float = 0.98
    floor_db: float = -9.0
    quantile: float = 0.05
    block_seconds: float = 8.0
    clean_db: float | None = None

    def __post_init__(self) -> None:
        if self.name != "wiener":
            raise ValueError(f"unknown prefilter {self.name!r} (known: wiener)")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"prefilter alpha must lie in [0, 1), got {self.alpha}")
        if not self.floor_db < 0:
            raise ValueError(f"prefilter floor_db must be negative, got {self.floor_db}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"prefilter quantile must lie in (0, 1], got {self.quantile}")
        if not self.block_seconds > 0:
            raise ValueError(f"prefilter block_seconds must be positive, got {self.block_seconds}")
        if self.clean_db is not None and not self.clean_db < 0:
            raise ValueError(f"prefilter clean_db must be negative (dB below the mean frame power), got {self.clean_db}")

    @classmethod
    def parse(cls, spec: dict[str, Any] | None) -> "WienerPrefilter | None":
        """A prefilter from its metadata/kwargs form (None: no prefilter); raises ValueError
        naming an unknown key or a bad value."""
        if spec is None:
            return None
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown prefilter setting(s) {sorted(unknown)} (known: {sorted(cls.__dataclass_fields__)})")
        return cls(**spec)

    def spec(self) -> dict[str, Any]:
        """The metadata/kwargs form: every setting, so a change of default never alters a model;
        ``clean_db`` only when set, so a file without it stays readable by a runtime older than it."""
        spec = asdict(self)
        if spec["clean_db"] is None:
            del spec["clean_db"]
        return spec

    def block_frames(self, sample_rate: int) -> int:
        return max(1, round(self.block_seconds * sample_rate / HOP))

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """Filter (C, n) float samples at ``sample_rate`` Hz in memory; returns (C, n) float32."""
        stream = WienerStream(self, x.shape[0], sample_rate)
        step = HOP * self.block_frames(sample_rate)  # bounded memory for long input
        parts = [y for i in range(0, x.shape[1], step) for y in stream.push(x[:, i : i + step])]
        parts += list(stream.flush())
        return np.concatenate(parts, axis=1) if parts else np.zeros_like(x, dtype=np.float32)


_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float64)  # periodic Hann


class WienerStream:
    """Feed (C, n) samples with :meth:`push`, then :meth:`flush`; yields filtered (C, m) blocks
    whose concatenation has exactly the input's length."""

    def __init__(self, spec: WienerPrefilter, channels: int, sample_rate: int) -> None:
        self.spec, self.channels = spec, channels
        self.block = spec.block_frames(sample_rate)
        self.floor = 10 ** (spec.floor_db / 20)
        self.buf = np.zeros((channels, N_FFT - HOP))  # input from the next frame's first sample on (zero padding at the start)
        self.buf_pos = -(N_FFT - HOP)  # signal index of buf[:, 0]
        self.X: list[np.ndarray] = []  # spectra (C, frames, bins) of the frames not yet filtered, in parts
        self.inside: list[np.ndarray] = []  # whether each of those frames lies wholly inside the signal
        self.pending = 0  # frames in those parts
        self.prev: tuple[np.ndarray, np.ndarray] | None = None  # power (C, frames, bins) and inside flags of the block before
        self.prev_clean = np.zeros((channels, N_FFT // 2 + 1))  # |S|^2 / noise power of the last filtered frame
        self.acc = np.zeros((channels, N_FFT - HOP))  # overlap-add of filtered frames, pending, from `acc_pos` on
        self.acc_pos = -(N_FFT - HOP)  # signal index of acc[:, 0]: the next frame to filter starts there
        self.n_in = 0
        self.n_out = 0

    def _frames_from_buffer(self, end: int | None) -> None:
        """Cut every frame the buffer holds; ``end``: the signal's length if known, else None."""
        n = (self.buf.shape[1] - N_FFT) // HOP + 1 if self.buf.shape[1] >= N_FFT else 0
        if end is not None:
            n = min(n, max(0, -(-(end - self.buf_pos) // HOP)))  # frames that start before the end
        if n <= 0:
            return
        starts = self.buf_pos + HOP * np.arange(n)
        inside = (starts >= 0) & (True if end is None else starts + N_FFT <= end)
        windows = np.lib.stride_tricks.sliding_window_view(self.buf, N_FFT, axis=1)[:, : HOP * n : HOP]
        self.X.append(np.fft.rfft(windows * _WINDOW, axis=2))
        self.inside.append(inside)
        self.pending += n
        self.buf, self.buf_pos = self.buf[:, HOP * n :], self.buf_pos + HOP * n

    def _filter_block(self, T: int) -> Iterator[np.ndarray]:
        """Filter the first ``T`` pending frames (one block, or the last part of one)."""
        if T == 0:
            return
        X, inside = np.concatenate(self.X, axis=1), np.concatenate(self.inside)  # joined once per block
        self.pending -= T
        self.X, self.inside = ([X[:, T:]], [inside[T:]]) if self.pending else ([], [])
        X, inside = X[:, :T], inside[:T]
        P = np.abs(X) ** 2
        pool, pool_in = (P, inside) if self.prev is None else (np.concatenate([self.prev[0], P], axis=1), np.concatenate([self.prev[1], inside]))
        if pool_in.any():
            pool = pool[:, pool_in]
        energy = pool.sum(axis=2)  # (C, frames)
        quiet = energy <= np.quantile(energy, self.spec.quantile, axis=1, keepdims=True)
        noise = (pool * quiet[:, :, None]).sum(axis=1) / quiet.sum(axis=1)[:, None] + 1e-12  # (C, bins)
        if self.spec.clean_db is not None:  # a clean recording's quietest frames are speech, not noise
            level_db = 10 * np.log10(noise.sum(axis=1) / (energy.mean(axis=1) + 1e-30))  # (C,)
            noise = noise * 10 ** (CLEAN_SLOPE * np.minimum(level_db - self.spec.clean_db, 0) / 10)[:, None]
        self.prev = (P, inside)
        a = self.spec.alpha
        # Per frame t, in units of the noise power: xi = alpha * |S_{t-1}|^2 / N + (1 - alpha) * max(gamma_t - 1, 0),
        # gain = max(xi / (1 + xi), floor), |S_t|^2 = gain^2 * |X_t|^2. Frames in the leading axis, in place: this
        # loop is the one sequential step and most of the filter's time.
        gamma = np.ascontiguousarray((P / noise[:, None]).transpose(1, 0, 2))  # (T, C, bins)
        post = (1 - a) * np.maximum(gamma - 1, 0)
        G = np.empty_like(gamma)
        r = self.prev_clean  # |S_{t-1}|^2 / N
        xi, den = np.empty_like(r), np.empty_like(r)
        for t in range(T):  # the decision-directed recursion
            g = G[t]
            np.multiply(r, a, out=xi)
            xi += post[t]
            np.add(xi, 1, out=den)
            np.divide(xi, den, out=g)
            np.maximum(g, self.floor, out=g)
            r = g * g
            r *= gamma[t]
        self.prev_clean = r
        G = G.transpose(1, 0, 2)
        frames = np.fft.irfft(G * X, n=N_FFT, axis=2) * (_WINDOW / 1.5)  # Hann^2 at a quarter-frame hop sums to 1.5
        k = N_FFT // HOP
        ola = np.zeros((self.channels, T + k - 1, HOP))
        parts = frames.reshape(self.channels, T, k, HOP)
        for j in range(k):
            ola[:, j : j + T] += parts[:, :, j]
        ola = ola.reshape(self.channels, -1)
        ola[:, : self.acc.shape[1]] += self.acc
        done = T * HOP  # samples before the next frame's start are final
        yield from self._emit(ola[:, :done])
        self.acc, self.acc_pos = ola[:, done:], self.acc_pos + done

    def _emit(self, y: np.ndarray) -> Iterator[np.ndarray]:
        """Emit the part of ``y`` (signal samples from ``acc_pos`` on) not yet emitted and
        inside the signal."""
        lo = max(self.n_out, self.acc_pos)
        hi = min(self.acc_pos + y.shape[1], self.n_in)
        if hi > lo:
            self.n_out = hi
            yield y[:, lo - self.acc_pos : hi - self.acc_pos].astype(np.float32)

    def push(self, x: np.ndarray) -> Iterator[np.ndarray]:
        if x.shape[1] == 0:
            return
        self.n_in += x.shape[1]
        self.buf = np.concatenate([self.buf, x.astype(np.float64)], axis=1)
        self._frames_from_buffer(None)
        while self.pending >= self.block:
            yield from self._filter_block(self.block)

    def flush(self) -> Iterator[np.ndarray]:
        # Zero padding at the end: frames until the last one that still covers a sample.
        self.buf = np.concatenate([self.buf, np.zeros((self.channels, N_FFT))], axis=1)
        self._frames_from_buffer(self.n_in)
        while self.pending > 0:
            yield from self._filter_block(min(self.block, self.pending))
        yield from self._emit(self.acc)
