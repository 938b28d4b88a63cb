"""Demo flow: train a small gray model on the default corpus, make a noisy folder from the
held-out photos, denoise it with the exported ONNX model, score it against the clean photos."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.config import load
from autoenc.data import read_manifest
from autoenc.heldout import format_table, make_noisy_folder, score_folders
from autoenc.report import write_json
from pipelines.denoise import denoise_flow
from pipelines.train import train_flow


@task(cache_policy=NO_CACHE)
def noisy_folder_step(config: str, run: dict, out: Path) -> tuple[Path, Path]:
    """Noisy copies of the val photos with the config's first eval noise (or training noise)."""
    cfg = load(config)
    val = [e.path for e in read_manifest(Path(run["run_dir"]) / "manifest.csv") if e.split == "val"]
    noise = cfg.noise.model_copy(update={"mixture": cfg.eval.noises[:1]}) if cfg.eval.noises else cfg.noise
    return make_noisy_folder(Path(run["data_root"]), val, cfg.data.channels, noise, cfg.seed + 1, out)


@task(cache_policy=NO_CACHE)
def score_step(clean: Path, noisy: Path, denoised: Path, out: Path) -> list[dict]:
    rows = score_folders(clean, noisy, denoised)
    write_json(out / "scores.json", rows)
    return rows


@flow(name="demo")
def demo_flow(config: str = "configs/demo-gray.yaml", out_dir: str = "demo") -> dict:
    """Train -> export -> noisy held-out folder -> denoise -> score; returns the score table."""
    logger = get_run_logger()
    out = Path(out_dir)
    run = train_flow(config, run_dir=str(out / "run"))
    clean, noisy = noisy_folder_step(config, run, out / "heldout")
    denoised = out / "heldout" / "denoised"
    job = denoise_flow([run["onnx"]], str(noisy), str(denoised))
    rows = score_step(clean, noisy, denoised, out)
    table = format_table(rows)
    logger.info("held-out scores:\n%s", table)
    return {"table": table, "rows": rows, "run": run, "job": job, "denoised_dir": str(denoised), "picture": str(Path(run["run_dir"]) / "before_after.png")}
