"""Validation of a trained denoiser: metrics per noise setting, the final evaluation written to
``metrics.json`` (with the split), and the before/after picture of the exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoenc.checkpoint import full_history, load_checkpoint
from autoenc.config import RunConfig
from autoenc.data import SMOOTH_VAL_CROP, TrainingData, load_split, model_input, noise_settings, read_manifest, val_pairs
from autoenc.metrics import pesq_wb, psnr, si_sdr, ssim, stoi


@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]], *, full: bool = True, sample_rate: int = 16000) -> dict[str, dict[str, float]]:
    """Mean quality of the noisy input and the denoised output against clean, per setting.

    Images: PSNR (dB) and SSIM. Audio: SI-SDR (dB), and with ``full`` wideband PESQ and STOI
    (slower; per-epoch validation uses SI-SDR only).
    """
    model.eval()
    out = {}
    for tag, items in pairs.items():
        acc: dict[str, list[float]] = {}
        for noisy, clean in items:
            den = model(model_input(model, noisy[None], sample_rate))[0]
            if model.modality == "image":
                c, n, d = (t.permute(1, 2, 0).numpy() for t in (clean, noisy, den.clamp(0, 1)))
                scores = {"psnr": psnr, "ssim": ssim}
            else:
                c, n, d = (t[0].numpy() for t in (clean, noisy, den.clamp(-1, 1)))
                scores = {"si_sdr": si_sdr} | ({"pesq": lambda a, b: pesq_wb(a, b, sample_rate), "stoi": lambda a, b: stoi(a, b, sample_rate)} if full else {})
            for name, fn in scores.items():
                acc.setdefault(f"noisy_{name}", []).append(fn(c, n))
                acc.setdefault(f"denoised_{name}", []).append(fn(c, d))
        out[tag] = {k: float(np.nanmean(v)) for k, v in acc.items()} | {"items": len(items)}
    return out


def score(metrics: dict[str, dict[str, float]]) -> float:
    """One number to pick the best checkpoint: mean denoised PSNR (images) or SI-SDR (audio)."""
    key = "denoised_psnr" if "denoised_psnr" in next(iter(metrics.values())) else "denoised_si_sdr"
    return float(np.mean([m[key] for m in metrics.values()]))


def evaluate_checkpoint(cfg: RunConfig, checkpoint: Path, data_root: Path, manifest_path: Path) -> dict[str, Any]:
    """Final validation metrics of a checkpoint on the val split, with the split recorded."""
    model, ckpt = load_checkpoint(checkpoint)
    entries = read_manifest(manifest_path)
    data = TrainingData(cfg, data_root, entries)
    split = {"val_files": [e.path for e in entries if e.split == "val"], "train_files": sum(e.split == "train" for e in entries)}
    if cfg.modality == "image":
        split["val_crop"] = cfg.data.val_crop
        if cfg.data.val_smooth:
            split["val_smooth"] = f"{cfg.data.val_smooth} smoothest {SMOOTH_VAL_CROP} px crops of each val image, in every setting beside the centre crops"
    else:
        split |= {"val_items": len(next(iter(data.val.values()))), "max_val_seconds": cfg.data.max_val_seconds, "music": "every 5th background recording (sorted) held out for val noise"}
    return {
        "modality": cfg.modality,
        "split": split,
        "epochs_trained": len(full_history(checkpoint)),
        "best_epoch": ckpt["epoch"],
        "params": sum(p.numel() for p in model.parameters()),
        "val": evaluate(model, data.val, full=True, sample_rate=cfg.data.sample_rate),
    }


def before_after(cfg: RunConfig, onnx_path: Path, data_root: Path, manifest_path: Path, run_dir: Path) -> Path:
    """Picture of the first val item denoised by the exported ONNX model: noisy | denoised |
    clean side by side (images, ``before_after.png``) or stacked spectrograms (audio,
    ``spectrograms.png``), with the score of each in its label."""
    from autoenc.runtime.report import save_picture, side_by_side, spectrogram, stacked, with_axes

    entries = read_manifest(manifest_path)
    first = [next(e for e in entries if e.split == "val")]
    tag, noise = next(iter(noise_settings(cfg).items()))
    if cfg.modality == "image":
        from autoenc.runtime.infer import OnnxDenoiser

        noisy_t, clean_t = val_pairs(load_split(data_root, first, "val", cfg.data.channels), cfg.data, noise, cfg.seed, tag)[0]
        noisy, clean = noisy_t.permute(1, 2, 0).numpy(), clean_t.permute(1, 2, 0).numpy()
        den = OnnxDenoiser(onnx_path).denoise(noisy)
        pic = side_by_side([(f"noisy {psnr(clean, noisy):.2f} dB", noisy), (f"denoised {psnr(clean, den):.2f} dB", den), ("clean", clean)])
        out = Path(run_dir) / "before_after.png"
    else:
        from autoenc.runtime.audio_infer import OnnxAudioDenoiser

        data = TrainingData(cfg, data_root, first + [e for e in entries if e.split == "train"][:8])
        noisy_t, clean_t = data.val[tag][0]
        noisy, clean = noisy_t[0].numpy(), clean_t[0].numpy()
        den = OnnxAudioDenoiser(onnx_path).denoise(noisy[:, None])[:, 0]
        pic = stacked([
            (f"noisy ({tag}) SI-SDR {si_sdr(clean, noisy):.1f} dB", with_axes(spectrogram(noisy), cfg.data.sample_rate, len(noisy) / cfg.data.sample_rate)),
            (f"denoised SI-SDR {si_sdr(clean, den):.1f} dB", with_axes(spectrogram(den), cfg.data.sample_rate, len(den) / cfg.data.sample_rate)),
            ("clean", with_axes(spectrogram(clean), cfg.data.sample_rate, len(clean) / cfg.data.sample_rate)),
        ])
        out = Path(run_dir) / "spectrograms.png"
    save_picture(out, pic)
    return out
