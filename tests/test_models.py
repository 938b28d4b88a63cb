"""Every registered model: shapes, encode/decode, identity at init, and it learns."""

import pytest
import torch

from autoenc.models import get_model, list_models, model_modality

IMAGE_MODELS = [n for n in list_models() if model_modality(n) == "image"]


def test_registry_lists_and_refuses_unknown():
    assert "unet_dae" in list_models()
    with pytest.raises(KeyError, match="unknown model"):
        get_model("no-such-model")


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_encode_decode(name, channels):
    torch.manual_seed(0)
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
    m = get_model(name, channels=1, width=8, levels=2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    clean = torch.rand(8, 1, 32, 32, generator=g).cumsum(-1) / 32  # smooth ramps
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(m(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
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
    with pytest.raises(ValueError, match="unet_dae checkpoint"):
        plane.adopt("unet1d_dae", {})
