"""Serve a schedule config's jobs as deployments of the denoise flow (``denoise/<job>``) from
this process: Prefect's runner polls the server and runs each scheduled or ad-hoc flow run in a
subprocess. Import this only after PREFECT_API_URL points at a real server.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

from autoenc.runtime.schedule import JobSpec, ScheduleConfig
from pipelines.denoise import denoise_flow


def deployment(job: JobSpec) -> RunnerDeployment:
    """One job as a deployment: its schedule, parameters and an overlap policy (concurrency
    limit 1; a run that arrives while one is running is cancelled or queued). Concurrency slots
    are leased, so a crashed run frees its slot when the lease runs out."""
    when = Cron(job.cron, timezone=job.timezone, active=not job.paused) if job.cron else Interval(timedelta(seconds=job.interval_seconds), timezone=job.timezone, active=not job.paused)
    strategy = ConcurrencyLimitStrategy.CANCEL_NEW if job.overlap == "cancel_new" else ConcurrencyLimitStrategy.ENQUEUE
    return denoise_flow.to_deployment(
        name=job.name,
        schedules=[when],
        parameters=job.flow_parameters(),
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
        description=f"denoise {job.input_dir} -> {job.output_dir} with {', '.join(job.models)}",
        tags=["autoenc"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_schedule(cfg: ScheduleConfig, limit: int | None = None) -> None:
    """Register every job and run their flow runs until interrupted (Ctrl-C / SIGTERM);
    schedules are paused on shutdown so runs do not pile up while nothing serves them."""
    serve(*[deployment(j) for j in cfg.jobs], limit=limit, print_starting_message=False)
