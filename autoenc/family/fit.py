"""Training a member of the autoencoder family: each model brings its own objective."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from autoenc.config import FamilyConfig
from autoenc.family.data import splits
from autoenc.models import build_model
from autoenc.checkpoint import pack, save_checkpoint
from autoenc.train import train_one_epoch

log = logging.getLogger(__name__)

def _mean_objective(model, x: np.ndarray, seed: int, batch: int = 1000) -> float:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vals = [model.objective(torch.from_numpy(x[i : i + batch]), g)[0].item() * len(x[i : i + batch]) for i in range(0, len(x), batch)]
    return float(sum(vals) / len(x))


def fit_family(cfg: FamilyConfig, run_dir: Path) -> Path:
    """Train the configured family member; keeps ``best.pt`` by val objective. Returns it."""
    run_dir = Path(run_dir)
    data = splits(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    n, bs = len(data["train_x"]), cfg.train.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total, step, best, history = steps_per_epoch * cfg.train.epochs, 0, math.inf, []
    log.info("training %s (%d params) on %d images for %d epochs", cfg.model.name, sum(p.numel() for p in model.parameters()), n, cfg.train.epochs)
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n, generator=g).numpy()
        batches = (torch.from_numpy(data["train_x"][order[i : i + bs]]) for i in range(0, n, bs))
        train_loss, step = train_one_epoch(model, batches, opt, lambda x: model.objective(x, g)[0], cfg.train, step, total, epoch)
        model.eval()
        val = _mean_objective(model, data["val_x"], cfg.seed)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val, "seconds": time.perf_counter() - t0})
        log.info("epoch %d: train %.5f val %.5f (%.0fs)", epoch, history[-1]["train_loss"], val, history[-1]["seconds"])
        ckpt = pack(model, {"channels": 1, **cfg.model.kwargs}, cfg, epoch=epoch, step=step, history=history)
        if val < best:
            best = val
            save_checkpoint(run_dir / "best.pt", ckpt)
        save_checkpoint(run_dir / "last.pt", ckpt)
    return run_dir / "best.pt"
