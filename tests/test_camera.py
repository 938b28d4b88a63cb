"""The simulated camera behind `camera` noise: profiles, demosaic, and noise that looks like a
camera's (clean target kept, spatially and colour correlated, strongest in the shadows)."""

import json

import numpy as np
import pytest
import torch

from autoenc import camera as cam
from autoenc.config import ConfigError, NoiseConfig, from_dict
from autoenc.noise import pair_generator, synthesize


def write_profiles(path, scale: float = 1.0):
    """A darktable-format profile file: two makers, a few ISOs each (variance a*y + b)."""
    def prof(model, iso, k):
        return {"name": f"{model} iso {iso}", "iso": iso, "a": [k * 2e-5 * scale, k * 1e-5 * scale, k * 1.5e-5 * scale], "b": [k * 1e-7 * scale, -1e-8, k * 1e-7 * scale]}

    tree = {"version": 0, "noiseprofiles": [
        {"maker": "Acme", "models": [{"model": "A1", "profiles": [prof("A1", 100, 1), prof("A1", 3200, 32), prof("A1", 12800, 128)]}]},
        {"maker": "Bolt", "models": [{"model": "B9", "profiles": [prof("B9", 200, 2), prof("B9", 6400, 64)]}]},
    ]}
    path.write_text(json.dumps(tree))
    return path


def rgb(h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(xx / 7.0) * torch.cos(yy / 9.0)
    return torch.stack([base * 0.9, base, base * 0.7]).clamp(0, 1) + 0.0 * torch.rand(3, h, w, generator=g)


def test_profiles_filter_by_maker_and_pick_nearest_iso(tmp_path):
    path = str(write_profiles(tmp_path / "p.json"))
    assert {p.maker for p in cam.load_profiles(path)} == {"Acme", "Bolt"}
    assert {p.maker for p in cam.load_profiles(path, ("acme",))} == {"Acme"}
    assert {p.maker for p in cam.load_profiles(path, (), ("Acme",))} == {"Bolt"}
    with pytest.raises(ValueError, match="no noise profile"):
        cam.load_profiles(path, ("Nobody",))
    only_acme = cam.load_profiles(path, ("Acme",))
    assert cam.pick_profile(only_acme, 5000, torch.Generator().manual_seed(0)).iso == 3200
    assert cam.pick_profile(only_acme, 9000, torch.Generator().manual_seed(0)).iso == 12800


@pytest.mark.parametrize("method", cam.DEMOSAICS)
def test_demosaic_restores_flat_colour_and_keeps_sampled_values(method):
    colour = torch.tensor([0.2, 0.5, 0.8])
    for phase in range(4):
        masks = cam.bayer_masks(20, 24, phase)
        assert torch.equal(masks.sum(0), torch.ones(20, 24)) and masks[1].mean() == 0.5
        flat = colour[:, None, None].expand(3, 20, 24)
        mosaic = (flat * masks).sum(0)
        out = cam.demosaic(mosaic, masks, method)
        assert torch.allclose(out, flat, atol=1e-6), (method, phase)
        noisy = mosaic + 0.1 * torch.randn(20, 24, generator=torch.Generator().manual_seed(phase))
        # Where a channel was sampled, demosaic keeps the sample.
        assert torch.allclose((cam.demosaic(noisy, masks, method) * masks).sum(0), noisy, atol=1e-6)


def test_tone_and_gamma_invert():
    y = torch.linspace(0, 1, 101)
    assert torch.allclose(cam.tone(cam.inverse_tone(y, 0.7), 0.7), y, atol=1e-6)
    assert torch.allclose(cam.linear_to_srgb(cam.srgb_to_linear(y)), y, atol=1e-5)
    m = cam.random_ccm(torch.Generator().manual_seed(3), 0.8)
    assert torch.allclose(m.sum(1), torch.ones(3), atol=1e-6) and (m.diagonal() > 1).all()


def test_camera_noise_keeps_the_clean_target_and_looks_like_a_camera(tmp_path):
    profiles = write_profiles(tmp_path / "p.json")
    x = rgb(96, 96)
    spec = {"name": "camera", "iso": 12800, "gain": 4, "makers": ["Acme"], "profiles": str(profiles), "jpeg_quality": None, "demosaic": ["mhc"], "tone": 0}
    cfg = NoiseConfig(mixture=[spec], quantize_bits=None)
    noisy, applied = synthesize(x, cfg, pair_generator(0, 1))
    assert applied[0]["name"] == "camera"
    n = (noisy - x)[:, 4:-4, 4:-4]
    assert 0.01 < float(n.std()) < 0.2
    # Demosaic spreads noise to neighbours; a colour matrix mixes it between channels.
    horiz = float(torch.corrcoef(torch.stack([n[1, :, :-1].flatten(), n[1, :, 1:].flatten()]))[0, 1])
    across = float(torch.corrcoef(torch.stack([n[0].flatten(), n[2].flatten()]))[0, 1])
    assert horiz > 0.2 and abs(across) > 0.05
    # Gamma: the same sensor noise is larger in the shadows.
    dark, bright = torch.full((3, 64, 64), 0.08), torch.full((3, 64, 64), 0.8)
    nd, _ = synthesize(dark, cfg, pair_generator(0, 2))
    nb, _ = synthesize(bright, cfg, pair_generator(0, 2))
    assert float((nd - dark).std()) > 1.3 * float((nb - bright).std())
    # A profile with (almost) no noise gives back the photo itself: only noise separates them.
    quiet = NoiseConfig(mixture=[{**spec, "profiles": str(write_profiles(tmp_path / "q.json", scale=1e-9))}], quantize_bits=None)
    same, _ = synthesize(x, quiet, pair_generator(0, 3))
    assert float((same - x).abs().max()) < 1e-3


def test_camera_noise_with_jpeg_is_reproducible_8bit_and_needs_rgb(tmp_path):
    profiles = write_profiles(tmp_path / "p.json")
    spec = {"name": "camera", "iso": [800, 12800], "gain": [1, 4], "profiles": str(profiles), "jpeg_quality": [70, 95]}
    cfg = NoiseConfig(mixture=[spec])
    x = rgb(64, 80)
    a, _ = synthesize(x, cfg, pair_generator(5, 0, 1))
    b, _ = synthesize(x, cfg, pair_generator(5, 0, 1))
    c, _ = synthesize(x, cfg, pair_generator(5, 0, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert np.allclose(a.numpy() * 255, np.round(a.numpy() * 255), atol=1e-4)
    with pytest.raises(ValueError, match="RGB"):
        synthesize(x[:1], cfg, pair_generator(0))
    with pytest.raises(ConfigError, match="channels: 3"):
        from autoenc.config import validate, RunConfig

        validate(RunConfig, {"name": "x", "data": {"channels": 1}, "noise": {"mixture": [spec]}}, "test")
    with pytest.raises(ConfigError, match="gain"):
        from_dict({"name": "x", "data": {"channels": 3}, "noise": {"mixture": [{**spec, "gain": 0.5}]}})


def test_missing_profiles_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOENC_CACHE", str(tmp_path))
    if (cam.Path("/") / cam.DARKTABLE_PROFILES).is_file():
        pytest.skip("darktable is installed system-wide here")
    with pytest.raises(FileNotFoundError, match="make data"):
        cam.profiles_path()
