"""Ingest/manifest/split and reproducible noisy patch pairs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoenc.config import DataConfig, NoiseConfig
from autoenc.data import PatchPairs, ingest, load_split, read_manifest
from conftest import photo


def _folder(root, n):
    root.mkdir(parents=True, exist_ok=True)
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


def test_val_sources_hold_out_whole_sources(tmp_path):
    for src in ("alice", "bob", "carol"):
        _folder(tmp_path / "d" / src, 3)
    entries = ingest(tmp_path / "d", DataConfig(val_sources=["bob"]), tmp_path / "m.csv")
    assert {e.path.split("/")[0] for e in entries if e.split == "val"} == {"bob"}
    assert sum(e.split == "val" for e in entries) == 3 and len(entries) == 9
    with pytest.raises(ValueError, match="val_sources"):
        ingest(tmp_path / "d", DataConfig(val_sources=["dave"]), tmp_path / "m2.csv")
    with pytest.raises(ValueError, match="not both"):
        DataConfig(val_sources=["bob"], val_files=["bob/img00.png"])


def test_photo_corpus_is_laid_out_by_source_with_licences(tmp_path, monkeypatch):
    import csv

    from autoenc.corpus import CorpusMissing, build_benchmark_photos, build_photo_corpus

    monkeypatch.setenv("AUTOENC_CACHE", str(tmp_path / "cache"))
    aqua = tmp_path / "cache/debian/mate-backgrounds/usr/share/backgrounds/mate/nature/Aqua.jpg"
    aqua.parent.mkdir(parents=True)
    Image.fromarray(photo(1700, 2600, 3)).save(aqua, quality=95)
    bridge = tmp_path / "cache/debian/lomiri-wallpapers-16.04/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg"
    bridge.parent.mkdir(parents=True)
    Image.fromarray(photo(600, 900, 3)).save(bridge, quality=95)
    out = tmp_path / "corpus"
    out.mkdir()
    Image.fromarray(photo(30, 40, 1)).save(out / "camera.png")  # left by the old flat layout
    build_photo_corpus(out)
    assert not (out / "camera.png").exists() and Image.open(out / "scikit-image/camera.png").size == (40, 30)
    assert Image.open(out / "mate-backgrounds/Aqua.png").size == (1300, 850)  # halved: long side stays >= 1280
    rows = {r["file"]: r for r in csv.DictReader(open(out / "SOURCES.csv"))}
    assert rows["mate-backgrounds/Aqua.png"]["licence"] == "GPL-2+" and "Charles Barbin" in rows["mate-backgrounds/Aqua.png"]["origin"]
    assert rows["scikit-learn/china.png"]["package"] == "scikit-learn"
    bridge_row = rows["lomiri-wallpapers-16.04/Bridge_by_Sander_Klootwijk.png"]  # a package whose licence is per file
    assert bridge_row["licence"] == "Sander Klootwijk (CC-BY-SA-4.0)" and Image.open(out / bridge_row["file"]).size == (900, 600)
    assert not any(f.startswith("palapeli-data") for f in rows)  # benchmark photos never join the corpus
    if not Path("/usr/share/palapeli/collection").is_dir():
        with pytest.raises(CorpusMissing, match="palapeli-data"):
            build_benchmark_photos(tmp_path / "bench")


def test_wide_photo_corpus_reads_each_files_licence_from_the_copyright_file(tmp_path, monkeypatch):
    """photos-wide: the default photos plus the Endless Sky photographs, each with the licence
    the package's DEP-5 copyright file gives it (the last matching paragraph), halved, the
    excluded names left out; refused clearly when the package is not extracted."""
    import csv

    import autoenc.corpus as corpus
    from autoenc.corpus import WIDE_PHOTOS, CorpusMissing, build_photo_corpus, resolve_data_root

    monkeypatch.setenv("AUTOENC_CACHE", str(tmp_path / "cache"))
    package = "endless-sky-high-dpi"
    root = tmp_path / "cache/debian" / package
    monkeypatch.setattr(corpus, "debian_roots", lambda p: (root,) if p == package else (tmp_path / "nowhere",))
    with pytest.raises(CorpusMissing, match="make wide-data"):
        build_photo_corpus(tmp_path / "none", wide=True)
    folder, named, copyright_file, _, _ = WIDE_PHOTOS[package]
    land = root / folder
    land.mkdir(parents=True)
    for name, size in [("city4@2x.jpg", (200, 100)), ("bwerner0@2x.jpg", (120, 60)), ("city17-sfiera@2x.jpg", (80, 40)), ("earthrise@2x.jpg", (80, 40)), ("notes.txt", None)]:
        if size is None:
            (land / name).write_text("not a photo")
        else:
            Image.fromarray(photo(size[1], size[0], 3)).save(land / name, quality=95)
    (root / copyright_file).parent.mkdir(parents=True)
    (root / copyright_file).write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: The Authors\nLicense: GPL-3+\n\n"
        f"Files: {named}/*\nCopyright: Various\nLicense: public-domain\n Taken from morgue-file.com.\n\n"
        f"Files: {named}/bwerner*\nCopyright: Berthold Werner\nLicense: CC-BY-SA-3.0\n\n"
        f"Files:\n {named}/*-sfiera*\n {named}/other*\nCopyright: Chris Pickel\n 2016\nLicense: CC-BY-SA-4.0\n"
    )
    out = build_photo_corpus(tmp_path / "wide", wide=True)
    rows = {r["file"]: r for r in csv.DictReader(open(out / "SOURCES.csv"))}
    assert rows[f"{package}/city4.png"]["licence"] == "public-domain"
    assert rows[f"{package}/bwerner0.png"]["licence"] == "CC-BY-SA-3.0" and "Berthold Werner" in rows[f"{package}/bwerner0.png"]["origin"]
    assert rows[f"{package}/city17-sfiera.png"]["licence"] == "CC-BY-SA-4.0" and "Chris Pickel; 2016" in rows[f"{package}/city17-sfiera.png"]["origin"]
    assert f"{package}/earthrise.png" not in rows and not (out / package / "earthrise.png").exists()  # excluded by name
    assert Image.open(out / package / "city4.png").size == (100, 50)  # halved once
    assert "scikit-image/camera.png" in rows  # the default corpus's photos are there too
    assert not any(f.startswith(package) for f in {r["file"] for r in csv.DictReader(open(build_photo_corpus(tmp_path / "plain") / "SOURCES.csv"))})
    with pytest.raises(ValueError, match="an audio corpus"):
        resolve_data_root(None, tmp_path / "x", "image", "voices")
    with pytest.raises(ValueError, match="an image corpus"):
        resolve_data_root(None, tmp_path / "x", "audio", "photos-wide")


def test_loader_workers_draw_the_same_batches(tmp_path):
    """train.loader_workers only moves where the patches are drawn: with two worker processes
    the batches (camera noise with JPEG, Gaussian, smooth crops) equal those drawn in-process."""
    from torch.utils.data import DataLoader

    from test_camera import write_profiles

    _folder(tmp_path / "d", 4)
    entries = ingest(tmp_path / "d", DataConfig(channels=3, val_files=["img00.png"]), tmp_path / "m.csv")
    imgs = load_split(tmp_path / "d", entries, "train", 3)
    data = DataConfig(channels=3, patch_size=32, patches_per_epoch=24, smooth=0.5)
    noise = NoiseConfig(mixture=[{"name": "camera", "iso": [800, 12800], "gain": [1, 4], "profiles": str(write_profiles(tmp_path / "p.json")), "jpeg_quality": [70, 95]},
                                 {"name": "gaussian", "sigma": [5, 50]}])
    pairs = PatchPairs(imgs, data, noise, seed=3, epoch=1)
    here, there = (list(DataLoader(pairs, batch_size=8, num_workers=n)) for n in (0, 2))
    assert len(here) == len(there) == 3
    assert all(torch.equal(a, b) for x, y in zip(here, there) for a, b in zip(x, y))
