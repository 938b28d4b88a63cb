"""Noise-level estimation and conditioning: the torch-free estimator, models that take the
estimate as an extra input plane (trained, exported, quantised, tiled), ``strength``, and the
estimate in a job's per-file results."""

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from autoenc.runtime.noise_level import estimate_sigma
from conftest import REPO, make_model_file, photo, photo_sources, runtime_ops


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(clean.astype(np.float64) + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)


def _clean(h: int = 256, w: int = 320) -> np.ndarray:
    """A noise-free uint8 RGB picture: smooth shading, a checkerboard of hard edges, fine stripes."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.45 + 0.25 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 0.2 * ((xx // 24 + yy // 24) % 2) + 0.05 * np.sin(xx / 2.5)
    return (np.stack([base * (0.8 + 0.1 * c) for c in range(3)], axis=2) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("sigma", [5, 15, 30])
def test_estimate_reads_white_noise_through_texture_and_8_bits(sigma):
    clean = _clean()
    noisy = _noisy(clean, sigma)
    est = 255 * estimate_sigma(noisy, 255)
    assert abs(est - sigma) < 0.1 * sigma + 0.5, est
    assert 255 * estimate_sigma(clean, 255) < 1.0  # edges and stripes are not noise
    assert estimate_sigma(noisy.astype(np.float32) / 255) == pytest.approx(estimate_sigma(noisy, 255), rel=1e-5)
    assert estimate_sigma(noisy[..., 0], 255) == pytest.approx(estimate_sigma(noisy[..., :1], 255))
    assert estimate_sigma(np.zeros((1, 5, 3), np.uint8), 255) == 0.0


def test_level_model_starts_as_the_blind_one_and_learns_to_use_the_level():
    from autoenc.models import get_model

    torch.manual_seed(0)
    blind = get_model("unet_dae", channels=1, width=8, levels=2)
    torch.nn.init.normal_(blind.tail.weight, std=0.05)
    cond = get_model("unet_dae", channels=1, width=8, levels=2, noise_level_input=True)
    cond.adopt("unet_dae", blind.state_dict())
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        ref = blind(x)
        for level in (0.0, 0.2):
            assert torch.allclose(cond(torch.cat([x, torch.full_like(x, level)], 1)), ref, atol=1e-6)
        cond.head[0].weight[:, 1:].normal_(std=0.5)
        a, b = (cond(torch.cat([x, torch.full_like(x, v)], 1)) for v in (0.0, 0.2))
    assert a.shape == x.shape and (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="cannot start from"):
        get_model("unet_dae", channels=1, width=4, levels=2).adopt("unet_dae", blind.state_dict())  # narrower
    with pytest.raises(ValueError, match="cannot start from"):
        get_model("unet_dae", channels=1, width=16, levels=3).adopt("unet_dae", blind.state_dict())  # deeper


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_a_wider_model_starts_as_the_narrow_one(monkeypatch, noise):
    from autoenc.models import get_model
    from autoenc.models.image import UNetDAE

    torch.manual_seed(0)
    narrow = get_model("unet_dae", channels=3, width=8, levels=3, bottleneck_blocks=2)
    for m in narrow.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
            torch.nn.init.normal_(m.bias, std=0.05)
    monkeypatch.setattr(UNetDAE, "WIDEN_NOISE", noise)
    wide = get_model("unet_dae", channels=3, width=12, levels=3, bottleneck_blocks=2, noise_level_input=True)
    wide.adopt("unet_dae", narrow.state_dict())
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        ref, got = narrow(x), wide(torch.cat([x, torch.full_like(x[:, :1], 0.1)], 1))
    err = (got - ref).abs().max().item()
    assert err < 1e-5 if noise == 0 else 1e-5 < err < 0.1 * (ref - x).abs().mean().item()  # copies that can grow apart


def test_trained_level_model_exports_quantises_and_tiles_exactly(tmp_path):
    from autoenc.config import load
    from autoenc.data import TrainingData, ingest, read_manifest
    from autoenc.export import to_onnx
    from autoenc.quantize import calibration_inputs, quantize_int8
    from autoenc.runtime.infer import OnnxDenoiser
    from autoenc.runtime.metadata import ModelInfo
    from autoenc.train import fit

    root = photo_sources(tmp_path / "photos", 2, 3)
    cfg = load(REPO / "configs/tiny-image.yaml", ["data.val_files=[]", "data.val_sources=[b]", "data.channels=3", "data.patches_per_epoch=32",
                                                  "train.epochs=1", "model.kwargs.noise_level_input=true"])
    run = tmp_path / "run"
    ingest(root, cfg.data, run / "manifest.csv")
    best = fit(cfg, root, run / "manifest.csv", run)
    info = to_onnx(best, run / "model.onnx")
    assert info.noise_level_input and info.channels == 3 and info.format_version == 2  # older runtimes (format 1) refuse it
    props = {p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}
    assert json.loads(props["autoenc.noise_level_input"]) is True and ModelInfo.from_props(props).noise_level_input

    data = TrainingData(cfg, root, read_manifest(run / "manifest.csv"))
    calib = calibration_inputs(data, 4)
    assert calib[0].shape[1] == 4 and np.ptp(calib[0][0, 3]) == 0 and calib[0][0, 3, 0, 0] == pytest.approx(estimate_sigma(calib[0][0, :3].transpose(1, 2, 0)))
    quantize_int8(run / "model.onnx", run / "q.onnx", calib)
    from autoenc.checkpoint import start_from
    from autoenc.models import get_model

    with pytest.raises(ValueError, match="fp32 twin"):
        start_from(get_model("unet_dae", channels=3, width=8, levels=2, noise_level_input=True), "unet_dae", run / "q.onnx")
    again = get_model("unet_dae", channels=3, width=8, levels=2, noise_level_input=True)
    start_from(again, "unet_dae", run / "model.onnx")  # the fp32 export is a start
    with pytest.raises(ValueError, match="cannot start from"):
        start_from(get_model("unet_dae", channels=3, width=8, levels=2, noise_level_input=True, bottleneck_blocks=0), "unet_dae", best)  # would drop weights
    ops = runtime_ops(run / "q.onnx", tmp_path)
    assert ops["QLinearConv"] >= 6 and ops["Conv"] + ops["FusedConv"] == 4, ops  # the noise head, the input conv and the decoder's last two convs stay fp32

    img = _noisy(photo(150, 170, 3, seed=5), 20)
    whole = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None)
    tiled = OnnxDenoiser(run / "model.onnx", tile=64, memory_mb=None)
    a = whole.denoise(img.astype(np.float32) / 255)
    assert np.abs(a - tiled.denoise(img.astype(np.float32) / 255)).max() < 1e-4  # one level per image, not per tile
    strong = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None, strength=2.0)
    level = float(whole.noise_level(img, 255).mean())
    assert level == pytest.approx(20 / 255, rel=0.15)
    assert np.array_equal(strong.denoise(img, 255, level=level), whole.denoise(img, 255, level=2 * level))
    assert not np.array_equal(strong.denoise(img, 255), whole.denoise(img, 255))
    assert strong.identity == whole.identity + "@strength2.0"


def test_strength_reaches_jobs_and_is_part_of_the_ledger_identity(tmp_path, gray_model):
    from autoenc.runtime.job_summary import files_table
    from autoenc.runtime.jobs import JobError, check_job, denoise_dir
    from autoenc.runtime.session import ModelError
    from autoenc.runtime.infer import OnnxDenoiser

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, sigma in enumerate((0, 10, 30)):
        Image.fromarray(_noisy(_clean(64, 80)[..., 0], sigma, seed=i)).save(src / f"s{sigma}.png")
    with pytest.raises(JobError, match="needs a model with a noise-level input"):
        check_job(gray_model, src, dst, strength=2)
    with pytest.raises(ModelError, match="is blind"):
        OnnxDenoiser(gray_model, strength=0.5)
    report = denoise_dir(gray_model, src, dst)  # blind model: the estimate is still reported
    sigmas = {r.path: r.noise_sigma for r in report.results}
    assert sigmas["s0.png"] < 1 < 8 < sigmas["s10.png"] < 12 < 26 < sigmas["s30.png"] < 34, sigmas
    assert {r["path"]: r["noise_sigma"] for r in files_table(report)} == sigmas

    level_model = make_model_file(tmp_path, channels=1, noise_level_input=True, noise_scale=0.1)
    rgb = np.stack([_noisy(_clean(64, 80)[..., 0], s, seed=s) for s in (5, 10, 30)], axis=2)
    den = OnnxDenoiser(level_model, memory_mb=None)
    per_plane = np.concatenate([den.denoise(rgb[..., i : i + 1], 255) for i in range(3)], axis=2)
    assert np.array_equal(den.denoise(rgb, 255), per_plane)  # each plane is told its own level
    assert np.array_equal(den.denoise(rgb, 255, level=den.noise_level(rgb, 255)), per_plane)  # the per-plane estimate, given
    assert not np.array_equal(den.denoise(rgb, 255, level=float(den.noise_level(rgb, 255).mean())), per_plane)
    first = denoise_dir(level_model, src, tmp_path / "out2", strength=1.5)
    assert first.counts()["written"] == 3
    assert denoise_dir(level_model, src, tmp_path / "out2", strength=1.5).counts()["unchanged"] == 3
    again = denoise_dir(level_model, src, tmp_path / "out2")  # another strength makes other outputs: redone
    assert again.counts()["written"] == 3
    assert denoise_dir(level_model, src, tmp_path / "out2", ensemble=True).counts()["written"] == 3  # so does the ensemble


def test_noise_profile_tells_blotches_and_chroma_from_grain():
    from autoenc.runtime.noise_level import PROFILE_SIZE, noise_profile

    clean = _clean()
    grain = noise_profile(_noisy(clean, 12), 255) * 255  # Y, Y coarse, C1, C1 coarse, C2, C2 coarse
    assert grain.shape == (PROFILE_SIZE,)
    for plane, norm in enumerate((0.577, 0.707, 0.612)):  # independent RGB noise: each opponent row's norm
        fine, coarse = grain[2 * plane : 2 * plane + 2]
        assert fine == pytest.approx(12 * norm, rel=0.15) and coarse == pytest.approx(fine, rel=0.15), grain
    rng = np.random.default_rng(1)
    blotches = np.clip(np.round(clean + rng.normal(0, 12, (128, 160, 3)).repeat(2, 0).repeat(2, 1)), 0, 255).astype(np.uint8)
    blotchy = noise_profile(blotches, 255) * 255  # the same deviation, in 2x2 blobs
    assert estimate_sigma(blotches, 255) * 255 < 2  # what the one level reads
    assert all(blotchy[2 * p + 1] > 4 * max(blotchy[2 * p], 1) for p in range(3)), blotchy
    luma_only = clean + rng.normal(0, 12, (256, 320, 1))  # the same noise in R, G and B: no chroma noise
    prof = noise_profile(np.clip(np.round(luma_only), 0, 255).astype(np.uint8), 255) * 255
    assert prof[0] > 8 and max(prof[2:]) < 1.5, prof
    gray = _noisy(clean, 12)[..., 0]
    assert np.array_equal(noise_profile(gray, 255), noise_profile(np.repeat(gray[..., None], 3, axis=2), 255))
    assert noise_profile(gray, 255)[2:].max() == 0.0
    assert np.allclose(noise_profile(_noisy(clean, 12).astype(np.float32) / 255), grain / 255, rtol=1e-5)
    assert np.array_equal(noise_profile(np.zeros((3, 9, 3), np.uint8), 255), np.zeros(PROFILE_SIZE))
    big = np.clip(np.round(128 + np.random.default_rng(2).normal(0, 12, (1100, 1300, 3))), 0, 255).astype(np.uint8)  # read on a strided grid of blocks
    assert noise_profile(big, 255) * 255 == pytest.approx([12 * 0.577] * 2 + [12 * 0.707] * 2 + [12 * 0.612] * 2, rel=0.1)
    with pytest.raises(ValueError, match="RGB or gray"):
        noise_profile(np.zeros((8, 8, 4)))


def test_profile_model_starts_as_the_level_model_and_runs_as_trained(tmp_path, monkeypatch):
    from autoenc.data import with_noise_level
    from autoenc.models import get_model
    from autoenc.runtime import metadata
    from autoenc.runtime.infer import OnnxDenoiser
    from autoenc.runtime.int8_kernels import probe_input
    from autoenc.runtime.jobs import denoise_dir

    torch.manual_seed(0)
    level = get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_level_input=True)
    for m in (level.net.tail, level.guide):
        torch.nn.init.normal_(m.weight, std=0.05)
    prof = get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_level_input=True, noise_profile=True)
    prof.adopt("opponent_unet_dae", level.state_dict())
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        assert torch.allclose(prof(with_noise_level(x, profile=True)), level(with_noise_level(x)), atol=1e-6)  # the profile has no say yet
        prof.net.head[0].weight[:, 2:].normal_(std=0.5)
        assert (prof(with_noise_level(x, profile=True)) - level(with_noise_level(x))).abs().max() > 1e-3
    with pytest.raises(ValueError, match="needs noise_level_input"):
        get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_profile=True)

    path = make_model_file(tmp_path, channels=3, width=8, levels=2, name="opponent_unet_dae", noise_level_input=True, noise_profile=True)
    den = OnnxDenoiser(path, tile=4096, memory_mb=None)
    assert den.info.noise_profile and den.info.format_version == 5 and den.info.conditioning_planes == 7
    assert probe_input(den.info).shape == (1, 10, 64, 64)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    monkeypatch.setattr(metadata, "READ_FORMATS", (1, 2, 3, 4))  # a runtime from before the profile refuses the file
    with pytest.raises(ValueError, match="format version 5"):
        metadata.ModelInfo.from_props(props)
    monkeypatch.undo()

    from autoenc.checkpoint import load_checkpoint

    model, _ = load_checkpoint(path.with_suffix(".pt"))
    img = _noisy(photo(150, 170, 3, seed=5), 20)
    flt = img.astype(np.float32) / 255
    a = den.denoise(flt)
    with torch.no_grad():  # inference tells the model what training tells it (0..1 scale, profile after the level)
        ref = model(with_noise_level(torch.from_numpy(flt).permute(2, 0, 1)[None], profile=True))[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(a - ref).max() < 1e-3
    assert np.abs(a - OnnxDenoiser(path, tile=64, memory_mb=None).denoise(flt)).max() < 1e-4  # one profile per image, not per tile
    strong = OnnxDenoiser(path, tile=4096, memory_mb=None, strength=2.0).denoise(flt)
    with torch.no_grad():  # the strength scales the level and the profile alike
        cond = with_noise_level(torch.from_numpy(flt).permute(2, 0, 1)[None], profile=True)
        cond[:, 3:] *= 2
        assert np.abs(strong - model(cond)[0].permute(1, 2, 0).clamp(0, 1).numpy()).max() < 1e-3
    gray = img[..., 1]
    with torch.no_grad():  # a gray file: R = G = B, told that image's profile (no chroma noise)
        rep = torch.from_numpy(np.repeat(gray[..., None], 3, axis=2).astype(np.float32) / 255).permute(2, 0, 1)[None]
        want = model(with_noise_level(rep, profile=True)).mean(dim=1)[0].clamp(0, 1).numpy()
    assert np.abs(den.denoise(gray[..., None].astype(np.float32) / 255)[..., 0] - want).max() < 1e-3

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(img).save(src / "rgb.png")
    Image.fromarray(gray).save(src / "gray.png")
    report = denoise_dir(path, src, tmp_path / "out")
    assert report.counts()["written"] == 2 and all(r.noise_sigma > 10 for r in report.results)
