"""The many-voices speech corpus and the recorded-effects noise bank, built offline from Debian
packages, one folder per source (a speaker, a voice pack or a language) so splits hold out
whole voices.

Sources (each file's package and licence in ``SOURCES.csv``):

- ``fillets-cs-m`` / ``fillets-cs-v`` / ``fillets-cs-minor``: Czech game dialogue from
  ``fillets-ng-data-cs`` (the two main actors by their file code ``-m-`` / ``-v-``, and every
  minor character together), GPL-2.
- ``hedgewars-<pack>``: the voice packs of ``hedgewars-data`` (short shouted lines, English,
  Polish, Russian, Spanish, ...), GFDL-1.3.
- ``klettres-<lang>``: letters and syllables spoken in ~20 languages (``klettres-data``), GPL-2+.
- ``asterisk-en``: the Asterisk English prompts (one female voice), CC-BY-SA-3.0.

The **benchmark** corpus is Dutch, held out entirely: ``fillets-ng-data-nl`` (the same game
voiced by other actors) and ``klettres`` Dutch. Nothing of it is trained on or used for
selecting checkpoints. The effects bank is ``hedgewars-data``'s sound effects (explosions,
machines, water, ...), split by file for training and evaluation in :func:`autoenc.data`.

Every clip is resampled to 16 kHz mono, trimmed of leading and trailing silence (frames more
than 45 dB below the clip's loudest frame), and written as PCM_16 WAV peaking at -1 dBFS.
Packages are read where installed, else from ``$AUTOENC_CACHE/debian/<package>`` (``make data``
unpacks them there).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from autoenc.corpus import ASTERISK_SPEECH, CorpusMissing, cache_dir, debian_roots
from autoenc.runtime.media import atomic_write

log = logging.getLogger(__name__)

RATE = 16000  # Hz: what the corpus is written at
TRIM_DB = 45.0  # frames this far below the loudest frame are silence at the ends
MIN_SECONDS = 0.4  # shorter clips (after trimming) are left out

FILLETS = "usr/share/games/fillets-ng/sound"
HEDGEWARS = "usr/share/games/hedgewars/Data/Sounds"
KLETTRES = "usr/share/klettres"
LICENCES = {
    "fillets-ng-data-cs": "GPL-2",
    "fillets-ng-data-nl": "GPL-2",
    "hedgewars-data": "GFDL-1.3",
    "klettres-data": "GPL-2+",
}
BENCHMARK_LANGUAGE = "nl"  # held out entirely: the benchmark's voices


PROBES = {  # a path pattern each package has (the fillets dubbings share their folders)
    "fillets-ng-data-cs": f"{FILLETS}/*/cs",
    "fillets-ng-data-nl": f"{FILLETS}/*/nl",
    "hedgewars-data": f"{HEDGEWARS}/voices",
    "klettres-data": KLETTRES,
}


def _package_root(package: str) -> Path | None:
    """Where ``package``'s files are: ``/`` when installed, else its unpacked copy."""
    return next((root for root in debian_roots(package) if any(root.glob(PROBES[package]))), None)


def _fillets(root: Path, lang: str) -> list[tuple[str, Path]]:
    """(source, file) for one dubbing of Fish Fillets: main actors by file code, the rest minor."""
    out = []
    for f in sorted((root / FILLETS).glob(f"*/{lang}/*.ogg")):
        parts = f.stem.split("-")
        who = parts[1] if len(parts) > 2 and parts[1] in ("m", "v") else "minor"
        out.append((f"fillets-{lang}-{who}", f))
    return out


def _hedgewars(root: Path) -> list[tuple[str, Path]]:
    return [(f"hedgewars-{f.parent.name}", f) for f in sorted((root / HEDGEWARS / "voices").glob("*/*.ogg"))]


def _klettres(root: Path, keep) -> list[tuple[str, Path]]:
    """(source, file) per klettres language folder ``<lang>/<alpha|syllab>/*.ogg`` that ``keep(lang)``."""
    return [(f"klettres-{f.parents[1].name}", f) for f in sorted((root / KLETTRES).glob("*/*/*.ogg")) if keep(f.parents[1].name)]


def trimmed(x: np.ndarray, rate: int, floor_db: float = TRIM_DB) -> np.ndarray:
    """``x`` without its leading and trailing silence: 10 ms frames more than ``floor_db`` below
    the loudest frame, keeping 50 ms of margin."""
    hop = rate // 100
    n = len(x) // hop
    if n < 2:
        return x
    energy = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    active = np.flatnonzero(energy > energy.max() - floor_db)
    margin = 5 * hop
    return x[max(0, active[0] * hop - margin) : min(len(x), (active[-1] + 1) * hop + margin)]


