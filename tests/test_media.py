"""Round trips through read_image/write_image for every supported format and mode."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from autoenc.runtime.media import MediaError, read_image, write_image
from conftest import photo

LOSSLESS = ["png", "tif", "bmp", "webp"]


def _save(path, img, **kw):
    img.save(path, **kw)
    return path


def _roundtrip(src, dst):
    data = read_image(src)
    write_image(dst, data, data.planes)
    return data, Image.open(dst)


@pytest.mark.parametrize("ext", LOSSLESS)
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_lossless_roundtrip_is_exact(tmp_path, ext, mode):
    if ext == "bmp" and mode == "RGBA":
        pytest.skip("Pillow writes BMP without alpha")
    arr = photo(40, 56, channels=1 if mode == "L" else 3)
    img = Image.fromarray(arr).convert(mode)
    if mode == "RGBA":
        a = np.asarray(img).copy()
        a[..., 3] = np.arange(56, dtype=np.uint8)[None, :] * 4
        img = Image.fromarray(a, "RGBA")
    kw = {"lossless": True, "exact": True} if ext == "webp" else {}
    src = _save(tmp_path / f"in.{ext}", img, **kw)
    data, out = _roundtrip(src, tmp_path / f"out.{ext}")
    stored = Image.open(src)  # WebP has no gray mode: Pillow stores L as RGB
    assert out.format == stored.format
    assert out.mode == stored.mode
    np.testing.assert_array_equal(np.asarray(out), np.asarray(stored))
    if mode == "RGBA":
        np.testing.assert_array_equal(data.alpha, np.asarray(img)[..., 3])


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_gray_stays_16bit(tmp_path, ext):
    arr = (photo(30, 40, channels=1).astype(np.uint16) * 257 + 3).astype(np.uint16)
    src = _save(tmp_path / f"in.{ext}", Image.fromarray(arr))
    data, out = _roundtrip(src, tmp_path / f"out.{ext}")
    assert data.planes.dtype == np.uint16 and data.max_value == 65535
    assert np.asarray(out).dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(out), arr)


def test_jpeg_keeps_icc_exif_subsampling_and_quality(tmp_path):
    img = Image.fromarray(photo(64, 80))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "autoenc-test-camera"  # Make
    exif[0x0112] = 6  # orientation: kept, not applied
    src = _save(tmp_path / "in.jpg", img, quality=60, subsampling=2, icc_profile=icc, exif=exif.tobytes())
    data, out = _roundtrip(src, tmp_path / "out.jpg")
    assert out.info.get("icc_profile") == icc
    assert out.getexif()[0x010F] == "autoenc-test-camera"
    assert out.getexif()[0x0112] == 6
    assert out.quantization == Image.open(src).quantization
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(out) == 2
    assert out.size == img.size


@pytest.mark.parametrize("ext", ["png", "tif", "webp"])
def test_icc_and_exif_kept(tmp_path, ext):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0131] = "autoenc-test"  # Software
    kw = {"lossless": True} if ext == "webp" else {}
    src = _save(tmp_path / f"in.{ext}", Image.fromarray(photo(32, 32)), icc_profile=icc, exif=exif.tobytes(), **kw)
    _, out = _roundtrip(src, tmp_path / f"out.{ext}")
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x0131) == "autoenc-test"


def test_palette_becomes_rgb_and_keeps_transparency_as_alpha(tmp_path):
    p = Image.fromarray(photo(32, 32)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    data, out = _roundtrip(_save(tmp_path / "p.png", p), tmp_path / "o.png")
    assert out.mode == "RGB" and "palette" in data.note
    np.testing.assert_array_equal(np.asarray(out), np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    data, out = _roundtrip(_save(tmp_path / "pt.png", p, transparency=0), tmp_path / "ot.png")
    assert out.mode == "RGBA"


def test_cmyk_tiff_kept_cmyk(tmp_path):
    img = Image.fromarray(photo(24, 24)).convert("CMYK")
    _, out = _roundtrip(_save(tmp_path / "c.tif", img), tmp_path / "o.tif")
    assert out.mode == "CMYK"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img))


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.png", b"", "cannot decode"),
        ("text.jpg", b"this is not a jpeg", "cannot decode"),
        ("trunc.png", None, "cannot decode"),
        ("x.gif", b"GIF89a", "extension"),
    ],
)
def test_bad_files_raise_media_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(photo(64, 64)).save(buf, format="PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(MediaError, match=reason):
        read_image(path)


def test_wrong_extension_and_size_limit_and_16bit_colour(tmp_path):
    png_as_jpg = _save(tmp_path / "a.jpg", Image.fromarray(photo(20, 20)), format="PNG")
    with pytest.raises(MediaError, match="content is PNG"):
        read_image(png_as_jpg)
    big = _save(tmp_path / "big.png", Image.fromarray(photo(100, 100)))
    with pytest.raises(MediaError, match="over the limit"):
        read_image(big, max_pixels=5000)
    # Hand-made 16-bit RGB PNG header: Pillow would silently reduce it to 8 bits.
    import struct
    import zlib

    raw = b"".join(b"\x00" + b"\x12\x34" * 3 * 4 for _ in range(4))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    with pytest.raises(MediaError, match="16-bit colour"):
        read_image(tmp_path / "rgb16.png")


def test_more_modes_and_metadata(tmp_path):
    # LA: alpha passed through; bilevel: written as 8-bit gray.
    la = Image.fromarray(np.dstack([photo(20, 24, 1), np.tile(np.arange(24, dtype=np.uint8) * 9, (20, 1))]), "LA")
    data, out = _roundtrip(_save(tmp_path / "la.png", la), tmp_path / "la_out.png")
    assert out.mode == "LA" and np.array_equal(np.asarray(out), np.asarray(la))
    bw = Image.fromarray(photo(16, 16, 1) > 128)
    data, out = _roundtrip(_save(tmp_path / "bw.png", bw), tmp_path / "bw_out.png")
    assert out.mode == "L" and "bilevel" in data.note
    # RGB PNG with a tRNS colour key keeps it; TIFF keeps its orientation tag.
    _, out = _roundtrip(_save(tmp_path / "key.png", Image.fromarray(photo(16, 16)), transparency=(1, 2, 3)), tmp_path / "key_out.png")
    assert out.info.get("transparency") == (1, 2, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    _, out = _roundtrip(_save(tmp_path / "o.tif", Image.fromarray(photo(16, 16)), exif=exif.tobytes()), tmp_path / "o_out.tif")
    assert out.getexif().get(0x0112) == 6


def test_16bit_colour_tiff_and_16bit_gray_alpha_png_are_refused(tmp_path):
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\x00" + b"\x12\x34" * 2 * 4 for _ in range(4))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 4, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "la16.png").write_bytes(png)
    with pytest.raises(MediaError, match="16-bit colour"):
        read_image(tmp_path / "la16.png")
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "rgb16.tif", (photo(8, 8).astype(np.uint16) * 257))
    with pytest.raises(MediaError, match="16-bit colour TIFF"):
        read_image(tmp_path / "rgb16.tif")
