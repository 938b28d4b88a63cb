"""Training, measuring and exporting the autoencoder family on Fashion-MNIST.

Split (recorded in metrics.json): the first 55,000 training images train (only
``normal_classes`` for one-class/anomaly runs), the last ``val_size`` choose the best epoch and
calibrate the anomaly threshold, and the 10,000 test images give every reported number.
Baselines are fitted on exactly the same training images: PCA with ``pca_components``
components for reconstruction MSE.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw

from autoenc import FORMAT_VERSION, __version__
from autoenc.config import FamilyConfig
from autoenc.corpus import CorpusMissing
from autoenc.export import ExportError, export_module
from autoenc.runtime.media import atomic_write
from autoenc.runtime.metadata import ModelInfo
from autoenc.models import build_model
from autoenc.runtime.latent import FAMILY_PROP
from autoenc.runtime.report import save_picture, tile_grid, write_json
from autoenc.train import full_history, load_checkpoint, lr_at, save_checkpoint

log = logging.getLogger(__name__)
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


def _mean_objective(model, x: np.ndarray, seed: int, batch: int = 1000) -> float:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vals = [model.objective(torch.from_numpy(x[i : i + batch]), g)[0].item() * len(x[i : i + batch]) for i in range(0, len(x), batch)]
    return float(sum(vals) / len(x))


def fit_family(cfg: FamilyConfig, run_dir: Path) -> Path:
    """Train the configured family member; keeps ``best.pt`` by val objective. Returns it."""
    run_dir = Path(run_dir)
    data = splits(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    n, bs = len(data["train_x"]), cfg.train.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total, step, best, history = steps_per_epoch * cfg.train.epochs, 0, math.inf, []
    log.info("training %s (%d params) on %d images for %d epochs", cfg.model.name, sum(p.numel() for p in model.parameters()), n, cfg.train.epochs)
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n, generator=g).numpy()
        losses = []
        for i in range(0, n, bs):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg.train)
            loss, _ = model.objective(torch.from_numpy(data["train_x"][order[i : i + bs]]), g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        model.eval()
        val = _mean_objective(model, data["val_x"], cfg.seed)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val, "seconds": time.perf_counter() - t0})
        log.info("epoch %d: train %.5f val %.5f (%.0fs)", epoch, history[-1]["train_loss"], val, history[-1]["seconds"])
        ckpt = {"model": cfg.model.name, "kwargs": {"channels": 1, **cfg.model.kwargs}, "state": model.state_dict(), "epoch": epoch, "step": step,
                "history": history, "config": cfg.model_dump(mode="json"), "config_hash": cfg.hash(), "autoenc_version": __version__}
        if val < best:
            best = val
            save_checkpoint(run_dir / "best.pt", ckpt)
        save_checkpoint(run_dir / "last.pt", ckpt)
    return run_dir / "best.pt"


def roc_auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve for 'higher score = anomalous' (Mann-Whitney U, ties halved)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([normal, anomalous]))  # ties get their average rank
    u = ranks[len(normal) :].sum() - len(anomalous) * (len(anomalous) + 1) / 2
    return float(u / (len(normal) * len(anomalous)))


def pca_mse(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """Per-pixel MSE of reconstructing ``test`` from the top ``k`` principal components of ``train``."""
    a, b = train.reshape(len(train), -1).astype(np.float64), test.reshape(len(test), -1).astype(np.float64)
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    basis = vt[:k]
    rec = (b - mean) @ basis.T @ basis + mean
    return float(((rec - b) ** 2).mean())


def inject_defects(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Copies of ``x`` with one bright ``size``-pixel square each at a seeded random place."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for i in range(len(out)):
        r, c = rng.integers(2, 28 - size - 2, 2)
        out[i, 0, r : r + size, c : c + size] = 1.0
    return out


def recon_errors(model, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Per-image reconstruction MSE (the anomaly score)."""
    with torch.no_grad():
        return np.concatenate([((model(torch.from_numpy(x[i : i + batch])) - torch.from_numpy(x[i : i + batch])) ** 2).mean((1, 2, 3)).numpy() for i in range(0, len(x), batch)])


