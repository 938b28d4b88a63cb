"""The whole path with the tiny config: train -> evaluate -> export -> report -> denoise."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from autoenc.checkpoint import read_checkpoint
from autoenc.config import load
from autoenc.data import read_manifest
from autoenc.runtime.metadata import ModelInfo
from autoenc.metrics import psnr
from conftest import REPO


def test_train_export_denoise_flow(tmp_path, prefect_api, corpus_dir):
    from pipelines.denoise import denoise_flow
    from autoenc.train import fit
    from pipelines.train import train_flow

    run_dir = tmp_path / "run"
    overrides = [f"data.corpus_dir={corpus_dir}"]
    train_flow(str(REPO / "configs/tiny-image.yaml"), overrides, str(run_dir))
    for name in ["best.pt", "last.pt", "model.onnx", "metrics.json", "manifest.csv", "report.md", "before_after.png", "config.json"]:
        assert (run_dir / name).is_file(), name

    entries = read_manifest(run_dir / "manifest.csv")
    val = {e.path for e in entries if e.split == "val"}
    assert val == {"scikit-image/camera.png", "scikit-image/chelsea.png", "scikit-image/coins.png", "scikit-learn/flower.png", "PyWavelets/aero.png"}
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

    history = read_checkpoint(run_dir / "last.pt")["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="different config"):
        fit(load(REPO / "configs/tiny-image.yaml", overrides + ["train.lr=0.1"]), corpus_dir, run_dir / "manifest.csv", run_dir, resume=True)

    # Denoise a noisy copy of a held-out photo with the exported model.
    clean = np.asarray(Image.open(corpus_dir / "scikit-image/camera.png").convert("L"), dtype=np.float64) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    src = tmp_path / "noisy"
    src.mkdir()
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(src / "camera.png")
    (src / "junk.png").write_bytes(b"junk")
    report = denoise_flow([out2["onnx"]], str(src), str(tmp_path / "clean"), return_state=True).result(raise_on_failure=False)  # a failed file fails the run
    assert report["counts"] == {"written": 1, "unchanged": 0, "skipped": 0, "failed": 1}
    den = np.asarray(Image.open(tmp_path / "clean" / "camera.png"), dtype=np.float64) / 255
    assert psnr(clean, den) > psnr(clean, np.round(noisy * 255) / 255)

    # int8: calibrated on training inputs, metadata carried over, its held-out effect recorded.
    from autoenc.cli import main as cli

    assert cli(["export", str(run_dir / "best.pt"), str(tmp_path / "m.onnx"), "--int8", "--calibration", "16"]) == 0
    q = onnx.load(str(tmp_path / "m-int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    props = {p.key: p.value for p in q.metadata_props}
    assert ModelInfo.from_props(props).model == info.model
    note = json.loads(props["autoenc.quantization"])
    assert note["calibration_inputs"] == 16 and abs(note["val"]["delta_db"]) < 0.5
    assert denoise_flow([str(tmp_path / "m-int8.onnx")], str(src), str(tmp_path / "clean8"), incremental=False, return_state=True).result(raise_on_failure=False)["counts"]["written"] == 1
    # `autoenc quantize` redoes the int8 twin of an existing export (here with 8 inputs).
    assert cli(["quantize", str(run_dir / "best.pt"), str(tmp_path / "m.onnx"), "--calibration", "8"]) == 0
    assert json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "m-int8.onnx")).metadata_props}["autoenc.quantization"])["calibration_inputs"] == 8
    assert cli(["quantize", str(run_dir / "best.pt"), str(tmp_path / "missing.onnx")]) == 1

    # Fine-tuning: a colour plane_unet_dae starts from this gray run (train.init_from).
    from autoenc.models import get_model
    from autoenc.checkpoint import load_checkpoint, start_from

    gray, _ = load_checkpoint(run_dir / "best.pt")
    plane = get_model("plane_unet_dae", channels=3, width=8, levels=2, bottleneck_blocks=1).eval()
    assert start_from(plane, "plane_unet_dae", run_dir / "best.pt")["model"] == "unet_dae"
    x = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        assert torch.allclose(plane(x), gray(x.reshape(3, 1, 40, 48)).reshape(1, 3, 40, 48), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="init_from"):
        start_from(plane, "plane_unet_dae", tmp_path / "no.pt")
    ft = ["data.channels=3", "model.name=plane_unet_dae", "model.kwargs.bottleneck_blocks=1", "train.epochs=1", "data.patches_per_epoch=32", f"train.init_from={run_dir / 'best.pt'}"]
    best = fit(load(REPO / "configs/tiny-image.yaml", overrides + ft), corpus_dir, run_dir / "manifest.csv", tmp_path / "ft")
    assert read_checkpoint(best)["init_from"]["path"] == str(run_dir / "best.pt")
    # Resuming a fine-tuned run continues it (its origin stays recorded) instead of starting over.
    fit(load(REPO / "configs/tiny-image.yaml", overrides + ft + ["train.epochs=2"]), corpus_dir, run_dir / "manifest.csv", tmp_path / "ft", resume=True)
    last = read_checkpoint(tmp_path / "ft" / "last.pt")
    assert [h["epoch"] for h in last["history"]] == [0, 1] and last["init_from"]["model"] == "unet_dae"
    # quantize refuses a model from another run (it would record a wrong effect) and an int8 input.
    assert cli(["quantize", str(best), str(tmp_path / "m.onnx")]) == 1
    assert cli(["quantize", str(run_dir / "best.pt"), str(tmp_path / "m-int8.onnx")]) == 1


def test_audio_train_export_denoise_flow(tmp_path, prefect_api):
    """tiny-audio on the real Asterisk speech corpus, then a folder of recordings at other
    rates, channel counts and formats, plus a bad file."""
    import soundfile as sf

    from conftest import speech_corpus_or_skip, tone
    from pipelines.denoise import denoise_flow
    from pipelines.train import train_flow

    speech_corpus_or_skip()
    run_dir = tmp_path / "run"
    out = train_flow(str(REPO / "configs/tiny-audio.yaml"), [], str(run_dir))
    for name in ["best.pt", "model.onnx", "metrics.json", "manifest.csv", "report.md", "spectrograms.png"]:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["modality"] == "audio" and len(metrics["split"]["val_files"]) > 20
    val = set(metrics["split"]["val_files"])
    train = {e.path for e in read_manifest(run_dir / "manifest.csv") if e.split == "train"}
    assert not val & train
    for tag, m in metrics["val"].items():
        for key in ["si_sdr", "pesq", "stoi"]:
            assert np.isfinite(m[f"noisy_{key}"]) and np.isfinite(m[f"denoised_{key}"]), (tag, key)
    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(out["onnx"]).metadata_props})
    assert info.modality == "audio" and info.sample_rate == 16000

    src = tmp_path / "noisy"
    src.mkdir()
    sf.write(src / "stereo44k.flac", tone(1.5, 44100, 2), 44100)
    sf.write(src / "mono8k.wav", tone(1.0, 8000, 1), 8000, subtype="PCM_24")
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    report = denoise_flow([out["onnx"]], str(src), str(tmp_path / "clean"), return_state=True).result(raise_on_failure=False)  # a failed file fails the run
    assert report["counts"] == {"written": 2, "unchanged": 0, "skipped": 0, "failed": 1}
    for name in ["stereo44k.flac", "mono8k.wav"]:
        a, b = sf.info(str(src / name)), sf.info(str(tmp_path / "clean" / name))
        assert (a.format, a.subtype, a.samplerate, a.channels, a.frames) == (b.format, b.subtype, b.samplerate, b.channels, b.frames)
