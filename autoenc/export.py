"""Export a checkpoint to one self-describing ONNX file, verified against torch.

The file has no external data, dynamic batch/height/width, and ``autoenc.*`` metadata
(:class:`autoenc.metadata.ModelInfo`). Before it is written, onnxruntime runs it on several
sizes (odd ones included) and compares with torch eager: a mismatch raises
:class:`ExportError` and nothing is written.
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

from autoenc import FORMAT_VERSION, __version__
from autoenc.config import ExportConfig, from_dict
from autoenc.media import atomic_write
from autoenc.metadata import ModelInfo
from autoenc.train import load_checkpoint

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """ONNX export failed or its output does not match torch."""


def receptive_radius(model: torch.nn.Module, channels: int) -> int:
    """Radius in pixels of the region that can influence one output pixel.

    Measured on a copy whose convs have positive weights and biases, so every ReLU passes and
    the gradient support equals the architecture's full receptive field (a trained model's
    dead units would understate it).
    """
    probe = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.fill_(0.1)
    size = 128
    while True:
        x = torch.rand(1, channels, size, size, requires_grad=True)
        probe(x)[0, :, size // 2, size // 2].sum().backward()
        ys, xs = torch.nonzero(x.grad[0].abs().sum(0) > 0, as_tuple=True)
        r = int(max(size // 2 - ys.min(), ys.max() - size // 2, size // 2 - xs.min(), xs.max() - size // 2))
        if r < size // 2 - 1:
            return r
        size *= 2


def _export_bytes(model: torch.nn.Module, channels: int, opset: int) -> bytes:
    """Run the dynamo exporter into a temp folder and return the single-file model bytes."""
    x = torch.rand(2, channels, 64, 64)
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
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
            dynamic_shapes=({0: batch, 2: height, 3: width},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        return path.read_bytes()


def parity_check(model: torch.nn.Module, blob: bytes, channels: int, cfg: ExportConfig) -> float:
    """Max abs difference between onnxruntime and torch over ``cfg.parity_sizes`` (batch 1 and
    2); raises :class:`ExportError` when above ``cfg.atol``."""
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for i, (h, w) in enumerate(cfg.parity_sizes):
        x = torch.rand(1 + i % 2, channels, h, w, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != torch {ref.shape} at {h}x{w}")
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        if not diff <= cfg.atol:
            raise ExportError(f"ONNX/torch mismatch at {h}x{w}: max abs diff {diff:.2e} > {cfg.atol:.0e}")
    return worst


def to_onnx(checkpoint: str | Path, out_path: str | Path, metrics: Any = None) -> ModelInfo:
    """Export ``checkpoint`` to ``out_path`` (atomically, only after parity passes)."""
    model, ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(ckpt["config"], source=str(checkpoint))
    channels = ckpt["kwargs"]["channels"]
    if metrics is None and ckpt.get("history"):
        metrics = max(ckpt["history"], key=lambda h: np.mean([m["denoised_psnr"] for m in h["val"].values()]))["val"]
    try:
        blob = _export_bytes(model, channels, cfg.export.opset)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    info = ModelInfo(
        modality=model.modality,
        channels=channels,
        model=ckpt["model"],
        size_multiple=int(getattr(model, "size_multiple", 1)),
        receptive_radius=receptive_radius(model, channels),
        noise=cfg.noise.model_dump(mode="json"),
        config_hash=ckpt["config_hash"],
        metrics=metrics,
        version=__version__,
        format_version=FORMAT_VERSION,
    )
    proto = onnx.load_from_string(blob)
    onnx.helper.set_model_props(proto, info.to_props())
    proto.producer_name = "autoenc"
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()
    worst = parity_check(model, blob, channels, cfg.export)
    atomic_write(out_path, lambda f: f.write(blob))
    log.info("exported %s -> %s (%.0f KB, parity max abs diff %.1e)", checkpoint, out_path, len(blob) / 1024, worst)
    return info
