"""Default corpora, all offline: photos shipped inside PyPI wheels (images), and speech and
music from Debian's Asterisk sound packages (audio).

Images:

Sources (all load offline from installed packages; licences from their docstrings/docs):
scikit-image ``skimage.data`` (public domain / CC0 unless noted), scikit-learn sample images
(CC-BY 2.0), PyWavelets ``pywt.data`` and matplotlib's ``grace_hopper.jpg`` (public domain).
Synthetic images (checkerboard, colorwheel, phantoms, logos) are excluded: they are not photos.

Audio: ``asterisk-core-sounds-en-g722`` (568 prompts, ~27 min, one US-English
female voice, CC-BY-SA-3.0) and ``asterisk-moh-opsound-g722`` (~18 min of music on hold,
CC-BY-SA-3.0), raw G.722 at 16 kHz, decoded with PyPI ``g722`` into 16-bit 16 kHz WAV.
``make data`` installs both packages with apt-get where it can.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from autoenc.media import atomic_write, save_array

log = logging.getLogger(__name__)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _stereo(view: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return data.stereo_motorcycle()[view]

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _pywt(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pywt.data

        return getattr(pywt.data, name)()

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


# name -> (loader, package, licence)
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], str, str]] = {
    "astronaut": (_skimage("astronaut"), "scikit-image", "public domain (NASA)"),
    "camera": (_skimage("camera"), "scikit-image", "CC0 (Lav Varshney)"),
    "coffee": (_skimage("coffee"), "scikit-image", "CC0 (Rachel Michetti)"),
    "chelsea": (_skimage("chelsea"), "scikit-image", "CC0 (Stefan van der Walt)"),
    "coins": (_skimage("coins"), "scikit-image", "public domain (Walters Art Museum)"),
    "moon": (_skimage("moon"), "scikit-image", "public domain"),
    "rocket": (_skimage("rocket"), "scikit-image", "public domain (SpaceX)"),
    "motorcycle_left": (_stereo(0), "scikit-image", "CC0 (Middlebury stereo)"),
    "motorcycle_right": (_stereo(1), "scikit-image", "CC0 (Middlebury stereo)"),
    "brick": (_skimage("brick"), "scikit-image", "CC0"),
    "grass": (_skimage("grass"), "scikit-image", "CC0"),
    "gravel": (_skimage("gravel"), "scikit-image", "CC0"),
    "hubble_deep_field": (_skimage("hubble_deep_field"), "scikit-image", "public domain (NASA)"),
    "immunohistochemistry": (_skimage("immunohistochemistry"), "scikit-image", "public domain"),
    "retina": (_skimage("retina"), "scikit-image", "CC-BY 4.0 (Häggström)"),
    "page": (_skimage("page"), "scikit-image", "CC0"),
    "text": (_skimage("text"), "scikit-image", "public domain"),
    "clock": (_skimage("clock"), "scikit-image", "CC0"),
    "cell": (_skimage("cell"), "scikit-image", "CC0"),
    "china": (_sklearn("china.jpg"), "scikit-learn", "CC-BY 2.0"),
    "flower": (_sklearn("flower.jpg"), "scikit-learn", "CC-BY 2.0"),
    "aero": (_pywt("aero"), "PyWavelets", "public domain (USC-SIPI, as shipped)"),
    "ascent": (_pywt("ascent"), "PyWavelets", "public domain"),
    "grace_hopper": (_grace_hopper, "matplotlib", "public domain (US Navy)"),
}


def default_corpus_dir() -> Path:
    """``$AUTOENC_CACHE/corpus/photos`` (default ``~/.cache/autoenc/corpus/photos``)."""
    base = Path(os.environ.get("AUTOENC_CACHE", Path.home() / ".cache" / "autoenc"))
    return base / "corpus" / "photos"


def build_photo_corpus(out_dir: Path | None = None) -> Path:
    """Write every available photo as PNG (as shipped: gray or RGB) plus ``SOURCES.csv``.

    Idempotent: existing files are kept. A photo whose package is missing is skipped with a
    warning; having none at all is an error that names the ``[train]`` extra.
    """
    out_dir = Path(out_dir) if out_dir else default_corpus_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, missing = [], []
    for name, (loader, package, licence) in PHOTOS.items():
        path = out_dir / f"{name}.png"
        if not path.exists():
            try:
                arr = np.asarray(loader())
            except Exception as exc:  # missing package or data file inside it
                missing.append(f"{name} ({package}: {type(exc).__name__})")
                continue
            if arr.dtype != np.uint8:
                arr = (np.clip(arr.astype(np.float64) / max(arr.max(), 1e-12), 0, 1) * 255).round().astype(np.uint8)
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[..., :3]
            save_array(path, arr, "PNG")
        rows.append((path.name, package, licence))
    if missing:
        log.warning("corpus: skipped %d photos: %s", len(missing), ", ".join(missing))
    if not rows:
        raise RuntimeError("no corpus photos available: install the training extra (pip install 'autoenc[train]')")

    def write_csv(f) -> None:
        text = "file,package,licence\n" + "".join(f'{a},{b},"{c}"\n' for a, b, c in rows)
        f.write(text.encode())

    atomic_write(out_dir / "SOURCES.csv", write_csv)
    log.info("corpus: %d photos in %s", len(rows), out_dir)
    return out_dir


def read_sources(corpus_dir: Path) -> list[dict[str, str]]:
    with open(Path(corpus_dir) / "SOURCES.csv", newline="") as f:
        return list(csv.DictReader(f))


ASTERISK_SPEECH = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_MOH = Path("/usr/share/asterisk/moh")
APT_HINT = "install it with: apt-get install -y {pkg} (or run `make data`)"


class CorpusMissing(FileNotFoundError):
    """A default corpus whose source package is not installed; the message says how to get it."""


def _decode_g722_tree(src: Path, out_dir: Path, package: str, licence: str) -> Path:
    """Decode every ``*.g722`` under ``src`` into 16 kHz PCM_16 WAV at the same relative path."""
    from autoenc.audio_io import write_audio

    files = sorted(src.rglob("*.g722")) if src.is_dir() else []
    if not files:
        raise CorpusMissing(f"no G.722 files under {src}: Debian package {package} is not installed; " + APT_HINT.format(pkg=package))
    import G722

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in files:
        rel = f.relative_to(src).with_suffix(".wav")
        dst = out_dir / rel
        if not dst.exists():
            pcm = np.asarray(G722.G722(16000, 64000).decode(f.read_bytes()), dtype=np.int16)
            if len(pcm) < 1600:  # under 0.1 s: a blank prompt, not speech
                continue
            write_audio(dst, pcm.astype(np.float32) / 32768.0, 16000)
        rows.append((rel.as_posix(), package, licence))

    def write_csv(fobj) -> None:
        fobj.write(("file,package,licence\n" + "".join(f'{a},{b},"{c}"\n' for a, b, c in rows)).encode())

    atomic_write(out_dir / "SOURCES.csv", write_csv)
    log.info("corpus: %d recordings from %s in %s", len(rows), package, out_dir)
    return out_dir


def _cache(name: str) -> Path:
    return default_corpus_dir().parent / name


def build_speech_corpus(out_dir: Path | None = None) -> Path:
    """Asterisk's English prompts as 16 kHz WAV (idempotent)."""
    return _decode_g722_tree(ASTERISK_SPEECH, Path(out_dir) if out_dir else _cache("speech"), "asterisk-core-sounds-en-g722", "CC-BY-SA-3.0")


def build_music_bank(out_dir: Path | None = None) -> Path:
    """Asterisk's music on hold as 16 kHz WAV: real background recordings for 'music' noise."""
    return _decode_g722_tree(ASTERISK_MOH, Path(out_dir) if out_dir else _cache("music"), "asterisk-moh-opsound-g722", "CC-BY-SA-3.0")


def resolve_data_root(root: Path | None, corpus_dir: Path | None, modality: str = "image") -> Path:
    """The configured clean-data folder, or the default corpus of ``modality`` (built if needed)."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root is not a folder: {root}")
        return root
    return build_photo_corpus(corpus_dir) if modality == "image" else build_speech_corpus(corpus_dir)
