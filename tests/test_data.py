"""Ingest/manifest/split and reproducible noisy patch pairs."""

import numpy as np
import pytest
import torch
from PIL import Image

from autoenc.config import DataConfig, NoiseConfig
from autoenc.data import PatchPairs, ingest, load_split, read_manifest
from conftest import photo


def _folder(root, n):
    root.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(photo(64 + i, 80, channels=1 + 2 * (i % 2), seed=i)).save(root / f"img{i:02d}.png")


def test_manifest_records_hash_size_and_stable_split(tmp_path):
    _folder(tmp_path / "d", 12)
    (tmp_path / "d" / "broken.png").write_bytes(b"nope")
    cfg = DataConfig(val_fraction=0.3)
    first = ingest(tmp_path / "d", cfg, tmp_path / "m1.csv")
    assert [e.path for e in first] == [f"img{i:02d}.png" for i in range(12)]  # broken one left out
    assert read_manifest(tmp_path / "m1.csv") == first
    assert first[1].info == "80x65 RGB" and len(first[1].sha256) == 64
    _folder(tmp_path / "d", 20)  # adding files never moves an old file across the split
    second = {e.path: e.split for e in ingest(tmp_path / "d", cfg, tmp_path / "m2.csv")}
    assert all(second[e.path] == e.split for e in first)
    explicit = ingest(tmp_path / "d", DataConfig(val_files=["img03.png"]), tmp_path / "m3.csv")
    assert [e.path for e in explicit if e.split == "val"] == ["img03.png"]
    with pytest.raises(ValueError, match="not found"):
        ingest(tmp_path / "d", DataConfig(val_files=["nope.png"]), tmp_path / "m4.csv")


def test_patch_pairs_are_reproducible_and_augmented(tmp_path):
    _folder(tmp_path / "d", 4)
    entries = ingest(tmp_path / "d", DataConfig(val_files=["img00.png"]), tmp_path / "m.csv")
    imgs = load_split(tmp_path / "d", entries, "train", 1)
    data = DataConfig(patch_size=32, patches_per_epoch=50)
    noise = NoiseConfig(mixture=[{"name": "gaussian", "sigma": [5, 50]}])
    a, b = PatchPairs(imgs, data, noise, seed=3, epoch=1), PatchPairs(imgs, data, noise, seed=3, epoch=1)
    other = PatchPairs(imgs, data, noise, seed=3, epoch=2)
    for i in range(10):
        (na, ca), (nb, cb) = a[i], b[i]
        assert torch.equal(na, nb) and torch.equal(ca, cb)
        assert ca.shape == (1, 32, 32) and not torch.equal(na, ca)
    assert not torch.equal(a[0][1], other[0][1])
    # Every clean patch is an exact crop of a training image under some flip/rotation.
    clean = a[5][1][0].numpy()
    found = False
    for im in imgs:
        arr = im[0].numpy()
        for k in range(4):
            for view in (np.rot90(clean, -k), np.fliplr(np.rot90(clean, -k))):
                win = np.lib.stride_tricks.sliding_window_view(arr, view.shape)
                found |= bool((np.abs(win - view).max(axis=(2, 3)) < 1e-6).any())
    assert found
