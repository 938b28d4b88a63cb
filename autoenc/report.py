"""Run reports: a labelled before/after picture and a short markdown summary (Pillow only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from autoenc.media import atomic_write


def side_by_side(panels: list[tuple[str, np.ndarray]], gap: int = 4, label_h: int = 14) -> Image.Image:
    """Concatenate float (H, W, C) 0..1 panels left to right with a text label above each."""
    h = max(p.shape[0] for _, p in panels)
    w = sum(p.shape[1] for _, p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (w, h + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, arr in panels:
        a = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
        a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
        canvas.paste(Image.fromarray(a), (x, label_h))
        draw.text((x + 2, 1), label, fill="black")
        x += arr.shape[1] + gap
    return canvas


def save_picture(path: Path, img: Image.Image) -> None:
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def metrics_table(val: dict[str, dict[str, float]]) -> str:
    """Markdown table of noisy vs denoised PSNR/SSIM per noise setting."""
    rows = ["| noise | images | noisy PSNR dB | denoised PSNR dB | gain dB | noisy SSIM | denoised SSIM |", "|---|---|---|---|---|---|---|"]
    for tag, m in val.items():
        rows.append(
            f"| {tag} | {m.get('images', '')} | {m['noisy_psnr']:.2f} | {m['denoised_psnr']:.2f} | "
            f"{m['denoised_psnr'] - m['noisy_psnr']:+.2f} | {m['noisy_ssim']:.4f} | {m['denoised_ssim']:.4f} |"
        )
    return "\n".join(rows)


def write_train_report(run_dir: Path, name: str, metrics: dict[str, Any], history: list[dict], picture: str, config_hash: str) -> Path:
    """Write ``report.md`` next to the run's artifacts; returns its path."""
    lines = [
        f"# Run report: {name}",
        "",
        f"Config hash `{config_hash}`; {metrics['params']} parameters; {metrics['epochs_trained']} epochs.",
        f"Validation split (never trained on): {', '.join(metrics['split']['val_files'])}"
        f" (centre crops of {metrics['split']['val_crop']} px); {metrics['split']['train_files']} training files.",
        "",
        "## Validation metrics (best checkpoint)",
        "",
        metrics_table(metrics["val"]),
        "",
        "## Training history",
        "",
        "| epoch | train loss | val PSNR dB (mean over settings) | seconds |",
        "|---|---|---|---|",
    ]
    for h in history:
        mean_psnr = np.mean([m["denoised_psnr"] for m in h["val"].values()])
        lines.append(f"| {h['epoch']} | {h['train_loss']:.5f} | {mean_psnr:.2f} | {h['seconds']:.0f} |")
    lines += ["", f"![noisy / denoised / clean]({picture})", "", "Artifacts: `best.pt`, `last.pt`, `model.onnx`, `metrics.json`, `manifest.csv`."]
    path = Path(run_dir) / "report.md"
    atomic_write(path, lambda f: f.write("\n".join(lines).encode() + b"\n"))
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"))
