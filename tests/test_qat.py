"""Quantization-aware training: the torch model with :mod:`autoenc.qat` attached computes what
onnxruntime's int8 twin computes (so training sees the int8 error), leaves the state dict
alone, detaches back to fp32 exactly, and a quantization-aware fine-tune runs through ``fit``."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autoenc import qat
from autoenc.checkpoint import read_checkpoint
from autoenc.config import load
from autoenc.data import ingest
from autoenc.export import export_bytes, to_onnx
from autoenc.models import get_model
from autoenc.made_with import run_data
from autoenc.quantize import int8_twin, quantize_int8, val_delta
from autoenc.losses import LOSSES
from autoenc.train import fit, objective
from conftest import REPO, photo_sources


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (np.cumsum(rng.random(shape, dtype=np.float32), axis=-1) / shape[-1]).astype(np.float32)


@pytest.mark.parametrize("name,channels,shape", [("unet_dae", 1, (1, 1, 64, 64)), ("opponent_unet_dae", 3, (1, 3, 64, 64)), ("unet1d_dae", 1, (1, 1, 4096))])
def test_fake_quantized_model_computes_what_the_int8_model_computes(tmp_path, name, channels, shape):
    torch.manual_seed(0)
    model = get_model(name, channels=channels, width=8, levels=2).eval()
    heads = [model.net.tail, model.guide] if hasattr(model, "guide") else [model.tail]
    for head in heads:  # a model that does something (untrained heads start at zero)
        torch.nn.init.normal_(head.weight, std=0.1)
    for conv in model.modules():  # and whose deep path carries signal, as a trained one's does (at torch's default init
        # its activations shrink layer by layer, and with the decoder's last stage fp32 the int8 error falls to the
        # order of single rounding flips, ~5e-6 here, which no simulation follows)
        if isinstance(conv, torch.nn.Conv2d) and conv not in heads and conv.weight.shape[1] > 1:
            torch.nn.init.kaiming_normal_(conv.weight)
    (tmp_path / "fp32.onnx").write_bytes(export_bytes(model, 18))
    rng = np.random.default_rng(0)
    # Calibrated on inputs of half the test input's range: the int8 model clips (a systematic
    # error, as where high noise meets ranges set by typical inputs), not only rounds.
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "q.onnx", [0.5 * _smooth(rng, shape) for _ in range(8)])
    ranges = qat.conv_ranges(onnx.load(str(tmp_path / "q.onnx")))
    x = _smooth(rng, shape)
    # The int8 graph as written (Q/DQ semantics; graph optimisation off). The fused QLinearConv
    # kernels round a little differently; on image-gray the two agree within 0.015 dB PSNR.
    reference = ort.SessionOptions()
    reference.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    int8 = ort.InferenceSession(str(tmp_path / "q.onnx"), reference, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        fp32 = model(torch.from_numpy(x)).numpy()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        names = qat.attach(model, ranges)
        fake = model(torch.from_numpy(x)).numpy()
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # weights untouched
    q = onnx.load(str(tmp_path / "q.onnx"))
    quantised = {t.name.removesuffix("_quantized") for t in q.graph.initializer if t.name.endswith(".weight_quantized")}
    assert {f"{n}.weight" for n in names} == quantised  # every conv the int8 model quantises, no other
    init = {t.name: onnx.numpy_helper.to_array(t) for t in q.graph.initializer}
    for n in names:  # the weights it trains with are exactly the int8 model's
        w = dict(model.named_modules())[n].weight.detach()
        scale = init[f"{n}.weight_scale"].reshape(-1, *([1] * (w.dim() - 1)))
        assert np.array_equal(qat._fake_quant_weight(w).numpy(), init[f"{n}.weight_quantized"].astype(np.float32) * scale)
    with torch.no_grad():
        qat.detach(model)
        assert np.array_equal(model(torch.from_numpy(x)).numpy(), fp32)  # back to fp32 exactly
    int8_error, left = np.abs(int8 - fp32).mean(), np.abs(int8 - fake).mean()
    # the fake-quantised model carries most of the int8 error: 58% on unet_dae, 63% on opponent_unet_dae, all but
    # 0.01% on unet1d_dae (these models and inputs, measured 2026-12-05); without the tail's fp32 reads of the
    # stem's skip (quantize.fp32_reads) it would carry none of the skip's rounding
    assert int8_error > 0 and left < 0.45 * int8_error, (int8_error, left)


def test_plane_mixing_sums_are_rounded_where_the_int8_model_rounds_them(tmp_path):
    """opponent_unet_dae's plane mixing adds a conv's output to the features it read; the int8
    graph rounds that sum once for all its readers (the next stage and the decoder's Concat of
    the skip). conv_ranges finds each sum's range, and the fake-quantised model's mixing
    outputs then lie on that 8-bit grid, matching the int8 graph's sums."""
    torch.manual_seed(0)
    model = get_model("opponent_unet_dae", channels=3, width=8, levels=2, plane_mixing=True).eval()
    for m in [model.net.tail, model.guide, *(p.conv for p in model.mix)]:
        torch.nn.init.normal_(m.weight, std=0.05)
    (tmp_path / "fp32.onnx").write_bytes(export_bytes(model, 18))
    rng = np.random.default_rng(0)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "q.onnx", [_smooth(rng, (1, 3, 64, 64)) for _ in range(4)])
    ranges = qat.conv_ranges(onnx.load(str(tmp_path / "q.onnx")))
    sums = {k.removesuffix(qat.SUM): v[0] for k, v in ranges.items() if k.endswith(qat.SUM)}
    assert sorted(sums) == [f"mix.{i}" for i in range(len(model.mix))] and all(v[1] is None for k, v in ranges.items() if k.endswith(qat.SUM))
    got = {}
    watch = lambda: [m.register_forward_hook(lambda mod, args, out, i=i: got.__setitem__(f"mix.{i}", out.detach().clone())) for i, m in enumerate(model.mix)]  # noqa: E731
    x = torch.from_numpy(_smooth(rng, (1, 3, 64, 64)))
    with torch.no_grad():
        hooks = watch()
        model(x)
        plain = dict(got)
        for h in hooks:
            h.remove()
        qat.attach(model, ranges)
        watch()  # after attach's own hooks: sees the rounded sums
        model(x)
    for name, (scale, zero) in sums.items():
        steps = got[name] / scale + zero
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.min() >= -1e-3 and steps.max() <= 255 + 1e-3, name
        assert not torch.allclose(plain[name] / scale, (plain[name] / scale).round(), atol=1e-3)  # fp32 sums are off the grid
    qat.detach(model)
    with torch.no_grad():
        model(x)
    assert all(torch.equal(got[k], plain[k]) for k in plain)  # detached: fp32 again


