"""The whole path with the tiny config: train -> evaluate -> export -> report -> denoise."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from autoenc.config import load
from autoenc.data import read_manifest
from autoenc.metadata import ModelInfo
from autoenc.metrics import psnr
from conftest import REPO


def test_train_export_denoise_flow(tmp_path, prefect_api, corpus_dir):
    from pipelines.denoise import denoise_flow
    from autoenc.train import fit
    from pipelines.train import train_flow

    run_dir = tmp_path / "run"
    overrides = [f"data.corpus_dir={corpus_dir}"]
    out = train_flow(str(REPO / "configs/tiny-image.yaml"), overrides, str(run_dir))
    for name in ["best.pt", "last.pt", "model.onnx", "metrics.json", "manifest.csv", "report.md", "before_after.png", "config.json"]:
        assert (run_dir / name).is_file(), name

    entries = read_manifest(run_dir / "manifest.csv")
    val = {e.path for e in entries if e.split == "val"}
    assert val == {"camera.png", "chelsea.png", "coins.png", "flower.png", "aero.png"}
    assert len(entries) >= 20 and all(len(e.sha256) == 64 for e in entries)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    m = metrics["val"]["gaussian-sigma25"]
    assert metrics["split"]["val_files"] == sorted(val)
    assert m["denoised_psnr"] > m["noisy_psnr"]  # even 60 steps beat the noisy input
    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(run_dir / "model.onnx")).metadata_props})
    assert info.metrics["gaussian-sigma25"]["denoised_psnr"] == m["denoised_psnr"]
    assert "before_after.png" in (run_dir / "report.md").read_text()

    # Resume: two more epochs continue from last.pt instead of starting over.
    out2 = train_flow(str(REPO / "configs/tiny-image.yaml"), overrides + ["train.epochs=5"], str(run_dir), resume=True)
    assert out2["metrics"]["epochs_trained"] == 5
    import torch

    history = torch.load(run_dir / "last.pt", weights_only=False)["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="different config"):
        fit(load(REPO / "configs/tiny-image.yaml", overrides + ["train.lr=0.1"]), corpus_dir, run_dir / "manifest.csv", run_dir, resume=True)

    # Denoise a noisy copy of a held-out photo with the exported model.
    clean = np.asarray(Image.open(corpus_dir / "camera.png").convert("L"), dtype=np.float64) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    src = tmp_path / "noisy"
    src.mkdir()
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(src / "camera.png")
    (src / "junk.png").write_bytes(b"junk")
    report = denoise_flow([out2["onnx"]], str(src), str(tmp_path / "clean"))
    assert report["counts"] == {"written": 1, "skipped": 0, "failed": 1}
    den = np.asarray(Image.open(tmp_path / "clean" / "camera.png"), dtype=np.float64) / 255
    assert psnr(clean, den) > psnr(clean, np.round(noisy * 255) / 255)
