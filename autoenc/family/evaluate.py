"""Measuring a trained family member on the test split (MSE vs a PCA baseline fitted on the
same training images, each regulariser's own measurement, anomaly ROC-AUC), its pictures and
its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from autoenc.config import FamilyConfig
from autoenc.family.data import CLASSES, PALETTE, inject_defects, splits
from autoenc.runtime.media import atomic_write
from autoenc.runtime.report import save_picture, tile_grid, write_json
from autoenc.checkpoint import full_history, load_checkpoint

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
        out |= model.diagnostics(code)  # each member reports its own regulariser (sparsity, ...)
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
