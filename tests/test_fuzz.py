"""Fuzzing (hypothesis) of the image and audio readers and of a whole denoise job with random
bytes and mutated real files: readers either succeed or raise MediaError with a reason (never
another exception, never a hang), and a job never crashes.

Bounded and derandomized in CI (``AUTOENC_FUZZ_EXAMPLES``, default 40 per property); the long
run is ``python fuzz/run.py`` (thousands of random examples).
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from autoenc.runtime.audio_io import probe_audio, read_blocks
from autoenc.runtime.jobs import JobSettings, denoise_dir
from autoenc.runtime.media import MediaError, read_image
from conftest import photo, tone

EXAMPLES = int(os.environ.get("AUTOENC_FUZZ_EXAMPLES", "40"))
LONG = os.environ.get("AUTOENC_FUZZ_LONG") == "1"
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None, suppress_health_check=list(HealthCheck))


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every supported kind, to mutate."""
    out = {}
    rgb = Image.fromarray(photo(24, 32, 3))
    for ext, fmt, kw in ((".png", "PNG", {}), (".jpg", "JPEG", {"quality": 85}), (".webp", "WEBP", {}), (".tif", "TIFF", {}), (".bmp", "BMP", {})):
        buf = io.BytesIO()
        rgb.save(buf, format=fmt, **kw)
        out[ext] = buf.getvalue()
    for ext, fmt, sub in ((".wav", "WAV", "PCM_16"), (".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, tone(0.3), 16000, format=fmt, subtype=sub)
        out[ext] = buf.getvalue()
    return out


SEEDS = _seed_files()
IMAGE_EXTS = [".png", ".jpg", ".webp", ".tif", ".bmp"]
AUDIO_EXTS = [".wav", ".flac", ".ogg"]


@st.composite
def mutated(draw, exts: list[str]) -> tuple[str, bytes]:
    """A seed file of one of ``exts`` with random byte flips, truncation, insertion or splice
    from another format — or plain random bytes."""
    ext = draw(st.sampled_from(exts))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "splice", "random"]))
    data = bytearray(SEEDS[ext])
    if kind == "random":
        return ext, draw(st.binary(max_size=4096))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    else:
        other = SEEDS[draw(st.sampled_from(list(SEEDS)))]
        i = draw(st.integers(0, len(data)))
        data = data[:i] + other[draw(st.integers(0, len(other))) :]
    return ext, bytes(data)


def _materialise(tmp_path_factory, case: tuple[str, bytes]):
    ext, data = case
    path = tmp_path_factory.mktemp("fz") / f"f{ext}"
    path.write_bytes(data)
    return path


@FUZZ
@given(mutated(IMAGE_EXTS))
def test_image_reader_fails_only_with_media_error(tmp_path_factory, case):
    path = _materialise(tmp_path_factory, case)
    try:
        img = read_image(path, max_pixels=4_000_000)
    except MediaError as exc:
        assert str(exc)
    else:
        assert img.planes.ndim == 3 and np.isfinite(img.planes).all()


@FUZZ
@given(mutated(AUDIO_EXTS))
def test_audio_reader_fails_only_with_media_error(tmp_path_factory, case):
    path = _materialise(tmp_path_factory, case)
    try:
        info = probe_audio(path, max_seconds=600)
        frames = sum(len(b) for b in read_blocks(path, expect_frames=info.frames))
    except MediaError as exc:
        assert str(exc)
    else:
        assert frames > 0


@settings(max_examples=max(4, EXAMPLES // 8), deadline=None, derandomize=not LONG, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(mutated(IMAGE_EXTS + AUDIO_EXTS), min_size=1, max_size=8))
def test_denoise_job_never_crashes(tmp_path_factory, gray_model, audio_model, cases):
    root = tmp_path_factory.mktemp("job")
    src = root / "in"
    src.mkdir()
    for i, (ext, data) in enumerate(cases):
        (src / f"f{i}{ext}").write_bytes(data)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    report = denoise_dir([gray_model, audio_model], src, root / "out", JobSettings(threads=1, max_pixels=4_000_000, max_seconds=600))
    assert len(report.results) == len(cases)
    for r in report.results:
        assert r.status == "written" or r.reason, r
        assert not r.reason.startswith("unexpected"), r  # every failure has a known, clear cause
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
