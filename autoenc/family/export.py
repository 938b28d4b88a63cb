"""Exporting a family member as three parity-checked ONNX parts: encoder, decoder, whole model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx
import torch

from autoenc import FORMAT_VERSION, __version__
from autoenc.config import ExportConfig, FamilyConfig
from autoenc.export import check_parity, export_module
from autoenc.runtime.latent import FAMILY_PROP
from autoenc.runtime.media import atomic_write
from autoenc.runtime.metadata import ModelInfo
from autoenc.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

class _Part(torch.nn.Module):
    def __init__(self, model, part: str) -> None:
        super().__init__()
        self.model, self.part = model, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return {"encoder": self.model.encode, "decoder": self.model.decode, "model": self.model.forward}[self.part](x)


def export_family(checkpoint: Path, out_dir: Path, metrics: dict[str, Any], cfg: FamilyConfig) -> dict[str, Path]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``model.onnx`` (dynamic batch), each
    parity-checked against torch; metadata says which part and carries the threshold."""
    model, ckpt = load_checkpoint(checkpoint)
    threshold = metrics.get("anomaly", {}).get("threshold")
    settings = ExportConfig()  # the denoisers' opset and parity tolerance
    out = {}
    for part in ("encoder", "decoder", "model"):
        x = torch.randn(4, model.latent) if part == "decoder" else torch.rand(4, 1, 28, 28)
        dims = {0: torch.export.Dim("batch")}
        wrapper = _Part(model, part).eval()
        blob = export_module(wrapper, x, dims, settings.opset)
        proto = onnx.load_from_string(blob)
        info = ModelInfo(modality="family", channels=1, sample_rate=0, model=ckpt["model"], size_multiple=1, receptive_radius=0, noise={},
                         config_hash=ckpt["config_hash"], metrics={k: v for k, v in metrics.items() if k != "split"}, version=__version__, format_version=FORMAT_VERSION)
        props = info.to_props() | {FAMILY_PROP: json.dumps({"part": part, "latent": model.latent, "side": 28, "variational": model.variational, "threshold": threshold})}
        onnx.helper.set_model_props(proto, props)
        blob = proto.SerializeToString()
        probe = torch.randn(3, model.latent) if part == "decoder" else torch.rand(3, 1, 28, 28)
        check_parity(wrapper, blob, [probe], settings.atol)
        path = Path(out_dir) / f"{part}.onnx"
        atomic_write(path, lambda f, b=blob: f.write(b))
        out[part] = path
    log.info("exported encoder/decoder/model to %s", out_dir)
    return out
