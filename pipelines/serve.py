"""``autoenc serve``: serve a schedule config's jobs as deployments of the denoise flow
(``denoise/<job>``) from this process; Prefect's runner polls the server and runs each scheduled
or ad-hoc flow run in a subprocess.

:func:`serve_config` owns the lifecycle: refuse a bad job before anything starts, start a real
local Prefect server unless PREFECT_API_URL is set (schedules do not fire on Prefect's
temporary server), serve until Ctrl-C or SIGTERM, then stop the runner and the server. Prefect
is imported only once PREFECT_API_URL points at the server it must talk to.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from autoenc.runtime.schedule import JobSpec, ScheduleConfig

log = logging.getLogger(__name__)


def serve_config(config: str | Path) -> int:
    """Validate the schedule at ``config``, check every job, and serve; returns the exit code
    (2 with a message on stderr when it cannot start)."""
    from autoenc.runtime.jobs import JobError, check_job, refuse_blind_strength
    from autoenc.runtime.schedule import load_schedule
    from autoenc.runtime.session import ModelError, model_info
    from autoenc.runtime.typed_config import ConfigError

    try:
        cfg = load_schedule(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for job in cfg.jobs:  # a bad model or folder layout is refused now, not at 3 a.m.
        try:
            if Path(job.input_dir).is_dir():
                check_job(job.models, job.input_dir, job.output_dir, strength=job.parameters.strength, ensemble=job.parameters.ensemble)
            else:
                for m in job.models:
                    refuse_blind_strength(model_info(m), m, job.parameters.strength)
                log.warning("job %s: input folder %s does not exist yet; its runs fail until it does", job.name, job.input_dir)
        except (JobError, ModelError) as exc:
            print(f"error: job {job.name}: {exc}", file=sys.stderr)
            return 2

    stopping = threading.Event()

    def _stop(signum, frame):  # Ctrl-C, and SIGTERM (docker stop, systemd), shut down alike
        stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "autoenc")  # library logs reach the run logs
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    if os.environ.get("PREFECT_API_URL"):
        log.info("serving %d job(s) on %s", len(cfg.jobs), os.environ["PREFECT_API_URL"])
        try:
            _serve_until_stopped(cfg, stopping)
        except KeyboardInterrupt:
            pass
        return 0
    from pipelines.local_server import LocalServer, ServerError
    from pipelines.supervise import ServerSupervisor

    s = cfg.server
    server = LocalServer(s.data_dir, s.host, s.port, s.startup_timeout)
    supervisor = None
    try:
        url = server.start()
        os.environ["PREFECT_API_URL"] = url
        log.info("serving %d job(s) on %s (UI at %s)", len(cfg.jobs), url, url.removesuffix("/api"))
        supervisor = ServerSupervisor(server, served_names(cfg)).start()
        _serve_until_stopped(cfg, stopping)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()
        server.stop()
    return 0


def _serve_until_stopped(cfg: ScheduleConfig, stopping: threading.Event) -> None:
    """Crash the runs a dead predecessor left holding their slots, then serve until stopped
    (Prefect's runner takes SIGTERM over and returns; Ctrl-C raises). If serving fails instead
    (the server went away), wait for the server and serve again."""
    from pipelines.local_server import healthy
    from pipelines.supervise import crash_stale_runs

    url = os.environ["PREFECT_API_URL"]
    while not stopping.is_set():
        try:
            crash_stale_runs(served_names(cfg))
            serve_schedule(cfg)
            return  # the runner stopped on a signal
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log.error("serving stopped (%s: %s); serving again once %s answers", type(exc).__name__, exc, url)
        while not stopping.is_set() and not healthy(url):
            time.sleep(2)


def served_names(cfg: ScheduleConfig) -> list[str]:
    """The deployments serve registers, as "flow/name"."""
    from pipelines.denoise import denoise_flow

    return [f"{denoise_flow.name}/{j.name}" for j in cfg.jobs]


def deployment(job: JobSpec):
    """One job as a deployment: its schedule, parameters and an overlap policy (concurrency
    limit 1; a run that arrives while one is running is cancelled or queued). Concurrency slots
    are leased, so a crashed run frees its slot when the lease runs out."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    from pipelines.denoise import denoise_flow

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
    from prefect import serve

    serve(*[deployment(j) for j in cfg.jobs], limit=limit, print_starting_message=False)
