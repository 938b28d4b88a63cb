"""Smooth photo patches: the ``data.smooth`` share of training patches and the ``data.val_smooth``
validation crops, where an int8 twin's rounding shows (sky, walls, blurred backgrounds)."""

import torch

from autoenc.config import DataConfig, NoiseConfig, load
from autoenc.data import SMOOTH_VAL_CROP, PatchPairs, TrainingData, ingest, read_manifest, roughness, smoothest_crops
from conftest import REPO, photo

NOISE = NoiseConfig(mixture=[{"name": "gaussian", "sigma": [5, 5]}])


def _flat_and_rough() -> list[torch.Tensor]:
    """Two photos of equal area: one flat grey, one uniform noise."""
    return [torch.full((1, 64, 64), 0.5), torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))]


def test_roughness_orders_flat_ramp_and_noise():
    flat, ramp, rough = torch.full((1, 32, 32), 0.3), torch.linspace(0, 1, 32).expand(1, 32, 32), torch.rand(1, 32, 32)
    assert roughness(flat) == 0.0 < roughness(ramp) < roughness(rough)


def test_smooth_share_draws_the_smoothest_candidates():
    photos = _flat_and_rough()

    def flat_share(smooth: float) -> float:
        pairs = PatchPairs(photos, DataConfig(patch_size=32, patches_per_epoch=400, smooth=smooth), NOISE, seed=1)
        return sum(roughness(pairs[i][1]) == 0.0 for i in range(400)) / 400

    plain, half = flat_share(0.0), flat_share(0.5)
    assert 0.42 < plain < 0.58  # by area: one patch in two
    assert 0.68 < half < 0.82  # half the patches are the smoothest of 8 draws: flat unless all 8 were rough
    pairs = PatchPairs(photos, DataConfig(patch_size=32, patches_per_epoch=8, smooth=0.5), NOISE, seed=1)
    again = PatchPairs(photos, DataConfig(patch_size=32, patches_per_epoch=8, smooth=0.5), NOISE, seed=1)
    assert all(torch.equal(pairs[i][0], again[i][0]) for i in range(8))  # seeded like every draw


def test_without_a_smooth_share_patches_draw_as_before_the_option():
    """Runs made before data.smooth existed resume with the same patches: the draws of the code
    before it (photo by area, top, left, rotation, flip), written out here."""
    import torchvision.transforms.v2.functional as TF

    from autoenc.data import pair_generator

    photos = [torch.rand(1, 40, 50, generator=torch.Generator().manual_seed(1)), torch.rand(1, 60, 45, generator=torch.Generator().manual_seed(2))]
    pairs = PatchPairs(photos, DataConfig(patch_size=32, patches_per_epoch=6), NOISE, seed=3)
    area = torch.tensor([40.0 * 50, 60.0 * 45], dtype=torch.float64)
    for i in range(6):
        g = pair_generator(3, "train", 0, i)
        im = photos[int(torch.multinomial(area / area.sum(), 1, generator=g).item())]
        top, left = int(torch.randint(0, im.shape[1] - 31, (), generator=g)), int(torch.randint(0, im.shape[2] - 31, (), generator=g))
        x = im[:, top : top + 32, left : left + 32]
        k, flip = int(torch.randint(0, 4, (), generator=g)), bool(torch.rand((), generator=g) < 0.5)
        x = TF.horizontal_flip(x) if flip else x
        x = torch.rot90(x, k, dims=(1, 2)) if k else x
        assert torch.equal(pairs[i][1], x), i


def test_smoothest_crops_are_flat_first_and_do_not_overlap():
    image = torch.rand(1, 200, 300, generator=torch.Generator().manual_seed(3))
    image[:, 100:, 200:] = 0.7  # one flat 100x100 corner
    crops = smoothest_crops(image, 3, 64)
    assert len(crops) == 3 and all(c.shape == (1, 64, 64) for c in crops)
    assert roughness(crops[0]) == 0.0 and roughness(crops[1]) > 0.0  # only one flat 64 px crop fits without overlap
    assert len(smoothest_crops(torch.rand(1, 70, 70), 5, 64)) == 1  # as many as the image holds


def test_val_smooth_adds_crops_to_every_validation_setting(tmp_path):
    from PIL import Image

    for src in ("a", "b"):
        (tmp_path / src).mkdir()
        Image.fromarray(photo(200, 240, 1, seed=len(src) + ord(src))).save(tmp_path / src / "p.png")
    base = ["data.val_files=[]", "data.val_sources=[b]"]
    ingest(tmp_path, load(REPO / "configs/tiny-image.yaml", base).data, tmp_path / "manifest.csv")
    entries = read_manifest(tmp_path / "manifest.csv")
    plain = TrainingData(load(REPO / "configs/tiny-image.yaml", base), tmp_path, entries)
    more = TrainingData(load(REPO / "configs/tiny-image.yaml", [*base, "data.val_smooth=2"]), tmp_path, entries)
    assert plain.val.keys() == more.val.keys()
    for tag, pairs in plain.val.items():
        assert len(pairs) == 1 and len(more.val[tag]) == 3
        assert torch.equal(pairs[0][1], more.val[tag][0][1]) and torch.equal(pairs[0][0], more.val[tag][0][0])  # the centre crop is still there, first, with the same noise
        assert all(clean.shape[1:] == (SMOOTH_VAL_CROP, SMOOTH_VAL_CROP) for _, clean in more.val[tag][1:])
