"""Fashion-MNIST for the autoencoder family: the IDX reader, the train / val / test split
(recorded in metrics.json) and synthetic defects for the anomaly test.

Split: the first 55,000 training images train (only ``normal_classes`` for one-class/anomaly
runs), the last ``val_size`` choose the best epoch and calibrate the anomaly threshold, and the
10,000 test images give every reported number.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from autoenc.config import FamilyConfig
from autoenc.corpus import CorpusMissing

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file: uint8 images (N, 28, 28) or labels (N,)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, np.uint8, offset=8)
    raise ValueError(f"{path}: not an idx file (magic {magic})")


def load_fashion_mnist(root: Path) -> dict[str, np.ndarray]:
    """``{"train_x", "train_y", "test_x", "test_y"}`` from the four idx.gz files under ``root``."""
    root = Path(root)
    names = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz", "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
    missing = [n for n in names.values() if not (root / n).is_file()]
    if missing:
        raise CorpusMissing(f"Fashion-MNIST not found under {root} ({', '.join(missing)}): apt-get install -y dataset-fashion-mnist (or run `make data`)")
    return {k: _idx(root / v) for k, v in names.items()}


def splits(cfg: FamilyConfig) -> dict[str, np.ndarray]:
    """Float (N, 1, 28, 28) arrays in 0..1 and labels for train / val / test, per the config."""
    d = load_fashion_mnist(cfg.data.root)
    n_train = len(d["train_x"]) - cfg.data.val_size
    x = d["train_x"].astype(np.float32)[:, None] / 255
    out = {"train_x": x[:n_train], "train_y": d["train_y"][:n_train], "val_x": x[n_train:], "val_y": d["train_y"][n_train:]}
    out["test_x"], out["test_y"] = d["test_x"].astype(np.float32)[:, None] / 255, d["test_y"]
    if cfg.data.normal_classes is not None:
        for part in ("train", "val"):
            keep = np.isin(out[f"{part}_y"], cfg.data.normal_classes)
            out[f"{part}_x"], out[f"{part}_y"] = out[f"{part}_x"][keep], out[f"{part}_y"][keep]
    if cfg.data.train_limit:
        out["train_x"], out["train_y"] = out["train_x"][: cfg.data.train_limit], out["train_y"][: cfg.data.train_limit]
    if cfg.data.test_limit:
        out["test_x"], out["test_y"] = out["test_x"][: cfg.data.test_limit], out["test_y"][: cfg.data.test_limit]
    return out


def inject_defects(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Copies of ``x`` with one bright ``size``-pixel square each at a seeded random place."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for i in range(len(out)):
        r, c = rng.integers(2, 28 - size - 2, 2)
        out[i, 0, r : r + size, c : c + size] = 1.0
    return out
