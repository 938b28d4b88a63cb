"""Held-out demo/benchmark folders: noisy copies of val photos or utterances, and
folder-level scoring of noisy and denoised files against their clean twins.

Noisy images are 8-bit PNGs, noisy audio 16-bit WAV: what users have.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from autoenc.config import NoiseConfig, RunConfig
from autoenc.runtime.media import load_float, save_array, modality_of
from autoenc.metrics import pesq_wb, psnr, si_sdr, ssim, stoi

log = logging.getLogger(__name__)


def make_noisy_folder(data_root: Path, val_files: list[str], channels: int, noise: NoiseConfig, seed: int, out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/clean`` and ``out_dir/noisy`` images (same names, PNG); returns both."""
    import torch

    from autoenc.noise import pair_generator, synthesize

    clean_dir, noisy_dir = Path(out_dir) / "clean", Path(out_dir) / "noisy"
    for j, rel in enumerate(val_files):
        clean = load_float(Path(data_root) / rel, channels)
        noisy, _ = synthesize(torch.from_numpy(clean.transpose(2, 0, 1).copy()), noise, pair_generator(seed, "heldout", j))
        name = Path(rel).with_suffix(".png")
        save_array(clean_dir / name, clean)
        save_array(noisy_dir / name, noisy.permute(1, 2, 0).numpy())
    log.info("wrote %d held-out image pairs to %s", len(val_files), out_dir)
    return clean_dir, noisy_dir


TRAIN_TALKERS = 32  # training clips loaded as babble voices when the held-out split has one file


def make_noisy_audio_folder(cfg: RunConfig, data_root: Path, val_files: list[str], out_dir: Path, limit: int = 12, train_files: list[str] = ()) -> tuple[Path, Path]:
    """Write up to ``limit`` held-out utterances as ``clean/`` and ``noisy/`` 16-bit WAV at the
    model rate, cycling through the config's eval noise settings (file names say which).

    Babble is spoken by the other held-out voices; in a held-out split of one file, by up to
    ``TRAIN_TALKERS`` of ``train_files`` taken evenly through the list (as validation draws it), and without those a babble
    setting is a ValueError saying so."""
    from autoenc.runtime.audio_io import write_audio
    from autoenc.data import load_clip, noise_banks, noise_settings, other_talkers, source_of, val_segments

    clean_dir, noisy_dir = Path(out_dir) / "clean", Path(out_dir) / "noisy"
    sr = cfg.data.sample_rate
    settings = list(noise_settings(cfg).items())
    _, held_banks = noise_banks(cfg, sr)
    speech = [load_clip(Path(data_root) / f, sr) for f in val_files]
    sources = [source_of(f) for f in val_files]
    fallback: list | None = None
    for j, rel in enumerate(val_files[:limit]):
        tag, noise = settings[j % len(settings)]
        others = other_talkers(speech, sources, j)  # babble from other held-out voices
        if not others and any(s.name == "babble" for s in [*noise.mixture, *noise.then]):
            if fallback is None:  # a split of one file: the training voices, loaded once
                spread = list(train_files)[:: max(1, -(-len(train_files) // TRAIN_TALKERS))]  # evenly through the split: a manifest lists a source's files together
                fallback = [load_clip(Path(data_root) / f, sr) for f in spread]
            if not fallback:
                raise ValueError(f"eval noise {tag}: babble needs other voices, but the held-out split has one file and no training files were given")
            others = fallback
        (noisy, clean), = val_segments([speech[j]], cfg.data, noise, cfg.seed + 1, f"heldout-{j}", {"speech": others, **held_banks})
        name = Path(f"{Path(rel).with_suffix('').as_posix().replace('/', '_')}__{tag}.wav")
        write_audio(clean_dir / name, clean[0].numpy(), sr)
        write_audio(noisy_dir / name, noisy[0].numpy(), sr)
    log.info("wrote %d held-out utterance pairs to %s", min(limit, len(val_files)), out_dir)
    return clean_dir, noisy_dir


def _read(path: Path, modality: str) -> np.ndarray:
    if modality == "image":
        return load_float(path, 1)
    from autoenc.runtime.audio_io import read_audio

    return read_audio(path)[0][:, 0]


def score_folders(clean_dir: Path, noisy_dir: Path, denoised_dir: Path) -> list[dict]:
    """Per file: PSNR (dB) / SSIM for images, SI-SDR (dB) / PESQ / STOI for audio, of the
    noisy and the denoised file against the clean twin (NaN where no denoised file exists)."""
    rows = []
    for clean_path in sorted(p for p in Path(clean_dir).rglob("*") if modality_of(p)):
        rel = clean_path.relative_to(clean_dir)
        kind = modality_of(clean_path)
        metrics = {"psnr": psnr, "ssim": ssim} if kind == "image" else {"si_sdr": si_sdr, "pesq": pesq_wb, "stoi": stoi}
        c, n = _read(clean_path, kind), _read(Path(noisy_dir) / rel, kind)
        d_path = Path(denoised_dir) / rel
        d = _read(d_path, kind) if d_path.exists() else None
        row: dict = {"file": str(rel)}
        for name, fn in metrics.items():
            row[f"noisy_{name}"] = fn(c, n)
            row[f"denoised_{name}"] = fn(c, d) if d is not None else float("nan")
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Fixed-width table (noisy / denoised per metric) with a mean row."""
    if not rows:
        return "(no files)"
    names = [k[len("noisy_") :] for k in rows[0] if k.startswith("noisy_")]
    width = max(28, max(len(r["file"]) for r in rows))
    head = f"{'file':<{width}}" + "".join(f" {('noisy ' + n):>12} {('denoised'):>9}" for n in names)
    lines = [head, "-" * len(head)]
    mean = {"file": "MEAN", **{k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k != "file"}}
    for r in rows + [mean]:
        lines.append(f"{r['file']:<{width}}" + "".join(f" {r[f'noisy_{n}']:>12.3f} {r[f'denoised_{n}']:>9.3f}" for n in names))
    return "\n".join(lines)
