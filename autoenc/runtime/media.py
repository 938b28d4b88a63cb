"""Format-preserving image I/O (Pillow + numpy only: safe on the torch-free inference path).

:func:`read_image` returns the colour planes as an integer array plus everything needed to
write the result back in the same format, mode, bit depth and metadata; :func:`write_image`
writes atomically (temp file in the target folder, fsync, rename).

Mode handling, documented for users:

* ``L``, ``RGB``, ``I;16`` (16-bit gray PNG/TIFF), ``CMYK``: denoised as stored, written back
  in the same mode (16-bit stays 16-bit).
* ``LA``, ``RGBA``: the colour planes are denoised; alpha is copied through byte for byte.
* ``P`` / ``PA`` (palette): converted to ``RGB`` (``RGBA`` if the palette has transparency) and
  written as that: a denoised image no longer fits its 256-colour palette, and re-quantising
  would put the noise back.
* ``1`` (bilevel): converted to ``L`` and written as 8-bit gray.
* 16-bit colour (PNG/TIFF): refused with a reason, since Pillow cannot hold 16-bit RGB and
  would silently drop to 8 bits. Multi-frame files (animations, multi-page TIFF) are refused.

ICC profile, EXIF, DPI and PNG text chunks are kept where Pillow can write them; JPEG keeps its
quantisation tables and chroma subsampling (so quality and size match the input). EXIF
orientation is not applied: pixels are processed as stored and the tag is kept.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, BinaryIO

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

IMAGE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
DEFAULT_MAX_PIXELS = 150_000_000  # refuse larger images (decompression bombs); ~a 15k x 10k photo
# ImageDescription, Make, Model, Orientation, Software, DateTime, Artist, Copyright
TIFF_TEXT_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)


_UMASK = os.umask(0)
os.umask(_UMASK)


class MediaError(Exception):
    """A file that cannot be read or written; the message is the user-facing reason."""


AUDIO_FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


def check_regular(path: str | Path) -> None:
    """Refuse anything but a regular file, without blocking: opening a FIFO (or a device) for
    reading can wait forever, so the file is opened non-blocking and checked with fstat.
    Raises :class:`MediaError` with the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise MediaError(f"cannot open: {type(exc).__name__}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaError("not a regular file (a FIFO, device or socket): refused")
    finally:
        os.close(fd)


def modality_of(path: str | Path) -> str | None:
    """``"image"`` or ``"audio"`` by extension; None for anything else."""
    ext = Path(path).suffix.lower()
    return "image" if ext in IMAGE_FORMATS else "audio" if ext in AUDIO_FORMATS else None


@dataclass
class ImageData:
    """Decoded image: colour planes ``planes`` (H, W, C) uint8/uint16 and how to write it back."""

    planes: np.ndarray
    alpha: np.ndarray | None  # (H, W), same dtype as planes, passed through untouched
    mode: str  # Pillow mode of ``planes`` when written: L, RGB, CMYK, I;16
    format: str  # Pillow format name: PNG, JPEG, TIFF, BMP, WEBP
    save_kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # e.g. "palette converted to RGB"

    @property
    def max_value(self) -> int:
        """Full-scale value of ``planes``: 255 for 8-bit, 65535 for 16-bit."""
        return 65535 if self.planes.dtype == np.uint16 else 255


def _png_is_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 4, 6)  # RGB, gray+alpha, RGBA


def _webp_is_lossless(path: Path) -> bool:
    """Walk RIFF chunk headers (seeking past payloads) looking for a VP8L (lossless) bitstream."""
    with open(path, "rb") as f:
        f.seek(12)
        while len(head := f.read(8)) == 8:
            tag, size = head[:4], struct.unpack("<I", head[4:])[0]
            if tag == b"VP8L":
                return True
            if tag == b"VP8 ":
                return False
            f.seek(size + (size & 1), os.SEEK_CUR)
    return False


