"""Training: ``fit`` calls ``train_one_epoch`` and ``evaluate``; checkpoints each epoch
(``last.pt``) and on improvement (``best.pt``), written atomically; ``resume`` continues
from ``last.pt``. A checkpoint holds the registry name, kwargs, state, config and history.
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from autoenc import __version__
from autoenc.config import NoiseConfig, RunConfig, TrainConfig
from autoenc.data import PatchPairs, load_split, read_manifest, val_pairs
from autoenc.media import atomic_write
from autoenc.metrics import psnr, ssim
from autoenc.models import build_model, get_model

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


LOSSES = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
    "charbonnier": lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean(),
}


def save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, checkpoint)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = get_model(ckpt["model"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state"])
    return model.eval(), ckpt


def noise_settings(cfg: RunConfig) -> dict[str, NoiseConfig]:
    """Validation noise settings by tag: each ``eval.noises`` spec, or the training noise."""
    if not cfg.eval.noises:
        return {"train-noise": cfg.noise}
    out = {}
    for spec in cfg.eval.noises:
        params = "-".join(f"{k}{v[0]:g}" if isinstance(v, tuple) and v[0] == v[1] else f"{k}{v}" for k, v in spec.model_dump(exclude={"name", "weight"}).items())
        out[f"{spec.name}-{params}"] = cfg.noise.model_copy(update={"mixture": [spec]})
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]) -> dict[str, dict[str, float]]:
    """Mean PSNR (dB) and SSIM of noisy input and denoised output against clean, per setting."""
    model.eval()
    out = {}
    for tag, items in pairs.items():
        acc = {"noisy_psnr": [], "denoised_psnr": [], "noisy_ssim": [], "denoised_ssim": []}
        for noisy, clean in items:
            den = model(noisy[None]).clamp(0, 1)[0]
            c, n, d = (t.permute(1, 2, 0).numpy() for t in (clean, noisy, den))
            acc["noisy_psnr"].append(psnr(c, n))
            acc["denoised_psnr"].append(psnr(c, d))
            acc["noisy_ssim"].append(ssim(c, n))
            acc["denoised_ssim"].append(ssim(c, d))
        out[tag] = {k: float(np.mean(v)) for k, v in acc.items()} | {"images": len(items)}
    return out


def train_one_epoch(model, loader, opt, loss_fn, cfg: TrainConfig, step: int, total: int, epoch: int) -> tuple[float, int]:
    """One pass over ``loader``; returns (mean loss, global step after the epoch)."""
    model.train()
    losses, t0 = [], time.perf_counter()
    for noisy, clean in loader:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        loss = loss_fn(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % cfg.log_every == 0 or step == total:
            rate = len(losses) / (time.perf_counter() - t0)
            log.info("epoch %d step %d/%d loss %.5f lr %.2e (%.1f it/s)", epoch, step, total, np.mean(losses[-cfg.log_every :]), lr_at(step, total, cfg), rate)
    return float(np.mean(losses)), step


def _score(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["denoised_psnr"] for m in metrics.values()]))


def fit(cfg: RunConfig, data_root: Path, manifest_path: Path, run_dir: Path, *, resume: bool = False) -> Path:
    """Train per ``cfg`` on the manifest's train split; returns the path of ``best.pt``."""
    run_dir = Path(run_dir)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    entries = read_manifest(manifest_path)
    ch = cfg.data.channels
    train_imgs = load_split(data_root, entries, "train", ch)
    val_imgs = load_split(data_root, entries, "val", ch)
    pairs = {tag: val_pairs(val_imgs, cfg.data, noise, cfg.seed, tag) for tag, noise in noise_settings(cfg).items()}

    torch.manual_seed(cfg.seed)  # weight init only; data draws use their own generators
    model = build_model(cfg.model, ch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loss_fn = LOSSES[cfg.train.loss]
    steps_per_epoch = math.ceil(cfg.data.patches_per_epoch / cfg.train.batch_size)
    total = steps_per_epoch * cfg.train.epochs
    start_epoch, step, history, best = 0, 0, [], -math.inf
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        if ckpt.get("resume_hash") != cfg.resume_hash():
            raise ValueError(f"--resume: {last_path} was trained with a different config (only train.epochs, logging, eval and export may change)")
        model.load_state_dict(ckpt["state"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, step, history, best = ckpt["epoch"] + 1, ckpt["step"], ckpt["history"], ckpt["best_score"]
        log.info("resumed from %s at epoch %d (step %d)", last_path, start_epoch, step)
    elif resume:
        log.warning("--resume: no %s, starting from scratch", last_path)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("training %s (%d params) for %d epochs x %d steps", cfg.model.name, n_params, cfg.train.epochs, steps_per_epoch)

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        ds = PatchPairs(train_imgs, cfg.data, cfg.noise, cfg.seed, epoch)
        loader = DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=False, num_workers=0)
        train_loss, step = train_one_epoch(model, loader, opt, loss_fn, cfg.train, step, total, epoch)
        metrics = evaluate(model, pairs)
        score = _score(metrics)
        history.append({"epoch": epoch, "step": step, "train_loss": train_loss, "val": metrics, "seconds": time.perf_counter() - t0})
        log.info("epoch %d done: train loss %.5f, val PSNR %.2f dB (%.0fs)", epoch, train_loss, score, history[-1]["seconds"])
        ckpt = {
            "model": cfg.model.name,
            "kwargs": {"channels": ch, **cfg.model.kwargs},
            "state": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "step": step,
            "history": history,
            "best_score": max(best, score),
            "config": cfg.model_dump(mode="json"),
            "config_hash": cfg.hash(),
            "resume_hash": cfg.resume_hash(),
            "autoenc_version": __version__,
        }
        if score > best:
            best = score
            save_checkpoint(best_path, {**ckpt, "optimizer": None})
        save_checkpoint(last_path, ckpt)
    if not best_path.exists():  # resumed a finished run
        save_checkpoint(best_path, {**torch.load(last_path, map_location="cpu", weights_only=False), "optimizer": None})
    return best_path


def evaluate_checkpoint(cfg: RunConfig, checkpoint: Path, data_root: Path, manifest_path: Path) -> dict[str, Any]:
    """Final validation metrics of a checkpoint on the val split, with the split recorded."""
    model, ckpt = load_checkpoint(checkpoint)
    entries = read_manifest(manifest_path)
    val = [e for e in entries if e.split == "val"]
    val_imgs = load_split(data_root, entries, "val", cfg.data.channels)
    pairs = {tag: val_pairs(val_imgs, cfg.data, noise, cfg.seed, tag) for tag, noise in noise_settings(cfg).items()}
    return {
        "split": {"val_files": [e.path for e in val], "train_files": sum(e.split == "train" for e in entries), "val_crop": cfg.data.val_crop},
        "epochs_trained": ckpt["epoch"] + 1,
        "params": sum(p.numel() for p in model.parameters()),
        "val": evaluate(model, pairs),
    }


def before_after(cfg: RunConfig, onnx_path: Path, data_root: Path, manifest_path: Path, out_png: Path) -> Path:
    """Picture of the first val image (centre crop): noisy | denoised by the exported ONNX
    model | clean, with PSNRs in the labels."""
    from autoenc.infer import OnnxDenoiser
    from autoenc.report import save_picture, side_by_side

    entries = read_manifest(manifest_path)
    clean_t = load_split(data_root, [next(e for e in entries if e.split == "val")], "val", cfg.data.channels)
    tag, noise = next(iter(noise_settings(cfg).items()))
    noisy_t, clean_t = val_pairs(clean_t, cfg.data, noise, cfg.seed, tag)[0]
    noisy, clean = noisy_t.permute(1, 2, 0).numpy(), clean_t.permute(1, 2, 0).numpy()
    den = OnnxDenoiser(onnx_path).denoise(noisy)
    pic = side_by_side([
        (f"noisy {psnr(clean, noisy):.2f} dB", noisy),
        (f"denoised {psnr(clean, den):.2f} dB", den),
        ("clean", clean),
    ])
    save_picture(out_png, pic)
    return out_png
