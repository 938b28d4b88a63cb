"""Applications of exported autoencoder-family models, torch-free (onnxruntime + numpy + Pillow):

* :func:`embed` — dimensionality reduction: the encoder's code for every image in a folder,
  written as ``embeddings.npy`` (float32, one row per image) + ``index.csv`` (row, file).
* :func:`anomaly` — reconstruction-error scores per image, flagged above the threshold
  calibrated at training time (or one given): ``scores.csv`` + ``flagged.txt``.
* :func:`sample` — new images from a variational decoder, z ~ N(0, I): PNGs + ``grid.png``.

Images of any size or mode are converted to 8-bit gray and resized to the model's 28x28
(bilinear); Fashion-MNIST-style inputs (light object on dark ground) are what the models know.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from autoenc.runtime.jobs import FileResult, list_inputs
from autoenc.runtime.media import MediaError, atomic_write, read_image, save_array, to_pil
from autoenc.runtime.report import save_picture, tile_grid
from autoenc.runtime.session import ModelError, OnnxModel

log = logging.getLogger(__name__)
FAMILY_PROP = "autoenc.family"  # ONNX metadata key: {part, latent, side, variational, threshold}


class FamilyPart(OnnxModel):
    """One exported part (encoder, decoder or model) of a family autoencoder. ``model`` is the
    ``.onnx`` file, or a run folder holding ``encoder.onnx``/``decoder.onnx``/``model.onnx``."""

    def __init__(self, model: str | Path, part: str, *, threads: int = 2) -> None:
        path = Path(model) / f"{part}.onnx" if Path(model).is_dir() else Path(model)
        super().__init__(path, threads=threads, modality="family")
        props = self.session.get_modelmeta().custom_metadata_map
        self.family = json.loads(props.get(FAMILY_PROP, "{}"))
        if self.family.get("part") != part:
            raise ModelError(f"{path} is the {self.family.get('part', 'unknown')} part; this command needs the {part}")

    def run(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        return np.concatenate([self._run(x[i : i + batch]) for i in range(0, len(x), batch)])


def _load_28(path: Path, side: int) -> np.ndarray:
    """An image file as float32 (1, side, side) gray on the 0..1 scale."""
    data = read_image(path)
    img = to_pil(data, data.planes)
    if data.mode == "I;16":
        img = Image.fromarray((data.planes[..., 0] >> 8).astype(np.uint8))
    img = img.convert("L")
    if img.size != (side, side):
        img = img.resize((side, side), Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255)[None]


@dataclass
class FolderBatch:
    """Images of a folder that decoded, as one array, and what did not."""

    files: list[str]
    x: np.ndarray  # (N, 1, side, side)
    results: list[FileResult] = field(default_factory=list)


def load_folder(input_dir: str | Path, side: int) -> FolderBatch:
    """Every image under ``input_dir`` (recursive, symlink-safe), resized; bad files reported."""
    src = Path(input_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"input folder does not exist: {src}")
    rels, results = list_inputs(src.resolve(), {"image"})
    files, arrays = [], []
    for rel in rels:
        try:
            arrays.append(_load_28(src / rel, side))
            files.append(rel)
        except (MediaError, OSError) as exc:
            results.append(FileResult(rel, "failed", str(exc)))
    x = np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, 1, side, side), np.float32)
    return FolderBatch(files, x, results)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def embed(model: str | Path, input_dir: str | Path, out_dir: str | Path) -> dict:
    """Encode every image of ``input_dir``; write ``embeddings.npy`` and ``index.csv``."""
    enc = FamilyPart(model, "encoder")
    batch = load_folder(input_dir, enc.family["side"])
    codes = enc.run(batch.x) if len(batch.x) else np.zeros((0, enc.family["latent"]), np.float32)
    out = Path(out_dir)
    buf = io.BytesIO()
    np.save(buf, codes.astype(np.float32))
    atomic_write(out / "embeddings.npy", lambda f: f.write(buf.getvalue()))
    _write_text(out / "index.csv", "row,file\n" + "".join(f"{i},{_csv(f)}\n" for i, f in enumerate(batch.files)))
    return {"written": len(batch.files), "latent": int(codes.shape[1]), "failed": [r.__dict__ for r in batch.results], "out": str(out)}


def anomaly(model: str | Path, input_dir: str | Path, out_dir: str | Path, threshold: float | None = None) -> dict:
    """Score every image by reconstruction MSE; flag scores above the threshold."""
    rec = FamilyPart(model, "model")
    thr = threshold if threshold is not None else rec.family.get("threshold")
    if thr is None:
        raise ModelError("this model has no calibrated threshold (train it with data.normal_classes) and none was given")
    batch = load_folder(input_dir, rec.family["side"])
    scores = ((rec.run(batch.x) - batch.x) ** 2).mean(axis=(1, 2, 3)) if len(batch.x) else np.zeros(0)
    flagged = [f for f, s in zip(batch.files, scores) if s > thr]
    out = Path(out_dir)
    _write_text(out / "scores.csv", "file,score,flagged\n" + "".join(f"{_csv(f)},{s:.6g},{int(s > thr)}\n" for f, s in zip(batch.files, scores)))
    _write_text(out / "flagged.txt", "".join(f + "\n" for f in flagged))
    return {"scored": len(batch.files), "flagged": len(flagged), "threshold": float(thr), "failed": [r.__dict__ for r in batch.results], "out": str(out)}


def sample(model: str | Path, n: int, out_dir: str | Path, seed: int = 0) -> dict:
    """Decode ``n`` draws from the prior N(0, I) into PNGs and a grid picture."""
    dec = FamilyPart(model, "decoder")
    if not dec.family.get("variational"):
        raise ModelError("sampling needs a variational model (vae_dense, vae_conv); this decoder has no prior")
    z = np.random.default_rng(seed).standard_normal((n, dec.family["latent"])).astype(np.float32)
    images = dec.run(z)
    out = Path(out_dir)
    for i, im in enumerate(images):
        save_array(out / f"sample_{i:04d}.png", im[0])
    save_picture(out / "grid.png", tile_grid(images, int(np.ceil(np.sqrt(n)))))
    return {"written": n, "out": str(out), "grid": str(out / "grid.png")}


def _csv(name: str) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow([name])
    return buf.getvalue().strip("\r\n")
