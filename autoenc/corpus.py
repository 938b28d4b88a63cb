"""The default image corpus: real photos shipped inside PyPI wheels (no downloads).

Sources (all load offline from installed packages; licences from their docstrings/docs):
scikit-image ``skimage.data`` (public domain / CC0 unless noted), scikit-learn sample images
(CC-BY 2.0), PyWavelets ``pywt.data`` and matplotlib's ``grace_hopper.jpg`` (public domain).
Synthetic images (checkerboard, colorwheel, phantoms, logos) are excluded: they are not photos.
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


def resolve_data_root(root: Path | None, corpus_dir: Path | None) -> Path:
    """The configured clean-image folder, or the default photo corpus (built if needed)."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root is not a folder: {root}")
        return root
    return build_photo_corpus(corpus_dir)
