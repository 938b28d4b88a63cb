import tempfile
from pathlib import Path

import pytest
import torch

from autoenc.config import NoiseConfig
from autoenc.noise import NOISES, pair_generator, synthesize
from test_camera import write_profiles

PROFILES = write_profiles(Path(tempfile.mkdtemp(prefix="autoenc-profiles-")) / "noiseprofiles.json")

SPECS = {
    "gaussian": {"name": "gaussian", "sigma": [5, 50]},
    "poisson": {"name": "poisson", "peak": [5, 50]},
    "speckle": {"name": "speckle", "sigma": [0.05, 0.3]},
    "salt_pepper": {"name": "salt_pepper", "amount": [0.01, 0.1]},
    "jpeg": {"name": "jpeg", "quality": [10, 60]},
    "camera": {"name": "camera", "iso": [800, 12800], "gain": [1, 4], "profiles": str(PROFILES)},
}


def test_every_registered_noise_has_a_spec():
    assert set(NOISES) == set(SPECS)


def test_config_noise_classes_and_registries_name_the_same_noises():
    """The registries are the truth: every config noise class is registered in exactly one of
    them, and every registered noise can be configured."""
    import typing

    from autoenc.config import NoiseSpec
    from autoenc.noise import AUDIO_NOISES

    union = typing.get_args(typing.get_args(NoiseSpec)[0])
    names = [cls.model_fields["name"].default for cls in union]
    assert sorted(names) == sorted([*NOISES, *AUDIO_NOISES]) and not set(NOISES) & set(AUDIO_NOISES)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_reproducible_per_seed_and_different_across_seeds(name):
    cfg = NoiseConfig(mixture=[SPECS[name]])
    x = torch.rand(3 if name == "camera" else 1, 40, 48, generator=torch.Generator().manual_seed(1))
    a, pa = synthesize(x, cfg, pair_generator(0, 3, 17))
    b, pb = synthesize(x, cfg, pair_generator(0, 3, 17))
    c, _ = synthesize(x, cfg, pair_generator(0, 3, 18))
    assert torch.equal(a, b) and pa == pb
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)  # quantised like an 8-bit file


def test_gaussian_level_is_what_was_asked():
    cfg = NoiseConfig(mixture=[{"name": "gaussian", "sigma": 25}], clip=False, quantize_bits=None)
    x = torch.full((1, 256, 256), 0.5)
    y, applied = synthesize(x, cfg, pair_generator(0, 0))
    assert applied == [{"name": "gaussian", "sigma": 25.0}]
    assert abs((y - x).std().item() * 255 - 25) < 0.5


def test_mixture_draws_members_by_weight_and_then_chain():
    cfg = NoiseConfig(mixture=[{"name": "gaussian", "sigma": 10, "weight": 3}, {"name": "speckle", "sigma": 0.1, "weight": 1}], then=[{"name": "jpeg", "quality": 50}])
    names = [synthesize(torch.rand(1, 16, 16), cfg, pair_generator(1, i))[1] for i in range(400)]
    share = sum(n[0]["name"] == "gaussian" for n in names) / len(names)
    assert 0.65 < share < 0.85
    assert all(n[1]["name"] == "jpeg" for n in names)
