"""Every registered model: shapes, encode/decode, identity at init, export parity, and it learns."""

import pytest
import torch

from autoenc.config import ExportConfig
from autoenc.export import check_parity, export_module
from autoenc.models import get_model, list_models, model_modality
from conftest import train_steps

IMAGE_MODELS = [n for n in list_models() if model_modality(n) == "image"]
# Small constructor kwargs for every registered model (the test below checks none is missing).
SMALL = {
    "unet_dae": {"channels": 3, "width": 8, "levels": 2}, "plane_unet_dae": {"channels": 3, "width": 8, "levels": 2},
    "opponent_unet_dae": {"channels": 3, "width": 8, "levels": 2},
    "unet1d_dae": {"channels": 1, "width": 8, "levels": 3}, "spectral_dae": {"channels": 1, "n_fft": 64, "hidden": 8, "dilations": [1, 2], "floor_frames": 3},
    "band_dae": {"channels": 1, "n_fft": 64, "widths": [4, 6, 8], "dilations": [1, 2], "floor_frames": 3},
    "ae_dense": {"latent": 8, "hidden": 64}, "ae_conv": {"latent": 8, "width": 8}, "ae_overcomplete": {"latent": 1024, "hidden": 128},
    "ae_sparse": {"latent": 64, "hidden": 64}, "vae_dense": {"latent": 4, "hidden": 64}, "vae_conv": {"latent": 4, "width": 8},
}


def _example(model, name: str, batch: int, seed: int, grow: int = 0) -> torch.Tensor:
    """A seeded input for ``model``; ``grow`` enlarges images and audio (not 28x28 family images)."""
    g = torch.Generator().manual_seed(seed)
    kind = model_modality(name)
    if kind == "audio":
        return 2 * torch.rand(batch, model.channels, 4 * model.size_multiple + 37 + 101 * grow, generator=g) - 1
    if kind == "image":
        return torch.rand(batch, model.channels, 45 + 7 * grow, 61 + 13 * grow, generator=g)
    return torch.rand(batch, 1, 28, 28, generator=g)


