"""Format-preserving audio I/O with soundfile (torch-free), streamed in blocks.

Reads WAV (16/24/32-bit integer, 32/64-bit float), FLAC, OGG/Vorbis and MP3 (as the bundled
libsndfile does); the output keeps the input's container, subtype, sample rate and channel
count. Files are read and written in blocks, so memory does not grow with duration. Writes
are atomic (temp file in the target folder, fsync, rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from autoenc.runtime.media import AUDIO_FORMATS, MediaError, atomic_write

BLOCK_FRAMES = 65536  # frames per read/write block (~1.5 s at 44.1 kHz)
# soundfile container names accepted for each extension's format (WAVEX: WAVE_FORMAT_EXTENSIBLE)
CONTAINERS = {"WAV": ("WAV", "WAVEX", "RF64"), "FLAC": ("FLAC",), "OGG": ("OGG",), "MP3": ("MP3",)}


@dataclass(frozen=True)
class AudioInfo:
    samplerate: int  # Hz
    channels: int
    frames: int
    format: str  # soundfile container: WAV, FLAC, OGG, MP3
    subtype: str  # e.g. PCM_16, PCM_24, FLOAT, VORBIS, MPEG_LAYER_III

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate


MIN_RATE, MAX_RATE = 1000, 768_000  # Hz; outside this a header is corrupt or hostile
MAX_CHANNELS = 64


def probe_audio(path: str | Path, *, min_seconds: float = 0.0, max_seconds: float = float("inf")) -> AudioInfo:
    """Header facts of an audio file, validated; raises :class:`MediaError` with a reason."""
    path = Path(path)
    expected = AUDIO_FORMATS.get(path.suffix.lower())
    if expected is None:
        raise MediaError(f"not a supported audio extension: {path.suffix or '(none)'}")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise MediaError(f"cannot decode audio: {type(exc).__name__}: {str(exc)[:200]}") from None
    if info.format not in CONTAINERS[expected]:
        raise MediaError(f"content is {info.format or 'unknown'}, but the extension says {expected}")
    if "should be" in (info.extra_info or ""):  # libsndfile: data chunk shorter than its header says
        raise MediaError("truncated file: the data is shorter than its header declares")
    out = AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)
    if not (MIN_RATE <= out.samplerate <= MAX_RATE) or not (1 <= out.channels <= MAX_CHANNELS):
        raise MediaError(f"implausible header: {out.samplerate} Hz, {out.channels} channels (accepted: {MIN_RATE}..{MAX_RATE} Hz, 1..{MAX_CHANNELS} channels)")
    if out.frames <= 0:
        raise MediaError("zero-length audio")
    if out.seconds < min_seconds:
        raise MediaError(f"clip is {out.seconds * 1000:.1f} ms, shorter than the {min_seconds * 1000:.0f} ms minimum")
    if out.seconds > max_seconds:
        raise MediaError(f"audio is {out.seconds:.1f} s, over the {max_seconds:g} s limit")
    return out


def read_blocks(path: str | Path, blocksize: int = BLOCK_FRAMES, *, expect_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield float32 (frames, channels) blocks; non-finite samples, or fewer frames than
    ``expect_frames`` (a truncated file; 50 ms of slack for MP3 frame padding), raise
    :class:`MediaError`."""
    try:
        with sf.SoundFile(str(path)) as f:
            got = 0
            while True:
                block = f.read(blocksize, dtype="float32", always_2d=True)
                if not len(block):
                    break
                if not np.isfinite(block).all():
                    raise MediaError("audio contains NaN or Inf samples")
                got += len(block)
                yield block
            if expect_frames is not None and got < expect_frames - 0.05 * f.samplerate:
                raise MediaError(f"truncated file: header declares {expect_frames} frames, only {got} decode")
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode audio: {type(exc).__name__}: {str(exc)[:200]}") from None


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Whole file as float32 (frames, channels) and its sample rate (for short files)."""
    info = probe_audio(path)
    blocks = list(read_blocks(path, expect_frames=info.frames))
    return (np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.float32)), info.samplerate


def write_stream(path: str | Path, info: AudioInfo, blocks: Iterator[np.ndarray]) -> int:
    """Atomically write float (frames, channels) ``blocks`` with ``info``'s format, subtype,
    rate and channels; returns frames written. An exception leaves no output behind."""
    written = 0

    def write(fobj) -> None:
        nonlocal written
        with sf.SoundFile(fobj, "w", samplerate=info.samplerate, channels=info.channels, format=info.format, subtype=info.subtype) as out:
            for block in blocks:
                out.write(block if info.subtype in ("FLOAT", "DOUBLE") else np.clip(block, -1.0, 1.0))
                written += len(block)

    try:
        atomic_write(path, write)
    except MediaError:
        raise
    except sf.LibsndfileError as exc:
        raise MediaError(f"cannot write {info.format}/{info.subtype}: {exc}") from None
    return written


def write_audio(path: str | Path, samples: np.ndarray, samplerate: int, *, format: str = "WAV", subtype: str = "PCM_16") -> None:
    """Atomically write a whole (frames, channels) or (frames,) array."""
    samples = samples[:, None] if samples.ndim == 1 else samples
    info = AudioInfo(samplerate, samples.shape[1], len(samples), format, subtype)
    write_stream(path, info, iter([samples]))
