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

from autoenc import __version__
from autoenc.models import get_model
from autoenc.runtime.media import atomic_write

log = logging.getLogger(__name__)


def pack(model: torch.nn.Module, kwargs: dict[str, Any], cfg: Any, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (a registered model built with ``kwargs``) trained per
    ``cfg`` (a validated run or family config); ``extra`` adds or overrides fields."""
    return {
        "model": model.registry_name,
        "kwargs": dict(kwargs),
        "state": {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()},  # whatever layout training ran in (channels_last)
        "config": cfg.model_dump(mode="json"),
        "config_hash": cfg.hash(),
        "autoenc_version": __version__,
        **extra,
    }


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Write a checkpoint dict (see :func:`pack`) atomically."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (on the CPU), without building its model."""
    return torch.load(path, map_location="cpu", weights_only=False)


def build(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The model a checkpoint dict describes, with its weights, in eval mode."""
    model = get_model(ckpt["model"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state"])
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, checkpoint)."""
    ckpt = read_checkpoint(path)
    return build(ckpt), ckpt


def _onnx_source(path: Path) -> dict[str, Any]:
    """A checkpoint-like dict from an exported model: its registry name and config hash from the
    ONNX metadata, its weights from the graph's initializers named like the module's parameters."""
    import onnx
    from onnx import numpy_helper

    from autoenc.weight_storage import as_fp32

    graph = as_fp32(onnx.load(str(path)))
    meta = {p.key: p.value for p in graph.metadata_props}
    if "autoenc.model" not in meta:
        raise ValueError(f"train.init_from: {path} is not an autoenc model (no autoenc.model metadata)")
    if "autoenc.quantization" in meta:
        raise ValueError(f"train.init_from: {path} is an int8 model and cannot be a start; use its fp32 twin")
    # Parameters are the initializers named like module attributes; the exporter adds constants (val_2, ...).
    state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.graph.initializer if t.name.endswith((".weight", ".bias"))}
    return {"model": meta["autoenc.model"], "state": state, "config_hash": meta.get("autoenc.config_hash")}


def start_from(model: torch.nn.Module, name: str, path: Path) -> dict[str, Any]:
    """Load trained weights into ``model`` (registry ``name``) before training: from a checkpoint,
    or from an exported fp32-compute ``.onnx`` model (its initializers carry the parameter names;
    fp16-stored ones are read back as fp32; not an int8 twin). The
    same model loads strictly, another one only through the model's ``adopt``. Returns what the
    new checkpoint records about its origin."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: no checkpoint at {path}")
    src = _onnx_source(path) if path.suffix == ".onnx" else read_checkpoint(path)
    wanted = model.state_dict()
    if path.suffix == ".onnx":  # the exporter's optimizer drops all-zero biases: give them back, shaped like the source
        for k, w in list(src["state"].items()):
            bias = k[: -len("weight")] + "bias"
            if k.endswith(".weight") and bias not in src["state"] and any(t == bias or t.endswith("." + bias) for t in wanted):
                src["state"][bias] = torch.zeros(w.shape[0], dtype=w.dtype)
    odd = [k for k in wanted if k not in src["state"] or src["state"][k].shape != wanted[k].shape] + sorted(set(src["state"]) - set(wanted))
    if src["model"] == name and not odd:
        model.load_state_dict(src["state"])
    elif hasattr(model, "adopt"):
        model.adopt(src["model"], src["state"])  # raises ValueError naming what it cannot take
    else:
        raise ValueError(f"train.init_from: {name} cannot start from {path} ({src['model']}): it lacks, reshapes or adds {odd[:4]}")
    log.info("starting from the weights of %s (%s, config %s)", path, src["model"], src.get("config_hash"))
    return {"path": str(path), "model": src["model"], "config_hash": src.get("config_hash"), "epoch": src.get("epoch")}


def trained_on_of(path: str | Path) -> dict[str, Any] | None:
    """The record of what the model at ``path`` (a checkpoint or an exported .onnx) trained on,
    across its stages (:mod:`autoenc.runtime.trained_on`), or None where it carries none."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        from autoenc.runtime.metadata import ModelInfo

        return ModelInfo.from_props({p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}).trained_on
    return read_checkpoint(path).get("trained_on")


def full_history(checkpoint: Path) -> list[dict]:
    """The whole run's history: best.pt only knows the epochs up to itself; last.pt beside it knows all."""
    last = Path(checkpoint).parent / "last.pt"
    return read_checkpoint(last if last.exists() else checkpoint)["history"]
