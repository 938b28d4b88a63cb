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
from autoenc.data import Entry, PatchPairs, SegmentPairs, load_clips, load_split, read_manifest, val_pairs, val_segments
from autoenc.runtime.media import atomic_write
from autoenc.metrics import pesq_wb, psnr, si_sdr, ssim, stoi
from autoenc.models import build_model, get_model

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def stft_loss(est: torch.Tensor, ref: torch.Tensor, ffts: tuple[int, ...] = (512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over
    FFT sizes (hop = size / 4, Hann window) — as in Parallel WaveGAN / Demucs."""
    total = est.new_zeros(())
    e, r = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    for n in ffts:
        win = torch.hann_window(n, device=est.device)
        E = torch.stft(e, n, n // 4, window=win, return_complex=True).abs().clamp(min=1e-5)
        R = torch.stft(r, n, n // 4, window=win, return_complex=True).abs().clamp(min=1e-5)
        sc = torch.linalg.norm(R - E) / torch.linalg.norm(R).clamp(min=1e-7)
        total = total + sc + F.l1_loss(E.log(), R.log())
    return total / len(ffts)


def psnr_loss(est: torch.Tensor, ref: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Mean over samples of 10 log10(MSE + floor) (= minus the mean PSNR on the 0..1 scale).

    A plain MSE is dominated by the noisiest samples, so a blind model under-fits low noise
    (Gnanasambandam & Chan 2020); the log weighs each sample by 1 / its own error instead.
    ``floor`` (about 60 dB) stops clean inputs from pulling without bound."""
    mse = (est - ref).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(mse + floor).mean()


class Ema:
    """Exponential moving average of a model's parameters and buffers (decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` over the first updates, so early weights fade fast)."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None, updates: int = 0) -> None:
        self.decay, self.updates = decay, updates
        src = state if state is not None else model.state_dict()
        self.state = {k: v.detach().clone() for k, v in src.items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


LOSSES = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
    "charbonnier": lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean(),
    "l1+stft": lambda a, b: F.l1_loss(a, b) + 0.5 * stft_loss(a, b),
    "psnr": psnr_loss,
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


def start_from(model: torch.nn.Module, name: str, path: Path) -> dict[str, Any]:
    """Load a trained checkpoint's weights into ``model`` (registry ``name``) before training:
    the same model loads strictly, another one only through the model's ``adopt``. Returns
    what the new checkpoint records about its origin."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: no checkpoint at {path}")
    src = torch.load(path, map_location="cpu", weights_only=False)
    if src["model"] == name:
        model.load_state_dict(src["state"])
    elif hasattr(model, "adopt"):
        model.adopt(src["model"], src["state"])
    else:
        raise ValueError(f"train.init_from: {name} cannot start from a {src['model']} checkpoint")
    log.info("starting from the weights of %s (%s, config %s)", path, src["model"], src.get("config_hash"))
    return {"path": str(path), "model": src["model"], "config_hash": src.get("config_hash"), "epoch": src.get("epoch")}


def noise_settings(cfg: RunConfig) -> dict[str, NoiseConfig]:
    """Validation noise settings by tag: each ``eval.noises`` spec, or the training noise."""
    if not cfg.eval.noises:
        return {"train-noise": cfg.noise}
    out = {}
    for spec in cfg.eval.noises:
        # Range-valued parameters name the setting (sigma15, iso6400-gain2-...).
        drawn = {k: v for k, v in spec.model_dump(exclude={"name", "weight"}).items() if isinstance(v, tuple) and len(v) == 2 and all(isinstance(e, (int, float)) for e in v)}
        params = "-".join(f"{k}{v[0]:g}" if v[0] == v[1] else f"{k}{v[0]:g}..{v[1]:g}" for k, v in drawn.items())
        out[f"{spec.name}-{params}"] = cfg.noise.model_copy(update={"mixture": [spec]})
    return out


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
            den = model(noisy[None])[0]
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


class TrainingData:
    """The training split as a per-epoch dataset, plus fixed validation pairs per noise setting."""

    def __init__(self, cfg: RunConfig, data_root: Path, entries: list[Entry]) -> None:
        self.cfg = cfg
        settings = noise_settings(cfg)
        d = cfg.data
        if cfg.modality == "image":
            self.train = load_split(data_root, entries, "train", d.channels)
            val = load_split(data_root, entries, "val", d.channels)
            self.val = {tag: val_pairs(val, d, noise, cfg.seed, tag) for tag, noise in settings.items()}
            self.banks: dict = {}
            return
        self.train = load_clips(data_root, entries, "train", d.sample_rate)
        val = load_clips(data_root, entries, "val", d.sample_rate)
        music_train, music_val = music_banks(cfg, d.sample_rate)
        self.banks = {"speech": self.train, "music": music_train}
        val_banks = {"speech": self.train, "music": music_val}
        self.val = {tag: val_segments(val, d, noise, cfg.seed, tag, val_banks) for tag, noise in settings.items()}

    def dataset(self, epoch: int):
        c = self.cfg
        if c.modality == "image":
            return PatchPairs(self.train, c.data, c.noise, c.seed, epoch)
        return SegmentPairs(self.train, c.data, c.noise, c.seed, epoch, self.banks)


def music_banks(cfg: RunConfig, sample_rate: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Background recordings split by file: every 5th (sorted) is held out for validation noise.
    Empty lists when no config noise uses music."""
    names = {s.name for s in [*cfg.noise.mixture, *cfg.noise.then, *cfg.eval.noises]}
    if "music" not in names:
        return [], []
    from autoenc.corpus import build_music_bank
    from autoenc.data import load_clip

    root = Path(cfg.data.music_dir) if cfg.data.music_dir else build_music_bank()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
    if len(files) < 2:
        raise ValueError(f"music noise needs at least 2 recordings in {root} (one is held out for validation)")
    clips = [load_clip(f, sample_rate) for f in files]
    return [c for i, c in enumerate(clips) if i % 5 != 4], [c for i, c in enumerate(clips) if i % 5 == 4]


def train_one_epoch(model, loader, opt, loss_fn, cfg: TrainConfig, step: int, total: int, epoch: int, ema: Ema | None = None) -> tuple[float, int]:
    """One pass over ``loader`` (updating ``ema`` after each step); returns (mean loss, global
    step after the epoch)."""
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
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        step += 1
        if step % cfg.log_every == 0 or step == total:
            rate = len(losses) / (time.perf_counter() - t0)
            log.info("epoch %d step %d/%d loss %.4f lr %.2e (%.1f it/s)", epoch, step, total, np.mean(losses[-cfg.log_every :]), lr_at(step, total, cfg), rate)
    return float(np.mean(losses)), step


def fit(cfg: RunConfig, data_root: Path, manifest_path: Path, run_dir: Path, *, resume: bool = False) -> Path:
    """Train per ``cfg`` on the manifest's train split; returns the path of ``best.pt``."""
    run_dir = Path(run_dir)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    data = TrainingData(cfg, data_root, read_manifest(manifest_path))
    ch = cfg.data.channels if cfg.modality == "image" else 1

    torch.manual_seed(cfg.seed)  # weight init only; data draws use their own generators
    model = build_model(cfg.model, ch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loss_fn = LOSSES[cfg.train.loss]
    steps_per_epoch = math.ceil(cfg.data.patches_per_epoch / cfg.train.batch_size)
    total = steps_per_epoch * cfg.train.epochs
    start_epoch, step, history, best, init_from = 0, 0, [], -math.inf, None
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        if ckpt.get("resume_hash") != cfg.resume_hash():
            raise ValueError(f"--resume: {last_path} was trained with a different config (only train.epochs, logging, eval and export may change)")
        model.load_state_dict(ckpt.get("raw_state") or ckpt["state"])  # raw_state: the weights under the EMA
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, step, history, best = ckpt["epoch"] + 1, ckpt["step"], ckpt["history"], ckpt["best_score"]
        init_from = ckpt.get("init_from")
        log.info("resumed from %s at epoch %d (step %d)", last_path, start_epoch, step)
    elif resume:
        log.warning("--resume: no %s, starting from scratch", last_path)
    if cfg.train.init_from and step == 0:
        init_from = start_from(model, cfg.model.name, cfg.train.init_from)
    ema = None
    if cfg.train.ema_decay:
        resumed = resume and last_path.exists()
        ema = Ema(model, cfg.train.ema_decay, ckpt["state"] if resumed else None, ckpt.get("ema_updates", 0) if resumed else 0)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("training %s (%d params) for %d epochs x %d steps", cfg.model.name, n_params, cfg.train.epochs, steps_per_epoch)

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        loader = DataLoader(data.dataset(epoch), batch_size=cfg.train.batch_size, shuffle=False, num_workers=0)
        train_loss, step = train_one_epoch(model, loader, opt, loss_fn, cfg.train, step, total, epoch, ema)
        raw_state = None
        if ema is not None:  # evaluate, keep and export the averaged weights
            raw_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema.state)
        metrics = evaluate(model, data.val, full=False, sample_rate=cfg.data.sample_rate)
        val_score = score(metrics)
        history.append({"epoch": epoch, "step": step, "train_loss": train_loss, "val": metrics, "score": val_score, "seconds": time.perf_counter() - t0})
        log.info("epoch %d done: train loss %.5f, val %s %.2f dB (%.0fs)", epoch, train_loss, "PSNR" if cfg.modality == "image" else "SI-SDR", val_score, history[-1]["seconds"])
        ckpt = {
            "model": cfg.model.name,
            "kwargs": {"channels": ch, **cfg.model.kwargs},
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "raw_state": raw_state,
            "ema_updates": ema.updates if ema is not None else 0,
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "step": step,
            "history": history,
            "best_score": max(best, val_score),
            "config": cfg.model_dump(mode="json"),
            "config_hash": cfg.hash(),
            "resume_hash": cfg.resume_hash(),
            "init_from": init_from,
            "autoenc_version": __version__,
        }
        if val_score > best:
            best = val_score
            save_checkpoint(best_path, {**ckpt, "optimizer": None, "raw_state": None})
        save_checkpoint(last_path, ckpt)
        if raw_state is not None:
            model.load_state_dict(raw_state)
    if not best_path.exists():  # resumed a finished run
        save_checkpoint(best_path, {**torch.load(last_path, map_location="cpu", weights_only=False), "optimizer": None})
    return best_path


def full_history(checkpoint: Path) -> list[dict]:
    """The whole run's history: best.pt only knows the epochs up to itself; last.pt beside it knows all."""
    last = Path(checkpoint).parent / "last.pt"
    return torch.load(last if last.exists() else checkpoint, map_location="cpu", weights_only=False)["history"]


def evaluate_checkpoint(cfg: RunConfig, checkpoint: Path, data_root: Path, manifest_path: Path) -> dict[str, Any]:
    """Final validation metrics of a checkpoint on the val split, with the split recorded."""
    model, ckpt = load_checkpoint(checkpoint)
    entries = read_manifest(manifest_path)
    data = TrainingData(cfg, data_root, entries)
    split = {"val_files": [e.path for e in entries if e.split == "val"], "train_files": sum(e.split == "train" for e in entries)}
    if cfg.modality == "image":
        split["val_crop"] = cfg.data.val_crop
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
    from autoenc.runtime.report import save_picture, side_by_side, spectrogram, stacked

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
            (f"noisy ({tag}) SI-SDR {si_sdr(clean, noisy):.1f} dB", spectrogram(noisy)),
            (f"denoised SI-SDR {si_sdr(clean, den):.1f} dB", spectrogram(den)),
            ("clean", spectrogram(clean)),
        ])
        out = Path(run_dir) / "spectrograms.png"
    save_picture(out, pic)
    return out
