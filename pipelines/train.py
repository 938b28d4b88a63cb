"""Training flow: ingest -> train -> evaluate -> export -> report, one library call per task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.config import RunConfig, load
from autoenc.corpus import resolve_data_root
from autoenc.data import ingest
from autoenc.export import to_onnx
from autoenc.runtime.report import write_json, write_train_report
from autoenc.checkpoint import full_history
from autoenc.evaluate import before_after, evaluate_checkpoint
from autoenc.train import fit


@task(cache_policy=NO_CACHE)
def ingest_step(cfg: RunConfig, run_dir: Path) -> tuple[Path, Path]:
    """List and validate the clean images or recordings; write manifest.csv. Returns (data root, manifest)."""
    root = resolve_data_root(cfg.data.root, cfg.data.corpus_dir, cfg.modality, cfg.data.corpus)
    manifest = run_dir / "manifest.csv"
    ingest(root, cfg.data, manifest, cfg.modality)
    return root, manifest


@task(cache_policy=NO_CACHE)
def train_step(cfg: RunConfig, root: Path, manifest: Path, run_dir: Path, resume: bool) -> Path:
    """Train on noisy pairs synthesised on the fly; returns best.pt."""
    return fit(cfg, root, manifest, run_dir, resume=resume)


@task(cache_policy=NO_CACHE)
def evaluate_step(cfg: RunConfig, checkpoint: Path, root: Path, manifest: Path, run_dir: Path) -> dict:
    """PSNR/SSIM on the val split, noisy vs denoised; writes metrics.json."""
    metrics = evaluate_checkpoint(cfg, checkpoint, root, manifest)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


@task(cache_policy=NO_CACHE)
def export_step(checkpoint: Path, out: Path, metrics: dict) -> Path:
    """ONNX export, parity-checked against torch."""
    to_onnx(checkpoint, out, metrics["val"])
    return out


@task(cache_policy=NO_CACHE)
def report_step(cfg: RunConfig, onnx_path: Path, checkpoint: Path, root: Path, manifest: Path, metrics: dict, run_dir: Path) -> Path:
    """before_after.png (images) or spectrograms.png (audio), and report.md."""
    picture = before_after(cfg, onnx_path, root, manifest, run_dir)
    return write_train_report(run_dir, cfg.name, metrics, full_history(checkpoint), picture.name, cfg.hash())


@flow(name="train")
def train_flow(config: str, overrides: list[str] | None = None, run_dir: str | None = None, resume: bool = False) -> dict:
    """Train, evaluate and export a denoiser from a YAML config; returns the run's artifacts."""
    logger = get_run_logger()
    cfg = load(config, overrides or [])
    out = Path(run_dir or Path("runs") / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.model_dump(mode="json"))
    logger.info("run %s (config %s) -> %s", cfg.name, cfg.hash(), out)
    root, manifest = ingest_step(cfg, out)
    best = train_step(cfg, root, manifest, out, resume)
    metrics = evaluate_step(cfg, best, root, manifest, out)
    onnx_path = export_step(best, out / "model.onnx", metrics)
    report = report_step(cfg, onnx_path, best, root, manifest, metrics, out)
    return {"run_dir": str(out), "checkpoint": str(best), "onnx": str(onnx_path), "report": str(report), "metrics": metrics, "data_root": str(root)}
