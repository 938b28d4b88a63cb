"""Export a checkpoint to one self-describing ONNX file, verified against torch.

The file has no external data, dynamic batch/height/width, and ``autoenc.*`` metadata
(:class:`autoenc.runtime.metadata.ModelInfo`). Before it is written, onnxruntime runs it on several
sizes (odd ones included) and compares with torch eager: a mismatch raises
:class:`ExportError` and nothing is written. Parameters are stored as float16 and cast to float32
when onnxruntime loads the file (``export.weights``, :mod:`autoenc.weight_storage`): half the
file, the same float32 compute; parity is then checked against torch with the rounded weights.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from autoenc import FORMAT_VERSION, NOISE_LEVEL_FORMAT, NOISE_PROFILE_FORMAT, PREFILTER_FORMAT, RAW_PLANE_FORMAT, __version__
from autoenc.config import ExportConfig, from_dict
from autoenc.runtime.media import atomic_write
from autoenc.runtime.metadata import ModelInfo
from autoenc.checkpoint import load_checkpoint
from autoenc.weight_storage import store_fp16

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """ONNX export failed or its output does not match torch."""


def _probe_input(model: torch.nn.Module, size: int, batch: int = 1) -> torch.Tensor:
    """A random input of edge/length ``size`` shaped for the model's modality."""
    c = getattr(model, "in_channels", model.channels)  # image planes plus any conditioning planes
    shape = (batch, c, size) if model.modality == "audio" else (batch, c, size, size)
    return torch.rand(*shape)


def receptive_radius(model: torch.nn.Module) -> int:
    """Radius in pixels (samples) of the region that can influence one output pixel (sample).

    Measured on a copy whose convs have positive weights and biases, so every ReLU passes and
    the gradient support equals the architecture's full receptive field (a trained model's
    dead units would understate it). The reach of parts a gradient probe cannot see through
    (a model's ``unprobed_radius``, e.g. a spectral gate behind a sigmoid) is added on.
    """
    probe = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.fill_(0.1)
        x_pos = 0.5  # bias-free nets: positive inputs keep every ReLU open
    size = max(128, 4 * int(getattr(probe, "size_multiple", 1)))
    while True:
        x = (_probe_input(probe, size) + x_pos).requires_grad_(True)
        centre = (0, slice(None)) + (size // 2,) * (x.dim() - 2)
        probe(x)[centre].sum().backward()
        support = torch.nonzero(x.grad[0].abs().sum(0) > 0)  # (n, spatial dims)
        r = int((support - size // 2).abs().max())
        if r < size // 2 - 1:
            return r + int(getattr(probe, "unprobed_radius", 0))  # parts whose reach a gradient probe cannot see, declared
        size *= 2


def export_bytes(model: torch.nn.Module, opset: int) -> bytes:
    """Export a denoiser with its dynamic axes; returns the single-file model bytes."""
    if model.modality == "audio":
        x = _probe_input(model, 4 * model.size_multiple, batch=2)
        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("length", min=model.min_length)}
    else:
        x = _probe_input(model, 64, batch=2)
        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    return export_module(model, x, dims, opset)


def export_module(model: torch.nn.Module, x: torch.Tensor, dims: dict, opset: int) -> bytes:
    """Run the dynamo exporter on ``model(x)`` with dynamic ``dims`` into a temp folder and
    return the single-file (no external data) model bytes."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=(dims,),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        return path.read_bytes()


def check_parity(module: torch.nn.Module, blob: bytes, probes: list[torch.Tensor], atol: float) -> float:
    """Max abs difference between onnxruntime running ``blob`` and torch running ``module`` on
    each probe input; raises :class:`ExportError` on a shape mismatch or a difference above ``atol``."""
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in probes:
        with torch.no_grad():
            ref = module(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != torch {ref.shape} for input {tuple(x.shape)}")
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        if not diff <= atol:
            raise ExportError(f"ONNX/torch mismatch for input {tuple(x.shape)}: max abs diff {diff:.2e} > {atol:.0e}")
    return worst


def parity_check(model: torch.nn.Module, blob: bytes, cfg: ExportConfig) -> float:
    """:func:`check_parity` of a denoiser over ``cfg.parity_sizes`` (images) or
    ``cfg.parity_lengths`` (audio), batch 1 and 2, within ``cfg.atol``."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(n,) for n in cfg.parity_lengths] if model.modality == "audio" else cfg.parity_sizes
    probes = []
    for i, spatial in enumerate(sizes):
        x = torch.rand(1 + i % 2, getattr(model, "in_channels", model.channels), *spatial, generator=gen)
        probes.append(2 * x - 1 if model.modality == "audio" else x)
    return check_parity(model, blob, probes, cfg.atol)


def as_stored(model: torch.nn.Module, weights: str) -> torch.nn.Module:
    """``model`` as an export storing its parameters in ``weights`` ("fp16" or "fp32") computes:
    a copy with each parameter rounded to float16 and back, or ``model`` itself."""
    if weights == "fp32":
        return model
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(p.half().float())
    return twin


def format_version(model: torch.nn.Module) -> int:
    """The oldest model format that describes ``model``'s input (a runtime that reads fewer
    formats refuses the file instead of feeding it the wrong input)."""
    if getattr(model, "noise_profile", False):
        return NOISE_PROFILE_FORMAT
    if getattr(model, "noise_level_input", False):
        return NOISE_LEVEL_FORMAT
    if getattr(model, "raw_plane", False):
        return RAW_PLANE_FORMAT
    if getattr(model, "prefilter", None) is not None:
        return PREFILTER_FORMAT
    return FORMAT_VERSION


def to_onnx(checkpoint: str | Path, out_path: str | Path, metrics: Any = None) -> ModelInfo:
    """Export ``checkpoint`` to ``out_path`` (atomically, only after parity passes)."""
    model, ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(ckpt["config"], source=str(checkpoint))
    channels = ckpt["kwargs"]["channels"]
    if metrics is None and ckpt.get("history"):
        metrics = max(ckpt["history"], key=lambda h: h["score"])["val"]
    try:
        blob = export_bytes(model, cfg.export.opset)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    info = ModelInfo(
        modality=model.modality,
        channels=channels,
        sample_rate=cfg.data.sample_rate if cfg.modality == "audio" else 0,
        model=ckpt["model"],
        size_multiple=int(getattr(model, "size_multiple", 1)),
        receptive_radius=receptive_radius(model),
        noise=cfg.noise.model_dump(mode="json"),
        config_hash=ckpt["config_hash"],
        metrics=metrics,
        version=__version__,
        format_version=format_version(model),
        noise_level_input=bool(getattr(model, "noise_level_input", False)),
        noise_profile=bool(getattr(model, "noise_profile", False)),
        prefilter=model.prefilter.spec() if getattr(model, "prefilter", None) else None,
        raw_plane=bool(getattr(model, "raw_plane", False)),
        trained_on=ckpt.get("trained_on"),
        config=ckpt["config"],
    )
    proto = onnx.load_from_string(blob)
    onnx.helper.set_model_props(proto, info.to_props())
    proto.producer_name = "autoenc"
    if cfg.export.weights == "fp16":
        proto = store_fp16(proto)
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()
    worst = parity_check(as_stored(model, cfg.export.weights), blob, cfg.export)
    atomic_write(out_path, lambda f: f.write(blob))
    log.info("exported %s -> %s (%.0f KB, parity max abs diff %.1e)", checkpoint, out_path, len(blob) / 1024, worst)
    return info
