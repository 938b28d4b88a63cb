"""Autoencoder-family flows: train -> evaluate -> export -> report on Fashion-MNIST, and the
applications (embed, anomaly, sample) on exported parts. One library call per task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.runtime import latent
from autoenc.config import FamilyConfig, load
from autoenc.family.evaluate import evaluate_family, pictures, write_family_report
from autoenc.family.export import export_family
from autoenc.family.fit import fit_family
from autoenc.runtime.report import write_json


@task(cache_policy=NO_CACHE)
def fit_step(cfg: FamilyConfig, run_dir: Path) -> Path:
    """Train; returns best.pt (lowest val objective)."""
    return fit_family(cfg, run_dir)


@task(cache_policy=NO_CACHE)
def evaluate_step(cfg: FamilyConfig, checkpoint: Path) -> dict:
    """Test-split MSE vs PCA, regulariser measurements, anomaly ROC-AUC."""
    return evaluate_family(cfg, checkpoint)


@task(cache_policy=NO_CACHE)
def export_step(checkpoint: Path, run_dir: Path, metrics: dict, cfg: FamilyConfig) -> dict:
    """encoder.onnx, decoder.onnx, model.onnx, parity-checked."""
    return {k: str(v) for k, v in export_family(checkpoint, run_dir, metrics, cfg).items()}


@task(cache_policy=NO_CACHE)
def report_step(cfg: FamilyConfig, checkpoint: Path, run_dir: Path, metrics: dict) -> Path:
    """Pictures and report.md + metrics.json."""
    return write_family_report(run_dir, cfg, metrics, pictures(cfg, checkpoint, run_dir))


@flow(name="train-family")
def train_family_flow(config: str, overrides: list[str] | None = None, run_dir: str | None = None) -> dict:
    """Train, measure and export one autoencoder-family member from a YAML config."""
    cfg = load(config, overrides or [])
    out = Path(run_dir or Path("runs") / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.model_dump(mode="json"))
    get_run_logger().info("run %s (%s) -> %s", cfg.name, cfg.model.name, out)
    best = fit_step(cfg, out)
    metrics = evaluate_step(cfg, best)
    parts = export_step(best, out, metrics, cfg)
    report = report_step(cfg, best, out, metrics)
    return {"run_dir": str(out), "checkpoint": str(best), "parts": parts, "report": str(report), "metrics": metrics}


@task(cache_policy=NO_CACHE)
def embed_step(model: str, input_dir: str, out_dir: str) -> dict:
    return latent.embed(model, input_dir, out_dir)


@flow(name="embed")
def embed_flow(model: str, input_dir: str, out_dir: str) -> dict:
    """Latent vectors for a folder of images (embeddings.npy + index.csv)."""
    return embed_step(model, input_dir, out_dir)


@task(cache_policy=NO_CACHE)
def anomaly_step(model: str, input_dir: str, out_dir: str, threshold: float | None) -> dict:
    return latent.anomaly(model, input_dir, out_dir, threshold)


@flow(name="anomaly")
def anomaly_flow(model: str, input_dir: str, out_dir: str, threshold: float | None = None) -> dict:
    """Reconstruction-error scores and flagged files for a folder of images."""
    return anomaly_step(model, input_dir, out_dir, threshold)


@task(cache_policy=NO_CACHE)
def sample_step(model: str, n: int, out_dir: str, seed: int) -> dict:
    return latent.sample(model, n, out_dir, seed)


@flow(name="sample")
def sample_flow(model: str, n: int, out_dir: str, seed: int = 0) -> dict:
    """New images from a variational decoder."""
    return sample_step(model, n, out_dir, seed)