def test_every_registered_model_has_small_kwargs():
    assert set(SMALL) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_round_trips_and_exports_with_parity(name):
    """Whatever its modality: decode(encode(x)) is forward(x), shaped like x, and the exported
    ONNX file matches torch on inputs of other sizes and batch (dynamic axes)."""
    torch.manual_seed(0)
    model = get_model(name, **SMALL[name]).eval()
    x = _example(model, name, 2, 1)
    if model_modality(name) != "family":  # a randomly initialised head, so parity compares a real output
        head = model.tail if hasattr(model, "tail") else model.net.tail if hasattr(model, "net") else model.gate.out  # (spectral_dae, band_dae: its gain head)
        torch.nn.init.normal_(head.weight, std=0.05)
    with torch.no_grad():
        y = model(x)
        assert y.shape == x.shape
        assert torch.allclose(model.decode(model.encode(x)), y, atol=1e-6)
    dims = {0: torch.export.Dim("batch")}
    if model_modality(name) == "image":
        dims |= {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    elif model_modality(name) == "audio":
        dims |= {2: torch.export.Dim("length", min=model.min_length)}
    settings = ExportConfig()
    blob = export_module(model, x, dims, settings.opset)
    assert check_parity(model, blob, [_example(model, name, 3, 2, grow=1)], settings.atol) <= settings.atol


def test_registry_lists_and_refuses_unknown():
    assert "unet_dae" in list_models()
    with pytest.raises(KeyError, match="unknown model"):
        get_model("no-such-model")


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_encode_decode(name, channels):
    torch.manual_seed(0)
    if name == "opponent_unet_dae" and channels != 3:
        with pytest.raises(ValueError, match="RGB"):
            get_model(name, channels=channels)
        return
    m = get_model(name, channels=channels, width=8, levels=2).eval()
    for h, w in [(32, 32), (97, 131), (5, 7)]:
        x = torch.rand(2, channels, h, w)
        codes = m.encode(x)
        assert codes[-1].shape[1] == 8 * 4  # latent width doubles per level
        assert codes[-1].shape[-1] < w or w < 4
        y = m.decode(codes)
        assert y.shape == x.shape
        assert torch.equal(y, m(x))
        assert torch.allclose(y, x)  # zero-initialised noise head: identity before training


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_loss_falls_in_a_few_steps(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    c = 3 if name == "opponent_unet_dae" else 1
    m = get_model(name, channels=c, width=8, levels=2)
    clean = torch.rand(8, c, 32, 32, generator=g).cumsum(-1) / 32  # smooth ramps
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    losses = train_steps(m, (noisy, clean), lambda b: torch.nn.functional.mse_loss(m(b[0]), b[1]), steps=30, lr=3e-3, per_epoch=1)
    assert losses[-1] < 0.5 * losses[0]


def test_plane_model_starts_as_the_gray_model_per_plane():
    torch.manual_seed(0)
    gray = get_model("unet_dae", channels=1, width=8, levels=2, bottleneck_blocks=1).eval()
    torch.nn.init.normal_(gray.tail.weight, std=0.05)
    plane = get_model("plane_unet_dae", channels=3, width=8, levels=2, bottleneck_blocks=1).eval()
    plane.adopt("unet_dae", gray.state_dict())
    x = torch.rand(2, 3, 33, 47)
    with torch.inference_mode():
        per_plane = gray(x.reshape(6, 1, 33, 47)).reshape(2, 3, 33, 47)
        assert torch.allclose(plane(x), per_plane, atol=1e-6)
        # A trained guide lets each plane see the other channels: changing G moves R's output
        # (the gray model per plane gives R the same output whatever G is).
        torch.nn.init.normal_(plane.guide.weight, std=0.1)
        y = x.clone()
        y[:, 1] += 0.2
        assert not torch.allclose(plane(x)[:, 0], plane(y)[:, 0], atol=1e-4)
        # Channel order is consistent (rotating the input channels rotates the output) and
        # images in a batch do not mix.
        out = plane(x)
        assert torch.allclose(plane(torch.roll(x, 1, dims=1)), torch.roll(out, 1, dims=1), atol=1e-5)
        assert torch.allclose(plane(x[1:]), out[1:], atol=1e-5)
    with pytest.raises(ValueError, match="gray unet_dae of its size"):
        plane.adopt("unet1d_dae", {})


def test_opponent_model_starts_as_the_gray_model_on_luminance_and_chrominance():
    """Adopted from a narrower gray unet_dae with a level input, the opponent model computes
    the gray model on Y, C1, C2 (each told the RGB level times its row norm) mapped back to RGB;
    its guide then lets each plane see the others."""
    from autoenc.runtime.opponent import OPPONENT, OPPONENT_OFFSET

    torch.manual_seed(0)
    gray = get_model("unet_dae", channels=1, width=8, levels=2, bottleneck_blocks=1, noise_level_input=True).eval()
    for p in gray.parameters():
        torch.nn.init.normal_(p, std=0.1)
    wide = get_model("opponent_unet_dae", channels=3, width=12, levels=2, bottleneck_blocks=1, noise_level_input=True).eval()
    wide.net.WIDEN_NOISE = 0.0  # exact widening, so the comparison is tight
    wide.adopt("unet_dae", gray.state_dict())
    m, off = torch.tensor(OPPONENT), torch.tensor(OPPONENT_OFFSET).view(1, 3, 1, 1)
    assert torch.allclose(m @ m.T, torch.diag((m * m).sum(1)))  # orthogonal rows: RGB noise stays independent
    x = torch.cat([torch.rand(2, 3, 33, 47), torch.full((2, 1, 33, 47), 0.1)], dim=1)
    with torch.inference_mode():
        opp = torch.einsum("op,nphw->nohw", m, x[:, :3]) + off
        planes = [gray(torch.cat([opp[:, p : p + 1], x[:, 3:] * m[p].norm()], dim=1)) for p in range(3)]
        expected = torch.einsum("op,nphw->nohw", torch.linalg.inv(m), torch.cat(planes, dim=1) - off)
        assert torch.allclose(wide(x), expected, atol=1e-5)
        torch.nn.init.normal_(wide.guide.weight, std=0.1)
        y = x.clone()
        y[:, 1] += 0.2  # G moves C2 and Y; C1 = (R - B) / 2 sees it only through the guide
        before, after = wide.encode(x)[1].reshape(2, 3, 12, 33, 47), wide.encode(y)[1].reshape(2, 3, 12, 33, 47)
        assert not torch.allclose(before[:, 1], after[:, 1], atol=1e-4)
    with pytest.raises(ValueError, match="gray unet_dae"):
        wide.adopt("plane_unet_dae", {})


def test_plane_mixing_starts_as_the_model_without_it_then_lets_planes_meet_at_every_scale(tmp_path):
    """An opponent model with plane_mixing, started from an exported one without it, computes
    what that model did (the mixing convs start at zero); once they are not zero, a change in
    one opponent plane reaches the others' deep features, which without mixing only the
    input guide could carry (export and int8: tests/test_quantize.py)."""
    from autoenc.checkpoint import start_from
    from conftest import make_model_file

    path = make_model_file(tmp_path, channels=3, width=8, levels=2, name="opponent_unet_dae", noise_level_input=True)
    plain = get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_level_input=True).eval()
    mixed = get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_level_input=True, plane_mixing=True).eval()
    start_from(plain, "opponent_unet_dae", path)
    assert start_from(mixed, "opponent_unet_dae", path)["model"] == "opponent_unet_dae"
    assert len(mixed.mix) == 2 + 1 and all(torch.count_nonzero(m.conv.weight) == 0 for m in mixed.mix)
    x = torch.cat([torch.rand(2, 3, 32, 40), torch.full((2, 1, 32, 40), 0.1)], dim=1)
    with torch.inference_mode():
        assert torch.equal(plain(x), mixed(x))
        torch.nn.init.zeros_(mixed.guide.weight)  # only the mixing may carry one plane's change to another
        for m in mixed.mix:
            torch.nn.init.normal_(m.conv.weight, std=0.05)
        y, d = x.clone(), 0.2 * torch.rand(2, 32, 40)
        y[:, 0] += d
        y[:, 2] += d  # R and B move alike: C1 = (R - B) / 2 stays, so its own plane's input is unchanged
        deep = lambda m, v: m.encode(v)[-1].reshape(2, 3, -1)[:, 1]  # noqa: E731  C1's latent
        assert not torch.allclose(deep(mixed, x), deep(mixed, y), atol=1e-5)
        torch.nn.init.zeros_(plain.guide.weight)
        assert torch.allclose(deep(plain, x), deep(plain, y))
    with pytest.raises(ValueError, match="plane_mixing"):
        plain.adopt("opponent_unet_dae", mixed.state_dict())


