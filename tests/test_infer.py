"""Torch-free inference: tiling, channel rules, folder jobs, refusals, bad files."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoenc.runtime.infer import OnnxDenoiser, tile_spans
from autoenc.runtime.jobs import JobError, check_job, denoise_dir
from autoenc.runtime.session import ModelError, OnnxModel
from conftest import REPO, output_files, photo


@pytest.mark.parametrize("tile,context,blend,m", [(256, 32, 16, 4), (1024, 32, 16, 4), (160, 32, 16, 8), (512, 40, 16, 8)])
def test_tile_spans_cover_overlap_and_align(tile, context, blend, m):
    for length in range(100, 3000, 7):
        spans = tile_spans(length, tile, context, blend, m)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(s % m == 0 for s, _ in spans)
        assert all(2 * (context + blend) <= e - s <= tile + 2 * m for s, e in spans) or len(spans) == 1
        for (s0, e0), (s1, _) in zip(spans, spans[1:]):
            assert s1 > s0 and e0 - s1 >= 2 * context + blend


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_equals_whole_image(gray_model, color_model, channels):
    model = gray_model if channels == 1 else color_model
    img = photo(301, 413, channels=3)[..., :channels] if channels == 3 else photo(301, 413, channels=1)[..., None]
    as_float = img.astype(np.float32) / 255
    whole = OnnxDenoiser(model, tile=4096).denoise(as_float)
    tiled_den = OnnxDenoiser(model, tile=64)
    assert tiled_den.tile < 301  # really tiled
    tiled = tiled_den.denoise(as_float)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)  # float rounding only (1/40 of an 8-bit step): no seams
    assert np.abs(whole - as_float).max() > 0.01  # the model changed the image
    as_int = tiled_den.denoise(img, 255)  # integer path rounds the same float result
    assert np.abs(as_int.astype(int) - (whole * 255 + 0.5).astype(int)).max() <= 1


def test_ensemble_is_flip_rotation_equivariant_and_tiles_exactly(gray_model, color_model):
    img = photo(203, 157, channels=3).astype(np.float32) / 255  # not a multiple of the size multiple: padded
    whole = OnnxDenoiser(color_model, tile=4096, memory_mb=None, ensemble=True)
    tiled = OnnxDenoiser(color_model, tile=64, memory_mb=None, ensemble=True)
    a = whole.denoise(img)
    assert a.shape == img.shape
    np.testing.assert_allclose(tiled.denoise(img), a, atol=1e-4)
    plain = OnnxDenoiser(color_model, tile=4096, memory_mb=None).denoise(img)
    assert np.abs(a - plain).max() > 1e-3  # the average of 8 is not the plain output
    sq = photo(96, 128, channels=1)[..., None].astype(np.float32) / 255  # on the grid: exactly equivariant
    ens = OnnxDenoiser(gray_model, tile=4096, memory_mb=None, ensemble=True)
    ref = ens.denoise(sq)
    np.testing.assert_allclose(ens.denoise(np.ascontiguousarray(np.rot90(sq))), np.rot90(ref), atol=1e-5)
    np.testing.assert_allclose(ens.denoise(np.ascontiguousarray(sq[:, ::-1])), ref[:, ::-1], atol=1e-5)
    assert ens.identity == OnnxDenoiser(gray_model).identity + "+ensemble"


def test_channel_rules(gray_model, color_model):
    rgb = photo(64, 64, channels=3)
    gray = photo(64, 64, channels=1)[..., None]
    g = OnnxDenoiser(gray_model)
    out = g.denoise(rgb, 255)
    for c in range(3):  # a gray model denoises each colour plane on its own
        np.testing.assert_array_equal(out[..., c:c + 1], g.denoise(np.ascontiguousarray(rgb[..., c:c + 1]), 255))
    c = OnnxDenoiser(color_model)
    out = c.denoise(gray, 255)
    assert out.shape == gray.shape and out.dtype == np.uint8
    rgb_out = c.denoise(np.repeat(gray, 3, axis=2).astype(np.float32) / 255)  # plane replicated to RGB
    expected = (np.clip(rgb_out.mean(axis=2, keepdims=True), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # ...and the 3 outputs averaged


def _tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if not p.is_symlink() and p.is_file()}


def _make_folder(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    Image.fromarray(photo(80, 90, 3)).save(root / "rgb.png")
    Image.fromarray(photo(70, 60, 1)).save(root / "a" / "gray.jpg", quality=90)
    rgba = np.dstack([photo(40, 50, 3), np.tile(np.arange(50, dtype=np.uint8) * 5, (40, 1))])
    Image.fromarray(rgba, "RGBA").save(root / "a" / "b" / "alpha.webp", lossless=True)
    Image.fromarray((photo(30, 30, 1).astype(np.uint16) * 257)).save(root / "a" / "deep16.tif")
    Image.fromarray(photo(33, 44, 3)).save(root / "with space ü.bmp")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (root / "readme.txt").write_text("not an image")


def test_denoise_dir_writes_same_tree_and_reports_bad_files(tmp_path, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    _make_folder(src)
    outside = tmp_path / "secret.png"
    Image.fromarray(photo(20, 20, 1)).save(outside)
    os.symlink(outside, src / "link.png")
    os.symlink(src / "loop2.png", src / "loop1.png")
    os.symlink(src / "loop1.png", src / "loop2.png")
    os.mkfifo(src / "pipe.png")  # opening it would block forever
    before = _tree_digest(src)
    report = denoise_dir(gray_model, src, dst)
    assert report.counts() == {"written": 5, "unchanged": 0, "skipped": 5, "failed": 1}, report.summary()
    by_path = {r.path: r for r in report.results}
    assert "decode" in by_path["broken.png"].reason
    assert "outside" in by_path["link.png"].reason
    assert by_path["readme.txt"].status == "skipped"
    assert "regular" in by_path["pipe.png"].reason and "symlink" in by_path["loop1.png"].reason
    assert _tree_digest(src) == before  # inputs untouched
    written = output_files(dst)
    assert written == sorted(["rgb.png", "a/gray.jpg", "a/b/alpha.webp", "a/deep16.tif", "with space ü.bmp"])
    for rel in written:
        a, b = Image.open(src / rel), Image.open(dst / rel)
        assert (a.format, a.mode, a.size) == (b.format, b.mode, b.size)
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "a/b/alpha.webp"))[..., 3], np.asarray(Image.open(src / "a/b/alpha.webp"))[..., 3])
    assert not list(dst.rglob("*.autoenc-tmp"))


def test_refusals_before_touching_files(tmp_path, gray_model):
    src = tmp_path / "in"
    src.mkdir()
    with pytest.raises(JobError, match="inside the input"):
        check_job(gray_model, src, src / "out")
    with pytest.raises(JobError, match="inside the output"):
        check_job(gray_model, src, tmp_path)
    with pytest.raises(JobError, match="does not exist"):
        check_job(gray_model, tmp_path / "nope", tmp_path / "out")
    with pytest.raises(JobError, match="model not found"):
        check_job(tmp_path / "missing.onnx", src, tmp_path / "out")
    (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
    with pytest.raises(JobError, match="cannot load model"):
        check_job(tmp_path / "corrupt.onnx", src, tmp_path / "out")
    with pytest.raises(ModelError, match="audio"):
        OnnxModel(gray_model, modality="audio")
    assert not (tmp_path / "out").exists()


def test_6000x4000_photo_stays_under_1_5_gb(tmp_path, color_model):
    """Peak RSS of a fresh process denoising a 24 MP RGB JPEG with tiling."""
    big = tmp_path / "in" / "big.jpg"
    big.parent.mkdir()
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (500, 500, 3), dtype=np.uint8)
    Image.fromarray(np.tile(tile, (8, 12, 1))).save(big, quality=90)
    code = (
        "import re; from pathlib import Path; from autoenc.runtime.jobs import denoise_dir; "
        f"r = denoise_dir({str(color_model)!r}, {str(big.parent)!r}, {str(tmp_path / 'out')!r}); "
        "assert r.counts()['written'] == 1, r.summary(); "
        # VmHWM: this process's peak RSS (ru_maxrss would include the forking pytest's)
        "print(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    peak_mb = int(out.stdout.split()[-1]) / 1024
    assert Image.open(tmp_path / "out" / "big.jpg").size == (6000, 4000)
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1536, f"peak RSS {peak_mb:.0f} MB"


def test_memory_budget_picks_the_tile_and_keeps_tiling_exact(gray_model):
    """A smaller working-memory budget gives smaller tiles, measured for this model; the result
    is the same image (tiled == whole up to float rounding)."""
    img = (np.random.default_rng(3).random((700, 900, 3)) * 255).astype(np.uint8)
    whole = OnnxDenoiser(gray_model, threads=1, tile=2048, memory_mb=None)
    small = OnnxDenoiser(gray_model, threads=1, tile=2048, memory_mb=40)
    assert whole.fit_tile(3) == whole.tile
    edge = small.fit_tile(3)
    assert small.min_tile <= edge < 700 and small.bytes_per_pixel[3] > 64  # a real measurement, not the floor
    assert edge == small.fit_tile(3)  # measured once per channel count
    a, b = whole.denoise(img, 255), small.denoise(img, 255)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
