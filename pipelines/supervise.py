"""Recovery from crashes for ``autoenc serve``: keep its local Prefect server alive, and free the
concurrency slots of runs that died with a server or a serve process.

A deployment allows one run at a time (see :func:`pipelines.serve.deployment`). A run whose
process died (``kill -9`` of serve, or of the server while it ran) stays RUNNING in the database
and holds that slot, so every later scheduled run is cancelled. :func:`crash_stale_runs` marks
such runs Crashed: an ``autoenc`` deployment's run that is PENDING, RUNNING or CANCELLING, whose
state is older than a grace period, and for which no process on this machine carries its id
(the runner starts each flow run with ``PREFECT__FLOW_RUN_ID`` in its environment). The ledger
makes the next run redo only what the dead one had not recorded, so nothing is done twice.

:class:`ServerSupervisor` watches the server process serve started; when it dies, it logs an
error, starts it again on the same port and database, and crashes the stale runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from pipelines.local_server import LocalServer, ServerError

log = logging.getLogger(__name__)

TAG = "autoenc"  # every serve deployment carries it (pipelines.serve.deployment)
STALE_STATES = ("PENDING", "RUNNING", "CANCELLING")


def live_flow_run_ids(proc: Path = Path("/proc")) -> set[str]:
    """Flow-run ids that some process on this machine is running (``PREFECT__FLOW_RUN_ID`` in
    its environment); processes we may not read are skipped. Empty where /proc is absent."""
    ids = set()
    for entry in proc.glob("[0-9]*/environ") if proc.is_dir() else []:
        try:
            env = entry.read_bytes()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(b"PREFECT__FLOW_RUN_ID="):
                ids.add(var.split(b"=", 1)[1].decode(errors="replace"))
    return ids


def crash_stale_runs(deployments: list[str], grace_seconds: float = 30.0) -> list[str]:
    """Mark Crashed every stale run of the served ``deployments`` ("flow/name") on the server
    PREFECT_API_URL names (see the module doc); returns their names. RUNNING is stale at once
    (a flow-run process sets it itself, so it exists while the run is live); PENDING and
    CANCELLING only after ``grace_seconds`` (the runner sets them around starting or stopping
    the process). Runs of other deployments, of work-pool deployments (their workers may be
    elsewhere) and without a deployment are left alone."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    alive = live_flow_run_ids()
    now = datetime.now(timezone.utc)
    crashed = []
    with get_client(sync_client=True) as client:
        served = set()
        for name in deployments:
            try:
                dep = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue  # not registered yet: it has no runs
            if not dep.work_pool_name:
                served.add(dep.id)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[s] for s in STALE_STATES])),
            tags=FlowRunFilterTags(all_=[TAG]),
        )) if served else []
        for run in runs:
            age = (now - run.state.timestamp).total_seconds() if run.state.timestamp else grace_seconds
            young = run.state.type != StateType.RUNNING and age < grace_seconds
            if run.deployment_id not in served or str(run.id) in alive or young:
                continue
            message = f"no process runs it any more (its server or serve process died); {run.state.type.value} since {run.state.timestamp:%Y-%m-%d %H:%M:%S} UTC"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            log.warning("flow run %s (%s) marked Crashed: %s", run.name, run.id, message)
            crashed.append(run.name)
    return crashed


class ServerSupervisor:
    """A daemon thread that restarts ``server`` (already started) whenever its process exits,
    then crashes the runs it left stale. ``stop()`` before stopping the server on shutdown.

    Args:
        server: the started local server.
        deployments: the served deployments ("flow/name") whose stale runs are crashed.
        interval: seconds between checks.
    """

    def __init__(self, server: LocalServer, deployments: list[str], interval: float = 2.0) -> None:
        self.server, self.deployments, self.interval = server, deployments, interval
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="prefect-server-supervisor", daemon=True)

    def start(self) -> "ServerSupervisor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        backoff = self.interval
        while not self._stop.wait(backoff):
            proc = self.server.proc
            if proc is None or proc.poll() is None:
                backoff = self.interval
                continue
            log.error("Prefect server pid %d exited with code %s; restarting it on %s", proc.pid, proc.returncode, self.server.url)
            try:
                os.killpg(proc.pid, 9)  # whatever of its process group is left would hold the port
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.server.start()
            except ServerError as exc:
                backoff = min(60.0, backoff * 2)
                log.error("Prefect server restart failed (next try in %.0f s): %s", backoff, exc)
                continue
            self.restarts += 1
            backoff = self.interval
            try:
                crash_stale_runs(self.deployments)
            except Exception as exc:  # the next restart or serve start tries again
                log.error("could not mark stale runs Crashed: %s", exc)