def test_opponent_model_continues_from_its_onnx_export(tmp_path):
    """train.init_from an exported opponent model gives back every weight (as stored, rounded to
    fp16), including the all-zero biases (untrained guide and noise head) that the exporter drops."""
    from autoenc.checkpoint import start_from
    from conftest import make_model_file

    path = make_model_file(tmp_path, channels=3, width=8, levels=2, name="opponent_unet_dae", noise_level_input=True)
    source = torch.load(path.with_suffix(".pt"), weights_only=False)["state"]
    again = get_model("opponent_unet_dae", channels=3, width=8, levels=2, noise_level_input=True)
    assert start_from(again, "opponent_unet_dae", path)["model"] == "opponent_unet_dae"
    assert all(torch.equal(v, source[k].half().float()) for k, v in again.state_dict().items())  # as stored: fp16
    # A narrower gray export (its untrained noise-head bias dropped) starts a wider opponent model.
    gray = make_model_file(tmp_path, channels=1, width=8, levels=2, noise_level_input=True)
    wide = get_model("opponent_unet_dae", channels=3, width=12, levels=2, noise_level_input=True)
    assert start_from(wide, "opponent_unet_dae", gray)["model"] == "unet_dae"
    assert torch.count_nonzero(wide.net.tail.bias) == 0 and torch.count_nonzero(wide.net.tail.weight) > 0
