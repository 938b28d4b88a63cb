"""Synthetic dead-leaves images and the share of training patches cut from them."""

import math

import numpy as np

import pytest
import torch

from autoenc.config import DataConfig, NoiseConfig
from autoenc.data import PatchPairs
from autoenc.dead_leaves import R_MIN, UNCOVERED, bank, dead_leaves, disk_count


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_dead_leaves_is_seeded_in_range_and_coloured_only_when_asked():
    a, b, c = dead_leaves(64, 1, _g(1)), dead_leaves(64, 1, _g(1)), dead_leaves(64, 1, _g(2))
    assert a.shape == (1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    rgb = dead_leaves(64, 3, _g(1))
    assert rgb.shape == (3, 64, 64)
    assert float((rgb[0] - rgb[1]).abs().mean()) > 0.02  # channels differ: colour, not gray x3


def test_dead_leaves_has_edges_at_every_scale():
    """Occluding disks of power-law radii: a fine-scale (pixel) difference and a coarse one
    (16 px) both find many edges, and no large part of the image is one flat colour."""
    x = dead_leaves(128, 1, _g(5))[0]
    fine = (x[:, 1:] - x[:, :-1]).abs()
    coarse = (x[:, 16:] - x[:, :-16]).abs()
    assert float((fine > 0.05).float().mean()) > 0.1
    assert float((coarse > 0.05).float().mean()) > 0.3
    flat_share = max(float((x == v).float().mean()) for v in x.flatten()[::97].tolist())
    assert flat_share < 0.5


def test_disk_count_covers_the_image():
    n = disk_count(512)
    mean_area = 2 * math.pi * R_MIN**2 * math.log(512 / R_MIN)
    assert math.exp(-n * mean_area / 512**2) <= UNCOVERED * 1.01


def test_bank_images_depend_on_seed_and_index_only():
    one = bank(1, seed=4, images=2, size=48)
    again = bank(1, seed=4, images=3, size=48)
    assert torch.equal(one[1], again[1]) and not torch.equal(one[0], one[1])
    assert not torch.equal(one[0], bank(1, seed=5, images=1, size=48)[0])


def test_patch_pairs_cut_the_configured_share_from_synthetic_images():
    photos, synthetic = [torch.zeros(1, 64, 64)], [torch.ones(1, 64, 64)]
    noise = NoiseConfig(mixture=[{"name": "gaussian", "sigma": [5, 5]}])
    pairs = PatchPairs(photos, DataConfig(patch_size=32, patches_per_epoch=400, dead_leaves=0.3), noise, seed=1, synthetic=synthetic)
    share = sum(float(pairs[i][1].mean()) for i in range(400)) / 400
    assert 0.24 < share < 0.36
    plain = DataConfig(patch_size=32, patches_per_epoch=10)
    # with no share the draws are those of a run made before the option existed
    a, b = PatchPairs(photos, plain, noise, seed=1), PatchPairs(photos, plain, noise, seed=1, synthetic=synthetic)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(10))
    with pytest.raises(ValueError, match="dead_leaves"):
        PatchPairs(photos, DataConfig(patch_size=32, dead_leaves=0.3), noise, seed=1)


def test_int8_calibration_draws_the_photos_never_the_synthetic_share():
    """Calibration sets the int8 activation ranges from users' kind of media: a twin calibrated
    with dead-leaves patches got wider ranges and lost more on smooth held-out photos."""
    from autoenc.config import load
    from autoenc.data import TrainingData
    from autoenc.quantize import calibration_inputs
    from conftest import REPO

    cfg = load(REPO / "configs/tiny-image.yaml", ["data.dead_leaves=0.9"])
    data = TrainingData.__new__(TrainingData)  # the two image lists, without a corpus on disk
    data.cfg, data.train, data.synthetic = cfg, [torch.zeros(1, 64, 64)], [torch.ones(1, 64, 64)]
    trained_on = [float(clean.mean()) for _, clean in (data.dataset(0)[i] for i in range(40))]
    assert sum(m > 0.5 for m in trained_on) > 25  # training still draws the synthetic share
    calib = calibration_inputs(data, 40)
    assert len(calib) == 40 and all(float(np.median(x)) < 0.5 for x in calib)  # noisy photo patches (all zero) only
