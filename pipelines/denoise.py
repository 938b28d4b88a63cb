"""Denoise-a-folder flow: plan -> batches of files on a task runner -> report and artifacts.

Files travel as relative paths in batches (not one task per file, not arrays); each batch task
opens one onnxruntime session per modality, claims its files in the job's ledger and records
each written file. The runner is Prefect's thread pool (default) or prefect-dask's
DaskTaskRunner on a local cluster or an existing scheduler. Every run publishes a progress
artifact while it runs, then a files table, a counts/throughput table and a markdown report with
before/after pictures.
"""

from __future__ import annotations

import importlib
import re
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from autoenc.runtime.job_summary import ProgressBar, counts_table, files_table, markdown_report
from autoenc.runtime.job_settings import DEFAULTS, JobSettings
from autoenc.runtime.jobs import NOT_REACHED, FileResult, JobPlan, JobReport, Tracking, denoise_files, plan_job


# Per-file progress for batches that run in this process (the thread runner), by token; a
# batch on a Dask worker finds nothing here and the flow counts it when it returns.
_WATCHERS: dict[str, Callable[[FileResult], None]] = {}
# Set by SIGTERM/SIGINT while a flow runs in this process: batches finish the file in hand and
# stop, batches not started are not submitted (their files are reported as not reached).
_STOP = threading.Event()


@contextmanager
def _stop_on_signals():
    """While the flow runs: SIGTERM / SIGINT set :data:`_STOP`, then reach the handler that was
    there before (Prefect's engine, which ends the run), so a stopped run is done in seconds
    instead of after its batches. Only from the main thread (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    previous = {}

    def _stop(signum, frame):
        _STOP.set()
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@task(cache_policy=NO_CACHE)
def plan_step(models: list[str], input_dir: str, output_dir: str, settings: JobSettings, files: list[str] | None, run_id: str) -> JobPlan:
    """Refuse an impossible job before touching files; list inputs; drop those already done."""
    return plan_job(models, input_dir, output_dir, incremental=settings.incremental, overwrite=settings.overwrite, state_dir=settings.state_dir, files=files, run_id=run_id, strength=settings.strength, ensemble=settings.ensemble)


@task(cache_policy=NO_CACHE)
def denoise_batch(models: dict[str, str], input_dir: str, output_dir: str, files: list[str], settings: JobSettings, tracking: Tracking | None, watch: str | None = None) -> list[FileResult]:
    """Denoise one batch of files; bad files come back as failed results, not exceptions."""
    stop = importlib.import_module(__name__)._STOP  # looked up, not captured: Dask pickles this function by value
    results = denoise_files(models, input_dir, output_dir, files, settings, tracking, on_file=_WATCHERS.get(watch) if watch else None, stop=stop)
    logger = get_run_logger()
    for r in results:
        if r.status == "failed":
            logger.warning("failed %s: %s", r.path, r.reason)
    return results


def _run_batches(plan: JobPlan, settings: JobSettings, batches: list[list[str]], window: int, on_done: Callable[[list[FileResult]], None], runner: TaskRunner | None = None, watch: str | None = None) -> list[FileResult]:
    """Submit batch tasks, at most ``window`` in flight, on ``runner`` (an entered task runner)
    or the flow's own thread pool; a batch whose task crashed reports its files as failed."""
    pending, inflight, results = list(batches), {}, []
    while pending or inflight:
        if _STOP.is_set() and pending:
            results += [FileResult(f, "skipped", NOT_REACHED) for b in pending for f in b]
            pending = []
            if not inflight:
                break
        while pending and len(inflight) < window:
            files = pending.pop(0)
            args = dict(models=plan.models, input_dir=str(plan.input_dir), output_dir=str(plan.output_dir), files=files, settings=settings, tracking=plan.tracking, watch=watch)
            fut = runner.submit(denoise_batch, args) if runner else denoise_batch.submit(**args)
            inflight[fut] = files
        fut = next(as_completed(list(inflight)))
        files = inflight.pop(fut)
        try:
            got = fut.result()
        except Exception as exc:  # the task itself died (worker lost, ledger unreadable...)
            got = [FileResult(f, "failed", f"batch task failed: {type(exc).__name__}: {str(exc)[:2000]}") for f in files]
        results += got
        on_done(got)
    return results


def _progress(progress_id, total: int, show_progress: bool, per_file: bool) -> tuple[Callable[[list[FileResult]], None], Callable[[FileResult], None] | None]:
    """(per-batch callback, per-file callback or None): they advance the progress artifact (at
    most about once a second) and the terminal bar, per file where batches run in this process."""
    bar = ProgressBar(total) if show_progress else None
    state = {"done": 0, "last": 0.0}

    def on_done(got: list[FileResult]) -> None:
        state["done"] += len(got)
        if bar and not per_file:
            bar.update(len(got))
        if bar and state["done"] >= total:
            bar.close()
        now = time.monotonic()
        if progress_id and (now - state["last"] > 1.0 or state["done"] >= total):
            update_progress_artifact(progress_id, progress=100.0 * state["done"] / max(total, 1))
            state["last"] = now

    return on_done, (bar.file_done if bar and per_file else None)


