"""Manifests, splits and noisy-pair datasets for image training.

``ingest`` lists and validates a folder of clean images and writes ``manifest.csv`` (relative
path, size, content hash, split). The split is by a hash of the relative path, so it is
stable when files are added, unless ``val_files`` names the held-out files explicitly.
``PatchPairs`` draws random crops with dihedral augmentation (torchvision transforms v2) and
synthesises noise on the fly; sample ``i`` of epoch ``e`` is a pure function of
(seed, e, i), so any training pair can be reproduced.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from autoenc.config import DataConfig, NoiseConfig
from autoenc.media import MediaError, load_float, modality_of, read_image
from autoenc.noise import pair_generator, synthesize

log = logging.getLogger(__name__)
MANIFEST_FIELDS = ["path", "width", "height", "mode", "bytes", "sha256", "split"]


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the data root
    width: int
    height: int
    mode: str
    bytes: int
    sha256: str
    split: str  # "train" | "val"


def _split_of(rel: str, val_fraction: float, val_files: list[str]) -> str:
    if val_files:
        return "val" if rel in val_files else "train"
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little") / 2**64
    return "val" if h < val_fraction else "train"


def ingest(root: Path, cfg: DataConfig, manifest_path: Path) -> list[Entry]:
    """Validate every image under ``root`` and write the manifest; unreadable files are
    logged and left out. Raises ValueError if either split ends up empty."""
    root = Path(root)
    entries, bad = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and modality_of(p) == "image"):
        rel = path.relative_to(root).as_posix()
        try:
            data = read_image(path)
        except MediaError as exc:
            bad.append(f"{rel}: {exc}")
            continue
        raw = path.read_bytes()
        h, w, _ = data.planes.shape
        split = _split_of(rel, cfg.val_fraction, list(cfg.val_files))
        entries.append(Entry(rel, w, h, data.mode, len(raw), hashlib.sha256(raw).hexdigest(), split))
    for line in bad:
        log.warning("ingest: skipped %s", line)
    missing = set(cfg.val_files) - {e.path for e in entries}
    if missing:
        raise ValueError(f"data.val_files not found under {root}: {sorted(missing)}")
    splits = {e.split for e in entries}
    if splits != {"train", "val"}:
        raise ValueError(f"{root}: need images in both splits, got {len(entries)} images in {sorted(splits) or 'none'}")
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest_path, "w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS)
        writer.writeheader()
        for e in entries:
            writer.writerow(e.__dict__)
    n_val = sum(e.split == "val" for e in entries)
    log.info("ingest: %d images (%d train, %d val), %d skipped -> %s", len(entries), len(entries) - n_val, n_val, len(bad), manifest_path)
    return entries


def read_manifest(manifest_path: Path) -> list[Entry]:
    with open(manifest_path, newline="") as f:
        return [Entry(r["path"], int(r["width"]), int(r["height"]), r["mode"], int(r["bytes"]), r["sha256"], r["split"]) for r in csv.DictReader(f)]


def load_split(root: Path, entries: list[Entry], split: str, channels: int) -> list[torch.Tensor]:
    """Load the images of one split as (C, H, W) float tensors on the 0..1 scale."""
    return [torch.from_numpy(load_float(Path(root) / e.path, channels).transpose(2, 0, 1).copy()) for e in entries if e.split == split]


class PatchPairs(Dataset):
    """``(noisy, clean)`` patch pairs; item ``i`` depends only on (seed, epoch, i)."""

    def __init__(self, images: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, epoch: int = 0) -> None:
        p = data.patch_size
        self.images = [im for im in images if min(im.shape[1:]) >= p]
        if not self.images:
            raise ValueError(f"no training image is at least {p}x{p} pixels")
        area = torch.tensor([float(im.shape[1] * im.shape[2]) for im in self.images], dtype=torch.float64)
        self.weights = area / area.sum()  # bigger photos give proportionally more patches
        self.data, self.noise, self.seed, self.epoch = data, noise, seed, epoch

    def __len__(self) -> int:
        return self.data.patches_per_epoch

    def clean_patch(self, g: torch.Generator) -> torch.Tensor:
        p = self.data.patch_size
        im = self.images[int(torch.multinomial(self.weights, 1, generator=g).item())]
        top = int(torch.randint(0, im.shape[1] - p + 1, (), generator=g))
        left = int(torch.randint(0, im.shape[2] - p + 1, (), generator=g))
        x = TF.crop(im, top, left, p, p)
        k, flip = int(torch.randint(0, 4, (), generator=g)), bool(torch.rand((), generator=g) < 0.5)
        if flip:
            x = TF.horizontal_flip(x)
        if k:
            x = TF.rotate(x, 90.0 * k, interpolation=InterpolationMode.NEAREST, expand=True)
        return x.contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = pair_generator(self.seed, "train", self.epoch, i)
        clean = self.clean_patch(g)
        noisy, _ = synthesize(clean, self.noise, g)
        return noisy, clean


def centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    return TF.center_crop(x, [min(size, h), min(size, w)])


def val_pairs(images: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, tag: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed noisy/clean validation pairs (centre crops); ``tag`` names the noise setting."""
    imgs = images[: data.max_val_images] if data.max_val_images else images
    out = []
    for j, im in enumerate(imgs):
        clean = centre_crop(im, data.val_crop)
        noisy, _ = synthesize(clean, noise, pair_generator(seed, "val", tag, j))
        out.append((noisy, clean))
    return out