def _convert(src: Path, dst: Path, trim: bool = True) -> float:
    """Write ``src`` as 16 kHz mono PCM_16 WAV at ``dst`` (idempotent); its length in seconds,
    0 when too short to keep."""
    import soundfile as sf

    if dst.exists():
        return sf.info(str(dst)).duration
    import torch
    import torchaudio.functional as AF

    from autoenc.runtime.audio_io import read_audio, write_audio
    from autoenc.runtime.media import MediaError

    try:
        samples, rate = read_audio(src)
    except MediaError as exc:
        log.warning("corpus: left out %s: %s", src, exc)
        return 0.0
    x = samples.mean(axis=1)
    if rate != RATE:
        x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), rate, RATE).numpy()
    if trim:
        x = trimmed(x, RATE)
    if len(x) < MIN_SECONDS * RATE or not np.abs(x).max() > 0:
        return 0.0
    write_audio(dst, (0.89 * x / np.abs(x).max()).astype(np.float32)[:, None], RATE)
    return len(x) / RATE


def _write(out_dir: Path, items: list[tuple[str, Path, str]], trim: bool = True, extra_rows: list[str] = ()) -> Path:
    """Convert ``(source, file, package)`` items into ``out_dir/<source>/<name>.wav`` with SOURCES.csv."""
    rows, seconds, seen = list(extra_rows), 0.0, set()
    for source, f, package in items:
        rel = f"{source}/{f.parent.name + '-' if package == 'klettres-data' else ''}{f.stem}.wav"
        if rel in seen:  # the same line recorded again for another level: keep the first
            continue
        seen.add(rel)
        took = _convert(f, out_dir / rel, trim)
        if took:
            seconds += took
            rows.append(f'{rel},{package},"{LICENCES[package]}",/usr/{f.as_posix().split("/usr/", 1)[-1]}\n')

    def write_csv(fobj) -> None:
        fobj.write(("file,package,licence,origin\n" + "".join(rows)).encode())

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "SOURCES.csv", write_csv)
    log.info("corpus: %d clips, %.1f min in %s", len(rows), seconds / 60, out_dir)
    return out_dir


def _need(package: str) -> Path:
    root = _package_root(package)
    if root is None:
        raise CorpusMissing(f"Debian package {package} is neither installed nor unpacked under {cache_dir() / 'debian' / package}; run `make data`")
    return root


def build_voice_corpus(out_dir: Path | None = None, include_asterisk: bool = True) -> Path:
    """The training/validation voices (every source but the benchmark's) under ``out_dir``
    (default ``$AUTOENC_CACHE/corpus/voices``); idempotent. The Asterisk prompts are copied in
    from the one-voice corpus (:func:`autoenc.corpus.build_speech_corpus`)."""
    from autoenc.corpus import build_speech_corpus

    out_dir = Path(out_dir) if out_dir else cache_dir() / "corpus" / "voices"
    items = [(s, f, "fillets-ng-data-cs") for s, f in _fillets(_need("fillets-ng-data-cs"), "cs")]
    items += [(s, f, "hedgewars-data") for s, f in _hedgewars(_need("hedgewars-data"))]
    items += [(s, f, "klettres-data") for s, f in _klettres(_need("klettres-data"), lambda lang: lang != BENCHMARK_LANGUAGE)]
    asterisk = build_speech_corpus() if include_asterisk else None
    extra = []
    for f in sorted(asterisk.rglob("*.wav")) if asterisk else []:  # flattened: the first folder is the source
        rel = "asterisk-en/" + f.relative_to(asterisk).as_posix().replace("/", "-")
        if not (out_dir / rel).exists():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out_dir / rel)
        extra.append(f'{rel},asterisk-core-sounds-en-g722,"CC-BY-SA-3.0",{ASTERISK_SPEECH}/{f.relative_to(asterisk).with_suffix(".g722").as_posix()}\n')
    return _write(out_dir, items, extra_rows=extra)


def build_benchmark_voices(out_dir: Path | None = None) -> Path:
    """The held-out Dutch voices (``fillets-ng-data-nl``, klettres Dutch) under ``out_dir``
    (default ``$AUTOENC_CACHE/corpus/voices-benchmark``): never trained on."""
    out_dir = Path(out_dir) if out_dir else cache_dir() / "corpus" / "voices-benchmark"
    items = [(s, f, "fillets-ng-data-nl") for s, f in _fillets(_need("fillets-ng-data-nl"), BENCHMARK_LANGUAGE)]
    items += [(s, f, "klettres-data") for s, f in _klettres(_need("klettres-data"), lambda lang: lang == BENCHMARK_LANGUAGE)]
    return _write(out_dir, items)


def build_effects_bank(out_dir: Path | None = None) -> Path:
    """Hedgewars' recorded sound effects (not its voices) as 16 kHz WAV, untrimmed: real
    non-stationary noise for the ``effects`` noise (default ``$AUTOENC_CACHE/corpus/effects``)."""
    out_dir = Path(out_dir) if out_dir else cache_dir() / "corpus" / "effects"
    root = _need("hedgewars-data")
    items = [("hedgewars", f, "hedgewars-data") for f in sorted((root / HEDGEWARS).glob("*.ogg"))]
    _write(out_dir, items, trim=False)
    return out_dir / "hedgewars"