def _key(job: str | None, what: str) -> str | None:
    """Artifact key from the job name (lowercase letters, digits, dashes) or none."""
    return f"{re.sub(r'[^a-z0-9-]+', '-', job.lower()).strip('-')}-{what}" if job else None


_D = DEFAULTS  # every job default has one home: autoenc.runtime.job_settings


@flow(name="denoise", task_runner=ThreadPoolTaskRunner(max_workers=8))
def denoise_flow(
    models: list[str],
    input_dir: str,
    output_dir: str,
    batch_size: int = _D.batch_size,
    threads: int = _D.threads,
    tile: int = _D.tile,
    memory_mb: int = _D.memory_mb,
    strength: float = _D.strength,
    ensemble: bool = _D.ensemble,
    max_pixels: int = _D.max_pixels,
    chunk_seconds: float = _D.chunk_seconds,
    min_seconds: float = _D.min_seconds,
    max_seconds: float = _D.max_seconds,
    incremental: bool = _D.incremental,
    overwrite: bool = _D.overwrite,
    state_dir: str | None = _D.state_dir,
    runner: Literal["threads", "dask"] = _D.runner,
    workers: int = _D.workers,
    dask_address: str | None = _D.dask_address,
    report_samples: int = _D.report_samples,
    files: list[str] | None = None,
    job: str | None = None,
    show_progress: bool = False,
) -> dict:
    """Denoise every supported file under ``input_dir`` into ``output_dir`` (same relative
    paths, names and formats), each with the model of its modality; only new or changed
    inputs unless ``overwrite``. ``runner``: "threads" runs ``workers`` batches at a time in
    this process; "dask" runs them on a local Dask cluster of ``workers`` processes, or on the
    scheduler at ``dask_address``. ``files`` (relative to ``input_dir``) names the inputs
    instead of walking the folder. The settings are those of
    :class:`autoenc.runtime.job_settings.JobSettings` (validated here). Returns the job report
    as a dict; when files failed, the run ends in a Failed state carrying that report (visible
    in the UI and to automations), and files and report artifacts are published only when the
    run wrote or failed something, so an idle scheduled run does not bury the last report."""
    with _stop_on_signals():
        return _denoise(models, input_dir, output_dir, files, job, show_progress, JobSettings(
        threads=threads, tile=tile, memory_mb=memory_mb, strength=strength, ensemble=ensemble, max_pixels=max_pixels, chunk_seconds=chunk_seconds, min_seconds=min_seconds, max_seconds=max_seconds, batch_size=batch_size,
        incremental=incremental, overwrite=overwrite, state_dir=state_dir, runner=runner, workers=workers, dask_address=dask_address, report_samples=report_samples,
        ))


def _denoise(models: list[str], input_dir: str, output_dir: str, files: list[str] | None, job: str | None, show_progress: bool, settings: JobSettings) -> dict:
    """The body of :func:`denoise_flow`."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    s = settings
    plan = plan_step(models, input_dir, output_dir, s, files, str(flow_run.id))  # the ledger records this flow run's id
    total = len(plan.files)
    logger.info("%d files to denoise, %d unchanged or skipped", total, len(plan.skipped))
    batches = [plan.files[i : i + s.batch_size] for i in range(0, total, s.batch_size)]
    progress_id = create_progress_artifact(0.0, key=_key(job, "progress"), description=f"{total} files to denoise") if total else None
    if s.runner == "dask" and batches:
        from prefect_dask import DaskTaskRunner

        on_done, _ = _progress(progress_id, total, show_progress, per_file=False)
        dask = DaskTaskRunner(address=s.dask_address) if s.dask_address else DaskTaskRunner(cluster_kwargs={"n_workers": s.workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None})
        with dask:
            done = _run_batches(plan, settings, batches, len(batches), on_done, dask)
    else:
        on_done, on_file = _progress(progress_id, total, show_progress, per_file=True)
        token = uuid.uuid4().hex
        if on_file:
            _WATCHERS[token] = on_file
        try:
            done = _run_batches(plan, settings, batches, max(1, s.workers), on_done, watch=token if on_file else None)
        finally:
            _WATCHERS.pop(token, None)
    report = JobReport(str(plan.input_dir), str(plan.output_dir), plan.models, plan.skipped + done, time.perf_counter() - t0)
    counts = report.counts()
    create_table_artifact(counts_table(report), key=_key(job, "counts"), description="files written / unchanged / skipped / failed and throughput")
    if counts["written"] or counts["failed"]:
        create_table_artifact(files_table(report), key=_key(job, "files"), description="every file with its status and reason (failed first)")
        create_markdown_artifact(markdown_report(report, f"denoise {job or ''}".strip(), s.report_samples), key=_key(job, "report"), description="summary with before/after pictures")
    logger.info(report.summary().splitlines()[0])
    out = report.to_dict()
    if counts["failed"]:
        return Failed(message=f"{counts['failed']} of {len(report.results)} files failed (see the files table)", data=out)
    return out