def evaluate_family(cfg: FamilyConfig, checkpoint: Path) -> dict[str, Any]:
    """Test-split numbers: MSE vs PCA, and per member its regulariser's measurement; anomaly
    ROC-AUC and a calibrated threshold when ``normal_classes`` is set."""
    model, ckpt = load_checkpoint(checkpoint)
    d = splits(cfg)
    test_x, test_y = d["test_x"], d["test_y"]
    normal = np.isin(test_y, cfg.data.normal_classes) if cfg.data.normal_classes is not None else np.ones(len(test_y), bool)
    errs = recon_errors(model, test_x)
    k = cfg.eval.pca_components
    mse, base = float(errs[normal].mean()), pca_mse(d["train_x"], test_x[normal], k)
    out: dict[str, Any] = {
        "split": {"train": len(d["train_x"]), "val": len(d["val_x"]), "test": int(len(test_x)), "normal_classes": cfg.data.normal_classes,
                  "note": "train = first 55k of the official training set (minus val), val = its last val_size, test = the official 10k test set"},
        "model": cfg.model.name, "params": sum(p.numel() for p in model.parameters()), "latent": model.latent,
        "epochs_trained": len(ckpt["history"]), "best_epoch": ckpt["epoch"],
        "test_mse": mse, f"pca{k}_test_mse": base, "mse_reduction_vs_pca": 1 - mse / base,
    }
    with torch.no_grad():
        tx = torch.from_numpy(test_x[normal][:2000])
        code = model.encode(tx)
        if cfg.model.name == "ae_sparse":
            out["sparsity"] = {"target_rho": model.rho, "mean_activation": float(code.mean()), "units_mostly_off": float((code.mean(0) < 2 * model.rho).float().mean())}
        if model.variational:
            _, parts = model.objective(tx, torch.Generator().manual_seed(1))
            out["elbo"] = {"recon_bce_per_image": parts["recon_bce"], "kl_per_image": parts["kl"], "neg_elbo": parts["recon_bce"] + model.beta * parts["kl"]}
        # Identity probe: a model that copies its input reproduces added noise exactly.
        noisy = (tx + 0.2 * torch.randn(tx.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
        out["identity_probe"] = {"noisy_input_mse": float(((noisy - tx) ** 2).mean()), "output_mse_vs_clean": float(((model(noisy) - tx) ** 2).mean())}
        out["code_abs_mean"] = float(code.abs().mean())
    if cfg.data.normal_classes is not None:
        val_err = recon_errors(model, d["val_x"])
        thr = float(np.quantile(val_err, 1 - cfg.eval.false_positive_rate))
        defects = inject_defects(test_x[normal], cfg.eval.defect_size, cfg.seed)
        derr = recon_errors(model, defects)
        out["anomaly"] = {
            "roc_auc_other_classes": roc_auc(errs[normal], errs[~normal]),
            "roc_auc_injected_defects": roc_auc(errs[normal], derr),
            "threshold": thr, "target_fpr": cfg.eval.false_positive_rate,
            "test_fpr": float((errs[normal] > thr).mean()), "test_tpr_other_classes": float((errs[~normal] > thr).mean()),
            "test_tpr_defects": float((derr > thr).mean()),
        }
    return out


# --- pictures -------------------------------------------------------------------------------

def pictures(cfg: FamilyConfig, checkpoint: Path, run_dir: Path) -> list[str]:
    """reconstructions.png (originals over reconstructions), latent.png (2-D PCA of test codes
    by class), curves.png (train/val loss), samples.png for variational models."""
    model, ckpt = load_checkpoint(checkpoint)
    d = splits(cfg)
    x, y = d["test_x"][:2000], d["test_y"][:2000]
    names = []
    with torch.no_grad():
        first = np.stack([x[np.flatnonzero(y == c)[0]] for c in range(10) if (y == c).any()])
        rec = model(torch.from_numpy(first)).numpy()
        save_picture(run_dir / "reconstructions.png", tile_grid(np.concatenate([first, rec]), len(first), scale=2))
        names.append("reconstructions.png")
        code = model.encode(torch.from_numpy(x)).numpy().astype(np.float64)
    centred = code - code.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = centred @ vt[:2].T
    p = (p - p.min(0)) / np.maximum(p.max(0) - p.min(0), 1e-9)
    img = Image.new("RGB", (420, 330), "white")
    draw = ImageDraw.Draw(img)
    for (u, v), label in zip(p, y):
        draw.ellipse([10 + u * 300 - 1.5, 10 + v * 300 - 1.5, 10 + u * 300 + 1.5, 10 + v * 300 + 1.5], fill=PALETTE[int(label)])
    for c, name in enumerate(CLASSES):
        draw.rectangle([320, 12 + 16 * c, 330, 22 + 16 * c], fill=PALETTE[c])
        draw.text((334, 11 + 16 * c), name, fill="black")
    save_picture(run_dir / "latent.png", img)
    names.append("latent.png")
    save_picture(run_dir / "curves.png", _curves(full_history(checkpoint)))
    names.append("curves.png")
    if model.variational:
        with torch.no_grad():
            samples = model.sample(64, torch.Generator().manual_seed(cfg.seed)).numpy()
        save_picture(run_dir / "samples.png", tile_grid(samples, 8, scale=2))
        names.append("samples.png")
    return names


def _curves(history: list[dict]) -> Image.Image:
    """Train (blue) and val (orange) loss per epoch, log scale."""
    img = Image.new("RGB", (360, 220), "white")
    draw = ImageDraw.Draw(img)
    series = [[h["train_loss"] for h in history], [h["val_loss"] for h in history]]
    vals = np.log10(np.maximum(np.concatenate(series), 1e-12))
    lo, hi = vals.min(), vals.max() + 1e-9
    for s, colour in zip(series, [PALETTE[0], PALETTE[1]]):
        pts = [(30 + 320 * i / max(1, len(s) - 1), 190 - 170 * (np.log10(max(v, 1e-12)) - lo) / (hi - lo)) for i, v in enumerate(s)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for q in pts:
            draw.ellipse([q[0] - 2, q[1] - 2, q[0] + 2, q[1] + 2], fill=colour)
    draw.text((30, 200), f"epochs 0..{len(history) - 1}; loss 10^{lo:.2f}..10^{hi:.2f}; blue train, orange val", fill="black")
    return img


# --- export ---------------------------------------------------------------------------------

class _Part(torch.nn.Module):
    def __init__(self, model, part: str) -> None:
        super().__init__()
        self.model, self.part = model, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return {"encoder": self.model.encode, "decoder": self.model.decode, "model": self.model.forward}[self.part](x)


def export_family(checkpoint: Path, out_dir: Path, metrics: dict[str, Any], cfg: FamilyConfig) -> dict[str, Path]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``model.onnx`` (dynamic batch), each
    parity-checked against torch; metadata says which part and carries the threshold."""
    model, ckpt = load_checkpoint(checkpoint)
    threshold = metrics.get("anomaly", {}).get("threshold")
    out = {}
    for part in ("encoder", "decoder", "model"):
        x = torch.randn(4, model.latent) if part == "decoder" else torch.rand(4, 1, 28, 28)
        dims = {0: torch.export.Dim("batch")}
        wrapper = _Part(model, part).eval()
        blob = export_module(wrapper, x, dims, 18)
        proto = onnx.load_from_string(blob)
        info = ModelInfo(modality="family", channels=1, sample_rate=0, model=ckpt["model"], size_multiple=1, receptive_radius=0, noise={},
                         config_hash=ckpt["config_hash"], metrics={k: v for k, v in metrics.items() if k != "split"}, version=__version__, format_version=FORMAT_VERSION)
        props = info.to_props() | {FAMILY_PROP: json.dumps({"part": part, "latent": model.latent, "side": 28, "variational": model.variational, "threshold": threshold})}
        onnx.helper.set_model_props(proto, props)
        blob = proto.SerializeToString()
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        probe = torch.randn(3, model.latent) if part == "decoder" else torch.rand(3, 1, 28, 28)
        with torch.no_grad():
            ref = wrapper(probe).numpy()
        diff = float(np.abs(sess.run(None, {"input": probe.numpy()})[0] - ref).max())
        if diff > 1e-4:
            raise ExportError(f"{part}: ONNX/torch mismatch {diff:.2e}")
        path = Path(out_dir) / f"{part}.onnx"
        atomic_write(path, lambda f, b=blob: f.write(b))
        out[part] = path
    log.info("exported encoder/decoder/model to %s", out_dir)
    return out


def write_family_report(run_dir: Path, cfg: FamilyConfig, metrics: dict[str, Any], pictures_: list[str]) -> Path:
    """report.md with the numbers and the pictures."""
    k = cfg.eval.pca_components
    lines = [f"# {cfg.name}: {cfg.model.name} (latent {metrics['latent']}, {metrics['params']} params)", "",
             f"Split: {metrics['split']['note']}; {metrics['split']['train']} train / {metrics['split']['val']} val / {metrics['split']['test']} test images"
             + (f"; normal classes {[CLASSES[c] for c in cfg.data.normal_classes]}" if cfg.data.normal_classes is not None else "") + ".", "",
             "| measure | value |", "|---|---|",
             f"| test MSE per pixel | {metrics['test_mse']:.5f} |", f"| PCA-{k} test MSE (same training images) | {metrics[f'pca{k}_test_mse']:.5f} |",
             f"| MSE reduction vs PCA-{k} | {100 * metrics['mse_reduction_vs_pca']:.1f}% |",
             f"| identity probe: noisy input MSE -> output MSE vs clean | {metrics['identity_probe']['noisy_input_mse']:.5f} -> {metrics['identity_probe']['output_mse_vs_clean']:.5f} |"]
    if "sparsity" in metrics:
        s = metrics["sparsity"]
        lines.append(f"| sparsity: target rho / measured mean activation | {s['target_rho']} / {s['mean_activation']:.4f} |")
    if "elbo" in metrics:
        e = metrics["elbo"]
        lines.append(f"| -ELBO per image = BCE {e['recon_bce_per_image']:.1f} + KL {e['kl_per_image']:.2f} | {e['neg_elbo']:.1f} |")
    if "anomaly" in metrics:
        a = metrics["anomaly"]
        lines += [f"| anomaly ROC-AUC, other classes | {a['roc_auc_other_classes']:.4f} |", f"| anomaly ROC-AUC, injected {cfg.eval.defect_size}px defects | {a['roc_auc_injected_defects']:.4f} |",
                  f"| threshold at target FPR {a['target_fpr']} (val normals): test FPR / TPR | {a['test_fpr']:.3f} / {a['test_tpr_other_classes']:.3f} |"]
    lines += [""] + [f"![{p}]({p})" for p in pictures_]
    path = Path(run_dir) / "report.md"
    atomic_write(path, lambda f: f.write("\n".join(lines).encode() + b"\n"))
    write_json(Path(run_dir) / "metrics.json", metrics)
    return path
