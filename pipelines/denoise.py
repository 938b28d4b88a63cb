"""Denoise-a-folder flow: plan -> denoise batches of files -> summary.

Files are passed as relative paths in batches (not one task per file, not arrays); each batch
task opens one onnxruntime session.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.infer import FileResult, JobPlan, JobReport, denoise_files, plan_job


@task(cache_policy=NO_CACHE)
def plan_step(model: str, input_dir: str, output_dir: str) -> JobPlan:
    """Refuse an impossible job before touching files; list inputs."""
    return plan_job(model, input_dir, output_dir)


@task(cache_policy=NO_CACHE)
def denoise_batch(model: str, input_dir: str, output_dir: str, files: list[str], threads: int, tile: int, max_pixels: int) -> list[FileResult]:
    """Denoise one batch of files; bad files come back as failed results, not exceptions."""
    return denoise_files(model, input_dir, output_dir, files, threads=threads, tile=tile, max_pixels=max_pixels)


@flow(name="denoise")
def denoise_flow(
    model: str,
    input_dir: str,
    output_dir: str,
    batch_size: int = 64,
    threads: int = 2,
    tile: int = 1024,
    max_pixels: int = 150_000_000,
) -> dict:
    """Denoise every supported file under ``input_dir`` into ``output_dir`` (same relative
    paths, names and formats). Returns the job report as a dict."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    plan = plan_step(model, input_dir, output_dir)
    logger.info("%d files to denoise, %d skipped", len(plan.files), len(plan.skipped))
    results = list(plan.skipped)
    for i in range(0, len(plan.files), batch_size):
        results += denoise_batch(model, str(plan.input_dir), str(plan.output_dir), plan.files[i : i + batch_size], threads, tile, max_pixels)
    report = JobReport(str(plan.input_dir), str(plan.output_dir), model, results, time.perf_counter() - t0)
    logger.info(report.summary())
    return report.to_dict()
