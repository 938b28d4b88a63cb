"""Denoise-a-folder flow: plan -> denoise batches of files -> summary.

Files are passed as relative paths in batches (not one task per file, not arrays); each batch
task opens one onnxruntime session per modality.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.jobs import FileResult, JobPlan, JobReport, JobSettings, denoise_files, plan_job


@task(cache_policy=NO_CACHE)
def plan_step(models: list[str], input_dir: str, output_dir: str) -> JobPlan:
    """Refuse an impossible job before touching files; list inputs."""
    return plan_job(models, input_dir, output_dir)


@task(cache_policy=NO_CACHE)
def denoise_batch(models: dict[str, str], input_dir: str, output_dir: str, files: list[str], settings: JobSettings) -> list[FileResult]:
    """Denoise one batch of files; bad files come back as failed results, not exceptions."""
    return denoise_files(models, input_dir, output_dir, files, settings)


@flow(name="denoise")
def denoise_flow(
    models: list[str],
    input_dir: str,
    output_dir: str,
    batch_size: int = 64,
    threads: int = 2,
    tile: int = 1024,
    max_pixels: int = 150_000_000,
    chunk_seconds: float = 4.0,
) -> dict:
    """Denoise every supported file under ``input_dir`` into ``output_dir`` (same relative
    paths, names and formats), each with the model of its modality. Returns the job report."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings = JobSettings(threads=threads, tile=tile, max_pixels=max_pixels, chunk_seconds=chunk_seconds)
    plan = plan_step(models, input_dir, output_dir)
    logger.info("%d files to denoise, %d skipped", len(plan.files), len(plan.skipped))
    results = list(plan.skipped)
    for i in range(0, len(plan.files), batch_size):
        results += denoise_batch(plan.models, str(plan.input_dir), str(plan.output_dir), plan.files[i : i + batch_size], settings)
    report = JobReport(str(plan.input_dir), str(plan.output_dir), plan.models, results, time.perf_counter() - t0)
    logger.info(report.summary())
    return report.to_dict()
