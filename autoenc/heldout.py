"""Held-out demo/benchmark folders: noisy copies of val photos, and folder-level scoring.

``make_noisy_folder`` writes each val image as clean and noisy 8-bit PNGs (as users have
them); ``score_folders`` compares noisy and denoised folders against the clean one
(numpy only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from autoenc.config import NoiseConfig
from autoenc.media import load_float, save_array
from autoenc.metrics import psnr, ssim

log = logging.getLogger(__name__)


def make_noisy_folder(data_root: Path, val_files: list[str], channels: int, noise: NoiseConfig, seed: int, out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/clean`` and ``out_dir/noisy`` (same names, PNG); returns both folders."""
    import torch

    from autoenc.noise import pair_generator, synthesize

    clean_dir, noisy_dir = Path(out_dir) / "clean", Path(out_dir) / "noisy"
    for j, rel in enumerate(val_files):
        clean = load_float(Path(data_root) / rel, channels)
        noisy, _ = synthesize(torch.from_numpy(clean.transpose(2, 0, 1).copy()), noise, pair_generator(seed, "heldout", j))
        name = Path(rel).with_suffix(".png")
        save_array(clean_dir / name, clean)
        save_array(noisy_dir / name, noisy.permute(1, 2, 0).numpy())
    log.info("wrote %d held-out pairs to %s", len(val_files), out_dir)
    return clean_dir, noisy_dir


def score_folders(clean_dir: Path, noisy_dir: Path, denoised_dir: Path) -> list[dict]:
    """PSNR (dB) / SSIM of each noisy and denoised file against its clean twin."""
    rows = []
    for clean_path in sorted(Path(clean_dir).rglob("*.png")):
        rel = clean_path.relative_to(clean_dir)
        c = load_float(clean_path, 1)
        n = load_float(Path(noisy_dir) / rel, 1)
        d_path = Path(denoised_dir) / rel
        d = load_float(d_path, 1) if d_path.exists() else None
        rows.append({
            "file": str(rel),
            "noisy_psnr": psnr(c, n),
            "denoised_psnr": psnr(c, d) if d is not None else float("nan"),
            "noisy_ssim": ssim(c, n),
            "denoised_ssim": ssim(c, d) if d is not None else float("nan"),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """Fixed-width table with a mean row."""
    head = f"{'file':<28} {'noisy PSNR':>10} {'denoised':>9} {'gain':>6} {'noisy SSIM':>10} {'denoised':>9}"
    lines = [head, "-" * len(head)]
    for r in rows + ([{"file": "MEAN", **{k: float(np.mean([x[k] for x in rows])) for k in rows[0] if k != "file"}}] if rows else []):
        lines.append(
            f"{r['file']:<28} {r['noisy_psnr']:>10.2f} {r['denoised_psnr']:>9.2f} {r['denoised_psnr'] - r['noisy_psnr']:>+6.2f} "
            f"{r['noisy_ssim']:>10.4f} {r['denoised_ssim']:>9.4f}"
        )
    return "\n".join(lines)