def test_quantization_aware_fine_tune_runs_through_fit(tmp_path, caplog):
    root = photo_sources(tmp_path / "photos", 3, 1)
    base = ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=64", "train.epochs=1", f"data.root={root}"]
    cfg = load(REPO / "configs/tiny-image.yaml", base)
    run = tmp_path / "run"
    ingest(root, cfg.data, run / "manifest.csv")
    start = fit(cfg, root, run / "manifest.csv", run)
    qcfg = load(REPO / "configs/tiny-image.yaml", [*base, f"train.init_from={start}", "train.quantization_aware=true", "train.distill=true", "train.lr=1e-4"])
    assert qcfg.hash() != cfg.hash() and cfg.hash() == load(REPO / "configs/tiny-image.yaml", [*base, "train.quantization_aware=false", "train.distill=false"]).hash()  # the defaults leave old hashes alone
    qrun = tmp_path / "qrun"
    ingest(root, qcfg.data, qrun / "manifest.csv")
    with caplog.at_level("INFO"):
        best = read_checkpoint(fit(qcfg, root, qrun / "manifest.csv", qrun))
    assert any("convs train as int8" in r.message for r in caplog.records)
    assert any("distilling" in r.message and str(start) in r.message for r in caplog.records)
    assert len(best["qat_ranges"]) >= 8 and "head.0.weight" not in best["qat_ranges"]  # kept for a resume; the input conv stays fp32
    before = read_checkpoint(start)
    assert set(best["state"]) == set(before["state"])  # plain weights: exported and quantised as usual
    assert any(not torch.equal(best["state"][k], before["state"][k]) for k in before["state"])
    assert best["config"]["train"]["quantization_aware"] is True

    # Its int8 twin stands in for the start model: the held-out change is measured against that
    # (given, or by default where the fine-tune started from an .onnx).
    to_onnx(start, tmp_path / "start.onnx")
    to_onnx(qrun / "best.pt", qrun / "model.onnx")
    q, delta = int8_twin(qrun / "best.pt", qrun / "model.onnx", n_calibration=8, against=tmp_path / "start.onnx")
    note = json.loads({p.key: p.value for p in onnx.load(str(q)).metadata_props}["autoenc.quantization"])
    assert note["quantization_aware_from"] == str(start) and note["against"] == str(tmp_path / "start.onnx") and note["val"] == delta
    assert note["distilled"] is True
    own = val_delta(run_data(qrun / "best.pt", best), qrun / "model.onnx", q)
    assert delta["int8"] == pytest.approx(own["int8"]) and delta["fp32"] != pytest.approx(own["fp32"], abs=1e-6)
    with pytest.raises(ValueError, match="needs an fp32 image model with 1"):
        int8_twin(qrun / "best.pt", qrun / "model.onnx", n_calibration=8, against=q)


def test_distilling_trains_towards_the_fp32_start_not_the_clean_target():
    torch.manual_seed(0)
    model = get_model("unet_dae", channels=1, width=8, levels=2)
    teacher = get_model("unet_dae", channels=1, width=8, levels=2)
    torch.nn.init.normal_(teacher.tail.weight, std=0.1)  # a teacher that does something (its parameters still require grad)
    noisy, clean = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    mse = LOSSES["l2"]
    loss = objective(model, (noisy, clean), teacher, mse, 16000)
    with torch.no_grad():
        towards_teacher, towards_clean = mse(model(noisy), teacher(noisy)), mse(model(noisy), clean)
    assert loss.item() == pytest.approx(towards_teacher.item()) and loss.item() != pytest.approx(towards_clean.item())
    assert objective(model, (noisy, clean), None, mse, 16000).item() == pytest.approx(towards_clean.item())
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and model.tail.weight.grad is not None


def test_distill_needs_a_quantization_aware_fine_tune():
    with pytest.raises(ValueError, match="train.distill"):
        load(REPO / "configs/tiny-image.yaml", ["train.distill=true", "train.init_from=x.pt"])
