"""Run reports: a labelled before/after picture and a short markdown summary (Pillow only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from autoenc.runtime.media import atomic_write


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


def tile_grid(images: np.ndarray, cols: int, scale: int = 1) -> Image.Image:
    """(N, 1, h, w) floats on 0..1 as a gray grid with 1-pixel white borders, ``cols`` wide,
    each cell enlarged ``scale`` times (nearest)."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    canvas = np.ones((rows * (h + 2), cols * (w + 2)), np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = im[0]
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale != 1 else img


def save_picture(path: Path, img: Image.Image) -> None:
    atomic_write(path, lambda f: img.save(f, format="PNG"))


UNITS = {"psnr": "PSNR dB", "ssim": "SSIM", "si_sdr": "SI-SDR dB", "pesq": "PESQ", "stoi": "STOI"}


def metrics_table(val: dict[str, dict[str, float]]) -> str:
    """Markdown table: per noise setting, each metric for the noisy input and denoised output."""
    first = next(iter(val.values()))
    names = [k[len("noisy_") :] for k in first if k.startswith("noisy_")]
    head = ["noise", "items"] + [f"{a} {UNITS.get(n, n)}" for n in names for a in ("noisy", "denoised")]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for tag, m in val.items():
        cells = [tag, str(m.get("items", ""))] + [f"{m[f'{a}_{n}']:.3f}" if n in ("ssim", "stoi") else f"{m[f'{a}_{n}']:.2f}" for n in names for a in ("noisy", "denoised")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def spectrogram(x: np.ndarray, n_fft: int = 512, hop: int = 128, height: int = 160) -> np.ndarray:
    """Log-magnitude spectrogram of a 1-D signal as a float (height, frames, 1) image, 0..1
    over an 80 dB range, low frequencies at the bottom."""
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1)).T  # (freq, time)
    db = 20 * np.log10(mag + 1e-8)
    img = np.clip((db - (db.max() - 80)) / 80, 0, 1)[::-1]
    rows = np.linspace(0, img.shape[0] - 1, height).astype(int)
    return img[rows][..., None].astype(np.float32)


def with_axes(spec: np.ndarray, rate: float, seconds: float, left: int = 40, bottom: int = 14) -> np.ndarray:
    """A :func:`spectrogram` image with labelled axes: frequency ticks in kHz on the left (0 to
    the Nyquist frequency ``rate / 2``) and time ticks in seconds along the bottom."""
    h, w = spec.shape[:2]
    canvas = Image.new("RGB", (left + w, h + bottom), "white")
    a = (np.clip(spec, 0, 1) * 255 + 0.5).astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a), (left, 0))
    draw = ImageDraw.Draw(canvas)
    nyquist = rate / 2000
    step = next(s for s in (0.5, 1, 2, 4, 5, 10, 20) if nyquist / s <= 5)
    k = 0.0
    while k <= nyquist + 1e-9:
        y = h - 1 - round(k / nyquist * (h - 1))
        draw.line([(left - 4, y), (left - 1, y)], fill="black")
        draw.text((2, max(0, min(h - 10, y - 5))), f"{k:g}k", fill="black")
        k += step
    tstep = next(s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60) if seconds / s <= 8)
    t = 0.0
    while t <= seconds + 1e-9:
        x = left + round(t / max(seconds, 1e-9) * (w - 1))
        draw.line([(x, h), (x, h + 3)], fill="black")
        draw.text((min(x, left + w - 24), h + 2), f"{t:g}s", fill="black")
        t += tstep
    draw.text((2, h + 2), "Hz", fill="black")
    return np.asarray(canvas, np.float32) / 255.0


def detail_window(gray: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner (y, x) of the ``size`` x ``size`` window of a 2-D image with the most
    detail (gradient energy): where a 1:1 crop shows what denoising did."""
    h, w = gray.shape
    if h <= size and w <= size:
        return 0, 0
    step = max(1, min(h, w) // 256)  # judge on a small copy; exact enough to pick a region
    g = gray[::step, ::step].astype(np.float32)
    energy = np.zeros_like(g)
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    s = max(1, size // step)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sh, sw = min(s, g.shape[0]), min(s, g.shape[1])
    sums = integral[sh:, sw:] - integral[:-sh, sw:] - integral[sh:, :-sw] + integral[:-sh, :-sw]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return min(y * step, max(0, h - size)), min(x * step, max(0, w - size))


def stacked(panels: list[tuple[str, np.ndarray]], gap: int = 4, label_h: int = 14) -> Image.Image:
    """Stack float (H, W, 1|3) panels top to bottom with a label above each."""
    w = max(p.shape[1] for _, p in panels)
    h = sum(p.shape[0] + label_h + gap for _, p in panels)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, arr in panels:
        draw.text((2, y + 1), label, fill="black")
        a = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
        a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
        canvas.paste(Image.fromarray(a), (0, y + label_h))
        y += arr.shape[0] + label_h + gap
    return canvas


def write_train_report(run_dir: Path, name: str, metrics: dict[str, Any], history: list[dict], picture: str, config_hash: str) -> Path:
    """Write ``report.md`` next to the run's artifacts; returns its path."""
    split = metrics["split"]
    val_files = split["val_files"]
    shown = ", ".join(val_files[:12]) + (f", ... ({len(val_files)} files)" if len(val_files) > 12 else "")
    how = f"centre crops of {split['val_crop']} px" if "val_crop" in split else f"first {split['max_val_seconds']} s of {split['val_items']} utterances; {split['music']}"
    lines = [
        f"# Run report: {name}",
        "",
        f"Config hash `{config_hash}`; {metrics['params']} parameters; {metrics['epochs_trained']} epochs trained, best checkpoint from epoch {metrics['best_epoch']}.",
        f"Validation split (never trained on): {shown} ({how}); {split['train_files']} training files.",
        "",
        "## Validation metrics (best checkpoint)",
        "",
        metrics_table(metrics["val"]),
        "",
        "## Training history",
        "",
        "| epoch | train loss | val score (mean denoised PSNR or SI-SDR, dB) | seconds |",
        "|---|---|---|---|",
    ]
    for h in history:
        lines.append(f"| {h['epoch']} | {h['train_loss']:.5f} | {h['score']:.2f} | {h['seconds']:.0f} |")
    lines += ["", f"![noisy / denoised / clean]({picture})", "", "Artifacts: `best.pt`, `last.pt`, `model.onnx`, `metrics.json`, `manifest.csv`."]
    path = Path(run_dir) / "report.md"
    atomic_write(path, lambda f: f.write("\n".join(lines).encode() + b"\n"))
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"))
