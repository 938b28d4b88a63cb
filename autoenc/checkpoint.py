"""The checkpoint round trip: every checkpoint is written and read here.

A checkpoint is a dict: ``model`` (registry name), ``kwargs`` (constructor arguments),
``state`` (the weights that are evaluated and exported: the EMA ones when training keeps an
average), ``config`` and ``config_hash``, ``history``, ``epoch``/``step``, and for resuming
``optimizer``, ``raw_state`` and ``resume_hash``. Written atomically (temp file, rename).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch

from autoenc.models import get_model
from autoenc.runtime.media import atomic_write

log = logging.getLogger(__name__)


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


def full_history(checkpoint: Path) -> list[dict]:
    """The whole run's history: best.pt only knows the epochs up to itself; last.pt beside it knows all."""
    last = Path(checkpoint).parent / "last.pt"
    return torch.load(last if last.exists() else checkpoint, map_location="cpu", weights_only=False)["history"]
