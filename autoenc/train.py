"""The training loop: ``fit`` calls ``train_one_epoch`` and ``evaluate``; checkpoints each epoch
(``last.pt``) and on improvement (``best.pt``) through :mod:`autoenc.checkpoint`; ``resume``
continues from ``last.pt``. The learning-rate schedule is one pure function; an optional EMA of
the weights is what gets evaluated, kept and exported.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from autoenc.checkpoint import load_checkpoint, pack, read_checkpoint, save_checkpoint, start_from, trained_on_of
from autoenc.config import RunConfig, TrainConfig
from autoenc.data import VALIDATION_VERSION, TrainingData, model_input, read_manifest, same_model_input
from autoenc.evaluate import evaluate, score
from autoenc.losses import LOSSES
from autoenc.models import build_model, model_modality
from autoenc.qat import quantization_aware
from autoenc.runtime import trained_on
from autoenc.runtime.infer import ENSEMBLE_VIEWS

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))






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
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}  # train.trainable: kept exactly, not re-averaged in float
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point and k not in frozen:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)




















def train_one_epoch(model, batches: Iterable, opt, objective: Callable[[Any], torch.Tensor], cfg: TrainConfig, step: int, total: int, epoch: int, ema: Ema | None = None) -> tuple[float, int]:
    """One pass over ``batches``: ``objective(batch)`` gives the loss (the loop never knows the
    model's kind); learning rate per :func:`lr_at`, gradient clipping, ``ema`` updated after each
    step. Returns (mean loss, global step after the epoch)."""
    model.train()
    losses, t0 = [], time.perf_counter()
    for batch in batches:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        loss = objective(batch)
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


def step_precision(precision: str) -> torch.autocast:
    """The context a training step's forward passes run in (``train.precision``): bf16 autocast
    on the CPU (convs and matmuls in bfloat16, the rest and the weights fp32), or plain fp32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def fast_layout(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with its 4-D weights in channels_last (NHWC), the layout oneDNN's CPU convs run
    fastest in (a width-32 unet_dae step on this project's Xeon, one-off probe: 1.3x in fp32,
    and bf16 gains more in it; benchmarks/train_speed.py times both precisions in this layout);
    the same numbers up to summation order. Audio nets are left as they are."""
    if any(p.dim() == 4 for p in net.parameters()):
        net.to(memory_format=torch.channels_last)
    return net


def trained_parameters(model: torch.nn.Module, prefixes: list[str] | None) -> list[torch.nn.Parameter]:
    """The parameters training moves: all, or those whose names start with one of ``prefixes``
    (the others are frozen: ``requires_grad`` off). A prefix that names no parameter is an error."""
    if prefixes is None:
        return list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ValueError(f"train.trainable: {unknown} name no parameter of this model (its parameters start with {sorted({n.split('.')[0] + '.' for n in names})})")
    out = []
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(tuple(prefixes)))
        if p.requires_grad:
            out.append(p)
    return out


def dihedral_mean(net: torch.nn.Module, x: torch.Tensor, views: int) -> torch.Tensor:
    """``net``'s output on an image batch (N, C, H, W), averaged over the first ``views`` of
    the views ``--ensemble`` averages (:data:`ENSEMBLE_VIEWS`; each output turned back); ``views`` 1 is ``net(x)``. Constant planes
    (a noise level) are unchanged by the transforms."""
    if views == 1:
        return net(x)
    if x.dim() != 4:
        raise ValueError("train.teacher_views: flips and rotations are for image batches (N, C, H, W)")
    outs = []
    for k, flip in ENSEMBLE_VIEWS[:views]:
        t = torch.rot90(x, k, (2, 3))
        y = net(t.flip(3) if flip else t)
        outs.append(torch.rot90(y.flip(3) if flip else y, -k, (2, 3)))
    return torch.stack(outs).mean(0)


def objective(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], teacher: torch.nn.Module | None, loss_fn: Callable, sample_rate: int, teacher_weight: float = 1.0, teacher_views: int = 1, precision: str = "fp32") -> torch.Tensor:
    """The training loss of one (noisy, clean) batch: the model's output against the clean
    target, or against ``teacher``'s output on the same noisy input (``train.distill``,
    ``train.teacher``; the teacher gets that input as it takes it, noise-level plane included;
    averaged over ``teacher_views`` flips/rotations, :func:`dihedral_mean`),
    or against ``clean + teacher_weight * (teacher's output - clean)``. The networks run in
    ``precision`` (:func:`step_precision`); the target and the loss are fp32."""
    x = model_input(model, batch[0], sample_rate)
    target = batch[1]
    if teacher is not None and teacher_weight > 0:
        with torch.no_grad(), step_precision(precision):
            told = dihedral_mean(teacher, x if same_model_input(teacher, model) else model_input(teacher, batch[0], sample_rate), teacher_views).float()
        target = told if teacher_weight == 1 else target + teacher_weight * (told - target)
    with step_precision(precision):
        out = model(x)
    return loss_fn(out.float(), target)


def load_teacher(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    """The frozen model of checkpoint ``path`` (``train.teacher``), checked to denoise what
    ``model`` does: the same modality and channel count."""
    teacher = load_checkpoint(path)[0].requires_grad_(False)
    mine, its = (model_modality(model.registry_name), model.channels), (model_modality(teacher.registry_name), teacher.channels)
    if mine != its:
        raise ValueError(f"train.teacher: {path} is a {its[0]} model of {its[1]} channel(s), the model trained here a {mine[0]} model of {mine[1]}")
    return teacher


def fit(cfg: RunConfig, data_root: Path, manifest_path: Path, run_dir: Path, *, resume: bool = False) -> Path:
    """Train per ``cfg`` on the manifest's train split; returns the path of ``best.pt``."""
    run_dir = Path(run_dir)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    entries = read_manifest(manifest_path)
    data = TrainingData(cfg, data_root, entries)
    earlier = [p for p in (cfg.train.init_from, cfg.train.teacher) if p is not None]
    learned = trained_on.record((e.sha256 for e in entries if e.split == "train"), cfg.hash(), {f"{p} (sha256 {trained_on.file_digest(p)[:trained_on.DIGEST_CHARS]})": trained_on_of(p) for p in earlier})  # named with their content: a path like autoenc/pretrained/photo.onnx holds another model after each shipping
    log.info("trained on: %s", trained_on.describe(learned))
    ch = cfg.network_channels

    torch.manual_seed(cfg.seed)  # weight init only; data draws use their own generators
    model = fast_layout(build_model(cfg.model, ch))
    opt = torch.optim.AdamW(trained_parameters(model, cfg.train.trainable), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loss_fn = LOSSES[cfg.train.loss]
    steps_per_epoch = math.ceil(cfg.data.patches_per_epoch / cfg.train.batch_size)
    total = steps_per_epoch * cfg.train.epochs
    start_epoch, step, history, best, init_from = 0, 0, [], -math.inf, None
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.exists():
        ckpt = read_checkpoint(last_path)
        if ckpt.get("resume_hash") != cfg.resume_hash():
            raise ValueError(f"--resume: {last_path} was trained with a different config (only train.epochs, logging, eval and export may change)")
        model.load_state_dict(ckpt.get("raw_state") or ckpt["state"])  # raw_state: the weights under the EMA
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, step, history, best = ckpt["epoch"] + 1, ckpt["step"], ckpt["history"], ckpt["best_score"]
        if ckpt.get("validation", 1) != VALIDATION_VERSION[cfg.modality]:
            log.warning("--resume: %s was validated on pairs built the old way (version %s, now %s): its best score %.2f dB is not comparable, so the next epoch becomes best", last_path, ckpt.get("validation", 1), VALIDATION_VERSION[cfg.modality], best)
            best = -math.inf
        init_from = ckpt.get("init_from")
        log.info("resumed from %s at epoch %d (step %d)", last_path, start_epoch, step)
    elif resume:
        log.warning("--resume: no %s, starting from scratch", last_path)
    if cfg.train.init_from and step == 0:
        init_from = start_from(model, cfg.model.name, cfg.train.init_from)
    qat_ranges = None
    if cfg.train.quantization_aware:  # ranges calibrated on the weights training starts from, kept for a resume
        qat_ranges = quantization_aware(model, data, cfg.export.opset, ckpt.get("qat_ranges") if resume and last_path.exists() else None)
    teacher = None
    if cfg.train.distill:  # the fp32 model the twin stands in for, whatever epoch a resume starts at
        teacher = fast_layout(build_model(cfg.model, ch))
        start_from(teacher, cfg.model.name, cfg.train.init_from)
        teacher.eval().requires_grad_(False)
        log.info("distilling: the target is %s's output, not the clean patch", cfg.train.init_from)
    elif cfg.train.teacher is not None:
        teacher = fast_layout(load_teacher(cfg.train.teacher, model))
        log.info("distilling from %s (%s): the target is clean + %.2f x (its output%s - clean)", cfg.train.teacher, teacher.registry_name, cfg.train.teacher_weight, f", the mean over {cfg.train.teacher_views} flips/rotations," if cfg.train.teacher_views > 1 else "")
    ema = None
    if cfg.train.ema_decay:
        resumed = resume and last_path.exists()
        ema = Ema(model, cfg.train.ema_decay, ckpt["state"] if resumed else None, ckpt.get("ema_updates", 0) if resumed else 0)
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d params%s) for %d epochs x %d steps%s", cfg.model.name, n_params, f", {n_trained} of them trainable" if n_trained < n_params else "", cfg.train.epochs, steps_per_epoch,
             ", the steps in bf16 (validation in fp32)" if cfg.train.precision == "bf16" else "")

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        loader = DataLoader(data.dataset(epoch), batch_size=cfg.train.batch_size, shuffle=False, num_workers=cfg.train.loader_workers)
        train_loss, step = train_one_epoch(model, loader, opt, lambda b: objective(model, b, teacher, loss_fn, cfg.data.sample_rate, cfg.train.teacher_weight, cfg.train.teacher_views, cfg.train.precision), cfg.train, step, total, epoch, ema)
        raw_state = None
        if ema is not None:  # evaluate, keep and export the averaged weights
            raw_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema.state)
        metrics = evaluate(model, data.val, full=False, sample_rate=cfg.data.sample_rate)
        val_score = score(metrics)
        history.append({"epoch": epoch, "step": step, "train_loss": train_loss, "val": metrics, "score": val_score, "seconds": time.perf_counter() - t0})
        log.info("epoch %d done: train loss %.5f, val %s %.2f dB (%.0fs)", epoch, train_loss, "PSNR" if cfg.modality == "image" else "SI-SDR", val_score, history[-1]["seconds"])
        ckpt = pack(
            model, {"channels": ch, **cfg.model.kwargs}, cfg,
            raw_state=raw_state, ema_updates=ema.updates if ema is not None else 0, optimizer=opt.state_dict(),
            epoch=epoch, step=step, history=history, best_score=max(best, val_score), resume_hash=cfg.resume_hash(), init_from=init_from,
            validation=VALIDATION_VERSION[cfg.modality], trained_on=learned,
            **({"qat_ranges": qat_ranges} if qat_ranges is not None else {}),
        )
        if val_score > best:
            best = val_score
            save_checkpoint(best_path, {**ckpt, "optimizer": None, "raw_state": None})
        save_checkpoint(last_path, ckpt)
        if raw_state is not None:
            model.load_state_dict(raw_state)
    if not best_path.exists():  # resumed a finished run
        save_checkpoint(best_path, {**read_checkpoint(last_path), "optimizer": None, "raw_state": None})
    return best_path