def _save_kwargs(img: Image.Image, fmt: str, path: Path) -> dict[str, Any]:
    """What to pass to ``Image.save`` so the output keeps the input's settings and metadata."""
    info = img.info
    kw: dict[str, Any] = {}
    if info.get("icc_profile"):
        kw["icc_profile"] = info["icc_profile"]
    exif = info.get("exif")
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kw["exif"] = exif
    if "dpi" in info and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        kw["dpi"] = info["dpi"]
    if fmt == "JPEG":
        if getattr(img, "quantization", None):
            kw["qtables"] = img.quantization
        sampling = JpegImagePlugin.get_sampling(img)
        if sampling != -1:
            kw["subsampling"] = sampling
        kw["progressive"] = bool(info.get("progressive") or info.get("progression"))
    elif fmt == "PNG":
        if "transparency" in info and img.mode in ("L", "RGB", "I", "I;16"):
            kw["transparency"] = info["transparency"]  # tRNS colour key
        text = getattr(img, "text", None) or {}
        if text:
            meta = PngImagePlugin.PngInfo()
            for key, value in text.items():
                meta.add_text(key, value)
            kw["pnginfo"] = meta
    elif fmt == "TIFF":
        # TIFF keeps EXIF-style fields as IFD0 tags: carry the descriptive ones over.
        tags = {t: img.tag_v2[t] for t in TIFF_TEXT_TAGS if t in img.tag_v2}
        if tags:
            kw["tiffinfo"] = tags
        comp = info.get("compression")
        if comp in ("raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"):
            kw["compression"] = comp
    elif fmt == "WEBP":
        if _webp_is_lossless(path):
            kw["lossless"] = True
            kw["exact"] = True  # keep colour under fully transparent pixels
        else:
            kw["quality"] = 95
    return kw


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image for denoising; raises :class:`MediaError` with a clear reason."""
    path = Path(path)
    fmt_expected = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt_expected is None:
        raise MediaError(f"not a supported image extension: {path.suffix or '(none)'}")
    img = None
    try:
        if fmt_expected == "PNG" and _png_is_16bit_colour(path):
            raise MediaError("16-bit colour PNG: Pillow cannot hold 16 bits per colour channel (would drop to 8)")
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check uses our limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        w, h = img.size
        if img.format == "TIFF":
            bits = img.tag_v2.get(258, (8,))
            bits = bits if isinstance(bits, tuple) else (bits,)
            if max(bits) > 8 and len(bits) > 1:
                raise MediaError(f"{max(bits)}-bit colour TIFF: Pillow cannot hold more than 8 bits per colour channel")
        if w * h > max_pixels:
            raise MediaError(f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
        if getattr(img, "n_frames", 1) > 1:
            raise MediaError(f"multi-frame image ({img.n_frames} frames) is not supported")
        if img.format != fmt_expected:
            raise MediaError(f"content is {img.format or 'unknown'}, but the extension says {fmt_expected}")
        kwargs = _save_kwargs(img, img.format, path)
        img.load()
        return _split_planes(img, img.format, kwargs)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        said = str(exc).split(",")[0]  # Pillow: "Image size (N pixels) exceeds limit of M pixels"
        raise MediaError(f"image is over the limit of {max_pixels} pixels, refused before decoding: {said}") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise MediaError(f"cannot decode image: {type(exc).__name__}: {exc}") from None
    finally:
        if img is not None:
            img.close()


def _split_planes(img: Image.Image, fmt: str, kwargs: dict[str, Any]) -> ImageData:
    mode, note = img.mode, ""
    if mode == "I" and img.format == "TIFF":
        raise MediaError("32-bit integer TIFF is not supported (only 8- and 16-bit)")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        note = f"palette image converted to {img.mode}"
        mode = img.mode
    elif mode == "1":
        img, mode, note = img.convert("L"), "L", "bilevel image converted to 8-bit gray"
    elif mode in ("I", "I;16", "I;16L", "I;16B"):
        arr = np.asarray(img)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise MediaError("32-bit integer image with values outside 0..65535 is not supported")
        return ImageData(arr.astype(np.uint16)[..., None], None, "I;16", fmt, kwargs)
    if mode in ("L", "RGB", "CMYK"):
        arr = np.asarray(img)
        planes = arr[..., None] if arr.ndim == 2 else arr
        return ImageData(planes, None, mode, fmt, kwargs, note)
    if mode in ("LA", "RGBA"):
        arr = np.asarray(img)
        return ImageData(arr[..., :-1], arr[..., -1].copy(), mode[:-1], fmt, kwargs, note)
    raise MediaError(f"unsupported image mode {mode!r}")


def to_pil(data: ImageData, planes: np.ndarray) -> Image.Image:
    """Assemble output ``planes`` (same dtype/shape as ``data.planes``) with the kept alpha."""
    if data.mode == "I;16":
        return Image.fromarray(np.ascontiguousarray(planes[..., 0].astype(np.uint16)))
    if data.alpha is not None:
        return Image.fromarray(np.dstack([planes, data.alpha]), mode=data.mode + "A")
    arr = planes[..., 0] if data.mode == "L" else planes
    return Image.fromarray(np.ascontiguousarray(arr), mode=data.mode)


TMP_SUFFIX = ".autoenc-tmp"
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temp_owner(name: str) -> tuple[str, int] | None:
    """(host tag, pid) of the process that created temp file ``name``, or None if ``name`` is
    not an :func:`atomic_write` temp file."""
    parts = name.split("-")
    if not (name.startswith(".autoenc-") and name.endswith(TMP_SUFFIX) and len(parts) >= 4 and parts[2].isdigit()):
        return None
    return parts[1], int(parts[2])


def is_own_host(tag: str) -> bool:
    return tag == _HOST_TAG


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` via a temp file in the same folder, fsync and rename: readers never see a
    partial file. The temp name ``.autoenc-<host tag>-<pid>-<random>.autoenc-tmp`` names its
    writer, so a later run can remove what a killed one left behind (see jobs.sweep_temp)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".autoenc-{_HOST_TAG}-{os.getpid()}-", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: str | Path, data: ImageData, planes: np.ndarray) -> None:
    """Write denoised ``planes`` to ``path`` in the input's format, mode and metadata."""
    img = to_pil(data, planes)
    kwargs = dict(data.save_kwargs)
    if data.format == "JPEG" and img.mode not in ("L", "RGB", "CMYK"):
        raise MediaError(f"JPEG cannot store mode {img.mode}")
    try:
        atomic_write(path, lambda f: img.save(f, format=data.format, **kwargs))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot write {data.format}: {type(exc).__name__}: {exc}") from None


def save_array(path: str | Path, arr: np.ndarray, fmt: str | None = None) -> None:
    """Atomically save a float (0..1) or integer array as an 8/16-bit image (gray or RGB)."""
    if arr.dtype.kind == "f":
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(np.ascontiguousarray(arr))
    fmt = fmt or IMAGE_FORMATS.get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda f: img.save(f, format=fmt))


def load_float(path: str | Path, channels: int) -> np.ndarray:
    """Load an image as float32 (H, W, channels) on the 0..1 scale (gray by luma, RGB by convert)."""
    data = read_image(path)
    img = to_pil(data, data.planes)
    if data.mode == "I;16":
        g = data.planes[..., 0].astype(np.float32) / 65535.0
        return np.repeat(g[..., None], channels, axis=2)
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr
