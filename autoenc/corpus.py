"""Default corpora, all offline: photos shipped inside PyPI wheels and Debian wallpaper
packages (images), and speech and music from Debian's Asterisk sound packages (audio).

Images, one folder per source package (``photos/<package>/<name>.png``) so that a split can
hold out whole sources (``data.val_sources``):

Sources (all load offline from installed packages; licences from their docstrings/docs):
scikit-image ``skimage.data`` (public domain / CC0 unless noted), scikit-learn sample images
(CC-BY 2.0), PyWavelets ``pywt.data`` and matplotlib's ``grace_hopper.jpg`` (public domain);
Debian ``mate-backgrounds`` (12 nature photos, GPL-2+), ``plasma-workspace-wallpapers``
(10 photos, LGPL-3) and ``lomiri-wallpapers-16.04`` (13 photos, CC-BY-4.0 / CC-BY-SA-4.0 / CC0
per file). Synthetic images (checkerboard, colorwheel, phantoms, logos, renders) are
excluded: they are not photos. Benchmark-only photos (Debian ``palapeli-data``) are written
to a separate folder and never join the training corpus.

A wider corpus (``data.corpus: photos-wide``, ``autoenc corpus photos-wide``; its own folder
``corpus/photos-wide``) adds the photographs of :data:`WIDE_PHOTOS`: the ~260 landscape, city,
industrial and NASA photos of the game Endless Sky (Debian ``endless-sky-high-dpi``, extracted by
``make wide-data``), each file's licence read from the package's copyright file (public domain
by default, CC-BY-SA-3.0/4.0 for named photographers), halved to 720x360 (they are JPEGs, some
colour-graded). Opt-in, so that configs written for the default corpus keep their data.

Audio: ``asterisk-core-sounds-en-g722`` (568 prompts, ~27 min, one US-English
female voice, CC-BY-SA-3.0) and ``asterisk-moh-opsound-g722`` (~18 min of music on hold,
CC-BY-SA-3.0), raw G.722 at 16 kHz, decoded with PyPI ``g722`` into 16-bit 16 kHz WAV.
``make data`` installs both packages with apt-get where it can.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from autoenc.runtime.media import atomic_write, save_array

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


# Debian packages whose photographs join the corpus (each file checked by eye to be a
# photograph, not a render, painting or logo): package -> (licence, [(name, path in package,
# author)]). Installed (/usr/share/...) or extracted by `make data` (see :func:`debian_file`).
DEBIAN_PHOTOS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "mate-backgrounds": ("GPL-2+", [
        (n, f"usr/share/backgrounds/mate/nature/{n}.jpg", a) for n, a in [
            ("Aqua", "Charles Barbin"), ("Blinds", "Lennart Poettering, Andrea Cimitan"), ("Dune", "Marco Cogoni, Hylke Bons"),
            ("FreshFlower", "Jens Ansorg"), ("Garden", "Charles Barbin"), ("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
            ("LadyBird", "Charles Barbin"), ("RainDrops", "blackcombwhistler07"), ("Storm", "Sergey Nazarov"),
            ("TwoWings", "Charles Barbin, Hylke Bons"), ("Wood", "Jean-François Fortin Tam"), ("YellowFlower", "Charles Barbin"),
        ]
    ]),
    "plasma-workspace-wallpapers": ("LGPL-3", [
        (n, f"usr/share/wallpapers/{n}/contents/images/{size}", a) for n, size, a in [
            ("BytheWater", "2560x1600.jpg", "Maciej Wiklo"), ("ColdRipple", "2560x1600.jpg", "Risto Saukonpää"),
            ("ColorfulCups", "2560x1600.jpg", "Dmitri Popov"), ("DarkestHour", "2560x1600.jpg", "Risto Saukonpää"),
            ("EveningGlow", "2560x1600.jpg", "Ian Hex"), ("FallenLeaf", "2560x1600.jpg", "Martin Klapetek"),
            ("Grey", "2560x1600.jpg", "Sigi Sagi"), ("OneStandsOut", "2560x1600.jpg", "Risto Saukonpää"),
            ("Path", "2560x1600.jpg", "Risto Saukonpää"), ("summer_1am", "2560x1600.jpg", "Risto Saukonpää"),
        ]
    ]),
    # Ubuntu's 18.04 wallpaper contest photographs (the package's copyright file gives each
    # file's licence); its renders, abstract art and the colour-graded texture are left out.
    "lomiri-wallpapers-16.04": ("per file", [
        (n, f"usr/share/backgrounds/{n}.jpg", a) for n, a in [
            ("Bridge_by_Sander_Klootwijk", "Sander Klootwijk (CC-BY-SA-4.0)"), ("Dragonfly_by_Bolly", "Bolly (CC-BY-SA-4.0)"),
            ("Picture_0B_by_freespace", "Trevor Freespace (CC-BY-4.0)"), ("Picture_1A_by_freespace", "Trevor Freespace (CC-BY-4.0)"),
            ("Wine_by_Jakkub_Mede", "Jakub Mede (CC-BY-4.0)"), ("aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi (CC-BY-4.0)"),
            ("free_by_Peter_Nerlich", "Peter Nerlich (CC-BY-SA-4.0)"), ("friends_by_Aitzol_Berasategi", "Aitzol Berasategi (CC-BY-4.0)"),
            ("greentock_by_Peter_Nerlich", "Peter Nerlich (CC-BY-SA-4.0)"), ("life_by_Aitzol_Berasategi", "Aitzol Berasategi (CC-BY-4.0)"),
            ("picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi (CC-BY-4.0)"), ("seeding_by_Clements_Engelhardt", "Clemens Engelhardt (CC0-1.0)"),
            ("sunset_by_Aitzol_Berasategi", "Aitzol Berasategi (CC-BY-4.0)"),
        ]
    ]),
}
# Photographs reserved for benchmarks: never part of the training corpus (another source than
# anything trained on). Licences from each file's .desktop entry in the package.
BENCHMARK_PHOTOS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "palapeli-data": ("per file", [
        (n, f"usr/share/palapeli/collection/{n}.jpg", a) for n, a in [
            ("castle-maintenon", "Eric Pouhier (GFDL)"), ("cincinnati-bridge", "Derek Jensen (public domain)"),
            ("citrus-fruits", "US Department of Agriculture (public domain)"), ("european-honey-bee", "John Severns (public domain)"),
            ("panther-chameleon-female", "B. Navez and others (GFDL)"),
        ]
    ]),
}
# The wider corpus's extra packages: package -> (folder of photos in the package, the folder's
# path as the package's copyright file names it, the copyright file, name patterns left out
# (not photographs, or too edited), halvings). Every other .jpg/.png in the folder joins.
WIDE_PHOTOS: dict[str, tuple[str, str, str, tuple[str, ...], int]] = {
    "endless-sky-high-dpi": (
        "usr/share/games/endless-sky/plugins/endless-sky-high-dpi/images/land", "images/land",
        "usr/share/doc/endless-sky-high-dpi/copyright", ("earthrise*", "lava*", "nasa8*", "nasa9*"), 1,
    ),
}
WIDE_CORPUS = "photos-wide"  # data.corpus's name for it
CORPORA: dict[str, tuple[str, ...]] = {"image": (WIDE_CORPUS,), "audio": ("voices", "asterisk")}  # data.corpus's names by modality (unset: the photo corpus, or for audio the Asterisk voice)


def check_corpus(modality: str, corpus: str | None) -> None:
    """ValueError unless ``corpus`` (data.corpus) is unset or names one of ``modality``'s corpora."""
    if corpus is not None and corpus not in CORPORA[modality]:
        other = next((m for m, names in CORPORA.items() if corpus in names), None)
        what = f"an {other} corpus" if other else "no corpus"
        raise ValueError(f"data.corpus {corpus!r} is {what}; an {modality} model takes one of {list(CORPORA[modality])} or none (the default corpus)")
MIN_SIDE = 1280  # Debian photos are halved while their long side stays >= this: cleaner targets


def cache_dir() -> Path:
    """``$AUTOENC_CACHE`` (default ``~/.cache/autoenc``): corpora and extracted Debian packages."""
    return Path(os.environ.get("AUTOENC_CACHE", Path.home() / ".cache" / "autoenc"))


def default_corpus_dir() -> Path:
    """``$AUTOENC_CACHE/corpus/photos`` (default ``~/.cache/autoenc/corpus/photos``)."""
    return cache_dir() / "corpus" / "photos"


def debian_roots(package: str) -> tuple[Path, Path]:
    """Where a Debian package's files may be: installed (``/``), or extracted by ``make data``
    (``$AUTOENC_CACHE/debian/<package>``), in that order."""
    return Path("/"), cache_dir() / "debian" / package


def debian_file(package: str, rel: str) -> Path | None:
    """A file of a Debian package (see :func:`debian_roots`); None if neither has it."""
    for root in debian_roots(package):
        if (root / rel).is_file():
            return root / rel
    return None


def _halved(arr: np.ndarray) -> np.ndarray:
    """Box-downscale by 2 while the long side stays >= MIN_SIDE (removes JPEG blocking and noise)."""
    from PIL import Image

    img = Image.fromarray(arr)
    while max(img.size) // 2 >= MIN_SIDE:
        img = img.reduce(2)
    return np.asarray(img)


