"""Training recipe pieces: the σ-balanced (PSNR) loss and EMA weights through fit and resume."""

import math

import pytest
import torch

from autoenc.checkpoint import read_checkpoint, save_checkpoint
from autoenc.config import load
from autoenc.data import VALIDATION_VERSION, ingest
from autoenc.losses import psnr_loss
from autoenc.train import Ema, fit
from conftest import REPO, photo_sources


def test_psnr_loss_weighs_each_sample_by_its_own_error():
    ref = torch.zeros(2, 1, 8, 8)
    est = torch.stack([torch.full((1, 8, 8), 0.01), torch.full((1, 8, 8), 0.1)])
    # Halving any one sample's error gains the same, whatever its size (an MSE would favour the big one).
    half_small = psnr_loss(torch.stack([est[0] / 2, est[1]]), ref, floor=0)
    half_big = psnr_loss(torch.stack([est[0], est[1] / 2]), ref, floor=0)
    assert torch.isclose(half_small, half_big, atol=1e-4)
    assert math.isclose(float(psnr_loss(est[:1], ref[:1], floor=0)), 10 * math.log10(1e-4), rel_tol=1e-5)


def test_ema_averages_and_warms_up():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = Ema(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # first update: decay min(0.9, 2/11)
    assert torch.isclose(ema.state["weight"], torch.tensor([[9 / 11]]))
    for _ in range(200):
        ema.update(model)
    assert torch.isclose(ema.state["weight"], torch.tensor([[1.0]]), atol=1e-6)


@pytest.mark.parametrize("loss", ["psnr"])
def test_fit_keeps_exports_and_resumes_the_ema_weights(tmp_path, loss, caplog):
    root = photo_sources(tmp_path / "photos", 3, 1)
    cfg = load(REPO / "configs/tiny-image.yaml", ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=64",
                                                  "train.ema_decay=0.9", f"train.loss={loss}", "train.epochs=2"])
    run = tmp_path / "run"
    ingest(root, cfg.data, run / "manifest.csv")
    best = fit(cfg, root, run / "manifest.csv", run)
    last = read_checkpoint(run / "last.pt")
    assert last["raw_state"] is not None and last["ema_updates"] == 2 * 4
    # What is kept (and exported) is the average, not the last raw weights.
    assert any(not torch.equal(last["state"][k], last["raw_state"][k]) for k in last["state"])
    assert read_checkpoint(best)["raw_state"] is None
    assert last["validation"] == VALIDATION_VERSION["image"]
    # A run validated on pairs built the old way: its best score is not comparable and is dropped.
    save_checkpoint(run / "last.pt", {**last, "validation": VALIDATION_VERSION["image"] - 1, "best_score": 1e9})
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 3})})
    with caplog.at_level("WARNING", logger="autoenc.train"):
        fit(longer, root, run / "manifest.csv", run, resume=True)
    resumed = read_checkpoint(run / "last.pt")
    assert resumed["ema_updates"] == 3 * 4 and len(resumed["history"]) == 3
    assert read_checkpoint(best)["epoch"] == 2 and resumed["best_score"] < 1e9 and "not comparable" in caplog.text


def test_fit_trains_only_the_trainable_prefixes(tmp_path):
    """train.trainable: parameters outside the named prefixes keep init_from's values exactly
    through a real fit with EMA (12 updates); a prefix that names no parameter is refused, and
    freezing without a trained start is a config error."""
    root = photo_sources(tmp_path / "photos", 3, 1)
    base = ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=48", "train.ema_decay=0.999"]
    cfg = load(REPO / "configs/tiny-image.yaml", base + ["train.epochs=1"])
    ingest(root, cfg.data, tmp_path / "manifest.csv")
    start = fit(cfg, root, tmp_path / "manifest.csv", tmp_path / "start")
    tuned = load(REPO / "configs/tiny-image.yaml", base + ["train.epochs=2", f"train.init_from={start}", "train.trainable=[tail.]"])
    fit(tuned, root, tmp_path / "manifest.csv", tmp_path / "run")
    before, after = read_checkpoint(start)["state"], read_checkpoint(tmp_path / "run/last.pt")
    assert after["ema_updates"] == 2 * 3
    moved = {k for k in after["state"] if not torch.equal(after["state"][k], before[k])}
    assert moved and all(k.startswith("tail.") for k in moved)
    wrong = tuned.model_copy(update={"train": tuned.train.model_copy(update={"trainable": ["gate."]})})
    with pytest.raises(ValueError, match="name no parameter"):
        fit(wrong, root, tmp_path / "manifest.csv", tmp_path / "run2")
    with pytest.raises(ValueError, match="init_from"):
        load(REPO / "configs/tiny-image.yaml", base + ["train.trainable=[tail.]"])


def test_bf16_steps_learn_as_fp32_keep_fp32_weights_and_resume_in_fp32(tmp_path):
    """train.precision bf16: the steps run under bfloat16 autocast and learn what the same fp32
    steps learn; what is kept is fp32 in the standard layout (channels_last is only how training
    runs); a run may resume in the other precision; bf16 with the int8 simulation is refused."""
    root = photo_sources(tmp_path / "photos", 3, 1)
    base = ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=320", "train.epochs=1"]
    ingest(root, load(REPO / "configs/tiny-image.yaml", base).data, tmp_path / "manifest.csv")
    scores = {}
    for precision in ("fp32", "bf16"):
        cfg = load(REPO / "configs/tiny-image.yaml", base + [f"train.precision={precision}"])
        fit(cfg, root, tmp_path / "manifest.csv", tmp_path / precision)
        last = read_checkpoint(tmp_path / precision / "last.pt")
        assert all(v.dtype == torch.float32 and v.is_contiguous() for v in last["state"].values() if v.is_floating_point())
        (scores[precision],) = last["history"][0]["val"].values()
    assert scores["bf16"]["denoised_psnr"] > scores["bf16"]["noisy_psnr"] + 0.3, scores  # 20 steps of a width-8 net: +0.5 dB
    assert abs(scores["bf16"]["denoised_psnr"] - scores["fp32"]["denoised_psnr"]) < 0.05, scores
    assert load(REPO / "configs/tiny-image.yaml", base + ["train.precision=bf16"]).hash() != load(REPO / "configs/tiny-image.yaml", base).hash()  # the record says how it was trained
    fit(load(REPO / "configs/tiny-image.yaml", base[:-1] + ["train.epochs=2", "train.precision=fp32"]), root, tmp_path / "manifest.csv", tmp_path / "bf16", resume=True)
    assert len(read_checkpoint(tmp_path / "bf16/last.pt")["history"]) == 2
    with pytest.raises(ValueError, match="fp32"):
        load(REPO / "configs/tiny-image.yaml", base + ["train.precision=bf16", "train.quantization_aware=true", f"train.init_from={tmp_path / 'fp32/best.pt'}"])