def _write_sources(out_dir: Path, rows: list[tuple[str, str, str, str]]) -> None:
    def write_csv(f) -> None:
        lines = "".join(f'{a},{b},"{c}","{d}"\n' for a, b, c, d in rows)
        f.write(("file,package,licence,origin\n" + lines).encode())

    atomic_write(out_dir / "SOURCES.csv", write_csv)


def _debian_photos(table: dict, out_dir: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Write the photos of ``table``'s packages under ``out_dir/<package>/``; (rows, missing)."""
    from PIL import Image

    rows, missing = [], []
    for package, (licence, files) in table.items():
        for name, rel, author in files:
            path = out_dir / package / f"{name}.png"
            if not path.exists():
                src = debian_file(package, rel)
                if src is None:
                    missing.append(f"{package}/{name}")
                    continue
                save_array(path, _halved(np.asarray(Image.open(src).convert("RGB"))), "PNG")
            rows.append((f"{package}/{name}.png", package, licence if licence != "per file" else author, f"/{rel} ({author})"))
    return rows, missing


def _wide_photos(out_dir: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Write the photos of :data:`WIDE_PHOTOS` under ``out_dir/<package>/``; (rows, missing packages)."""
    from fnmatch import fnmatchcase

    from PIL import Image

    from autoenc import debian_copyright

    rows, missing = [], []
    for package, (folder, named, copyright_file, skip, halvings) in WIDE_PHOTOS.items():
        root = next((r for r in debian_roots(package) if (r / folder).is_dir() and (r / copyright_file).is_file()), None)
        if root is None:
            missing.append(package)
            continue
        paragraphs = debian_copyright.read(root / copyright_file)
        for src in sorted((root / folder).iterdir()):
            if src.suffix.lower() not in (".jpg", ".jpeg", ".png") or any(fnmatchcase(src.name, pat) for pat in skip):
                continue
            governing = debian_copyright.licence_of(paragraphs, f"{named}/{src.name}")
            if governing is None:
                log.warning("corpus: %s/%s has no licence in %s: left out", package, src.name, copyright_file)
                continue
            name = src.stem.split("@")[0]  # city4@2x -> city4
            path = out_dir / package / f"{name}.png"
            if not path.exists():
                img = Image.open(src).convert("RGB")
                for _ in range(halvings):
                    img = img.reduce(2)
                save_array(path, np.asarray(img), "PNG")
            rows.append((f"{package}/{name}.png", package, governing.licence, f"/{folder}/{src.name} ({governing.copyright})"))
    return rows, missing


def build_photo_corpus(out_dir: Path | None = None, wide: bool = False) -> Path:
    """Write every available photo as PNG under ``out_dir/<package>/`` (so a split can hold out
    whole sources) plus ``SOURCES.csv`` (file, package, licence, origin). ``wide``: also the
    photos of :data:`WIDE_PHOTOS` (default folder ``corpus/photos-wide``); CorpusMissing when
    none of those packages is extracted.

    Sources: the photos inside installed wheels (as shipped: gray or RGB) and the Debian photo
    packages (:data:`DEBIAN_PHOTOS`, RGB, halved while the long side stays >= ``MIN_SIDE``)
    where installed or extracted. Idempotent: existing files are kept. A photo whose package is
    missing is skipped with a warning; having none at all is an error that names the ``[train]``
    extra.
    """
    out_dir = Path(out_dir) if out_dir else (cache_dir() / "corpus" / WIDE_CORPUS if wide else default_corpus_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, missing = [], []
    if wide:
        wide_rows, wide_missing = _wide_photos(out_dir)
        if wide_missing:
            raise CorpusMissing(f"the {WIDE_CORPUS} corpus needs Debian package(s) {' '.join(wide_missing)} extracted: run `make wide-data`")
        rows += wide_rows
    for name, (loader, package, licence) in PHOTOS.items():
        path = out_dir / package / f"{name}.png"
        flat = out_dir / f"{name}.png"  # where corpora built before the per-source layout kept it
        if flat.is_file() and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            flat.rename(path)
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
        rows.append((f"{package}/{name}.png", package, licence, f"{package} wheel"))
    if not rows:
        raise RuntimeError("no corpus photos available: install the training extra (pip install 'autoenc[train]')")
    debian_rows, debian_missing = _debian_photos(DEBIAN_PHOTOS, out_dir)
    rows += debian_rows
    if missing:
        log.warning("corpus: skipped %d photos: %s", len(missing), ", ".join(missing))
    if debian_missing:
        log.warning("corpus: %d Debian photos not found (run `make data`): %s", len(debian_missing), ", ".join(debian_missing))
    _write_sources(out_dir, rows)
    log.info("corpus: %d photos in %s", len(rows), out_dir)
    return out_dir


def read_sources(root: Path) -> dict[str, dict[str, str]]:
    """``root/SOURCES.csv`` (written by the corpus builders) by file: package, licence, origin."""
    import csv

    with open(Path(root) / "SOURCES.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def build_benchmark_photos(out_dir: Path | None = None) -> Path:
    """The benchmark-only photos (:data:`BENCHMARK_PHOTOS`, full size) under ``out_dir/<package>/``;
    CorpusMissing names the package when none is found."""
    out_dir = Path(out_dir) if out_dir else cache_dir() / "corpus" / "benchmark-photos"
    rows, missing = _debian_photos(BENCHMARK_PHOTOS, out_dir)
    if not rows:
        pkgs = " ".join(BENCHMARK_PHOTOS)
        raise CorpusMissing(f"no benchmark photos: Debian package(s) {pkgs} not found; " + APT_HINT.format(pkg=pkgs))
    _write_sources(out_dir, rows)
    return out_dir


ASTERISK_SPEECH = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_MOH = Path("/usr/share/asterisk/moh")
APT_HINT = "install it with: apt-get install -y {pkg} (or run `make data`)"


class CorpusMissing(FileNotFoundError):
    """A default corpus whose source package is not installed; the message says how to get it."""


def _decode_g722_tree(src: Path, out_dir: Path, package: str, licence: str) -> Path:
    """Decode every ``*.g722`` under ``src`` into 16 kHz PCM_16 WAV at the same relative path."""
    from autoenc.runtime.audio_io import write_audio

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
    return cache_dir() / "corpus" / name


def build_speech_corpus(out_dir: Path | None = None) -> Path:
    """Asterisk's English prompts as 16 kHz WAV (idempotent)."""
    return _decode_g722_tree(ASTERISK_SPEECH, Path(out_dir) if out_dir else _cache("speech"), "asterisk-core-sounds-en-g722", "CC-BY-SA-3.0")


def build_music_bank(out_dir: Path | None = None) -> Path:
    """Asterisk's music on hold as 16 kHz WAV: real background recordings for 'music' noise."""
    return _decode_g722_tree(ASTERISK_MOH, Path(out_dir) if out_dir else _cache("music"), "asterisk-moh-opsound-g722", "CC-BY-SA-3.0")


def resolve_data_root(root: Path | None, corpus_dir: Path | None, modality: str = "image", corpus: str | None = None) -> Path:
    """The configured clean-data folder, or the default corpus (built if needed): ``corpus``
    names it for audio ("voices": many voices, see :mod:`autoenc.voices`; "asterisk" or None:
    the one Asterisk voice) and images (None: the photo corpus; "photos-wide": with
    :data:`WIDE_PHOTOS`); another name (:data:`CORPORA`) is a ValueError."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root is not a folder: {root}")
        return root
    check_corpus(modality, corpus)  # RunConfig checked it already; scripts pass names from run records
    if modality == "image":
        return build_photo_corpus(corpus_dir, wide=corpus == WIDE_CORPUS)
    if corpus == "voices":
        from autoenc.voices import build_voice_corpus

        return build_voice_corpus(corpus_dir)
    return build_speech_corpus(corpus_dir)
