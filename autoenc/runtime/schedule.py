"""Scheduled denoising jobs: the typed schedule config that ``autoenc serve`` serves and that
``prefect.yaml`` is generated from (so the single-server and work-pool paths run the same
deployments). Validated once at load; Prefect-free.

A schedule YAML::

    server: {host: 127.0.0.1, port: 4200, data_dir: ~/.autoenc/prefect}
    jobs:
      - name: photos                     # deployment denoise/photos
        input_dir: /data/in/photos
        output_dir: /data/out/photos
        models: [image-gray]             # shipped names or .onnx paths, one per modality
        cron: "*/15 * * * *"             # or interval_seconds: 900
        parameters: {batch_size: 64, threads: 2, runner: threads}

Paths expand ``~`` and ``$VARS``; relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from autoenc.runtime.job_settings import JobSettings
from autoenc.runtime.typed_config import Frozen, read_yaml_mapping, validate

ENTRYPOINT = "pipelines.denoise:denoise_flow"  # a module path: works wherever autoenc is installed


class ServerConfig(Frozen):
    """The local Prefect server ``autoenc serve`` starts when no PREFECT_API_URL is set."""

    host: str = "127.0.0.1"  # loopback only by default; see the README's security section
    port: int = Field(4200, ge=0, le=65535)  # 0 picks a free port
    data_dir: str = "~/.autoenc/prefect"  # PREFECT_HOME of the server: SQLite database, logs
    startup_timeout: float = Field(90.0, gt=0)  # seconds to wait for /api/health


class JobSpec(Frozen):
    """One scheduled job: a folder, a model per modality, when, and how."""

    name: str
    input_dir: str
    output_dir: str
    models: list[str] = Field(min_length=1)
    cron: str | None = None
    interval_seconds: float | None = Field(None, gt=0)
    timezone: str = "UTC"
    paused: bool = False
    overlap: Literal["cancel_new", "enqueue"] = "cancel_new"  # what happens to a run while one is running
    parameters: JobSettings = JobSettings()  # only the keys given reach the flow; the rest keep the flow's defaults

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", v):
            raise ValueError("job names are lowercase letters, digits and dashes (they name deployments and artifacts)")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) not in (5, 6):
            raise ValueError(f"cron {v!r} must have 5 fields (minute hour day month weekday)")
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> "JobSpec":
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        return self

    def flow_parameters(self) -> dict[str, Any]:
        """Everything the denoise flow is called with for this job."""
        return {"models": list(self.models), "input_dir": self.input_dir, "output_dir": self.output_dir, "job": self.name, **self.parameters.model_dump(exclude_unset=True)}


class ScheduleConfig(Frozen):
    server: ServerConfig = ServerConfig()
    jobs: list[JobSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "ScheduleConfig":
        names = [j.name for j in self.jobs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"job names must be unique: {dup}")
        outs = [Path(j.output_dir) for j in self.jobs]
        for i, a in enumerate(outs):
            for b in outs[i + 1 :]:
                if a == b or a in b.parents or b in a.parents:
                    raise ValueError(f"two jobs write into the same folder tree: {a} and {b}")
        return self


def _expand(p: str, base: Path) -> str:
    q = Path(os.path.expandvars(os.path.expanduser(p)))
    return str(q if q.is_absolute() else (base / q).resolve())


def _model_ref(m: str, base: Path) -> str:
    """A shipped model name stays a name; anything that looks like a path is expanded."""
    return _expand(m, base) if ("/" in m or m.endswith(".onnx") or m.startswith(("~", "$"))) else m


def load_schedule(path: str | Path) -> ScheduleConfig:
    """Load and validate a schedule YAML; paths expanded (see module docstring)."""
    path = Path(path)
    cfg = validate(ScheduleConfig, read_yaml_mapping(path), str(path))
    base = path.resolve().parent
    jobs = [
        j.model_copy(update={"input_dir": _expand(j.input_dir, base), "output_dir": _expand(j.output_dir, base), "models": [_model_ref(m, base) for m in j.models]})
        for j in cfg.jobs
    ]
    server = cfg.server.model_copy(update={"data_dir": os.path.expandvars(os.path.expanduser(cfg.server.data_dir))})
    return cfg.model_copy(update={"jobs": jobs, "server": server})


def prefect_yaml(cfg: ScheduleConfig, pool: str, source: str) -> str:
    """The ``prefect.yaml`` text that deploys ``cfg``'s jobs onto work pool ``pool`` (for
    ``prefect deploy --all`` + ``prefect worker start --pool POOL`` on each CPU server)."""
    deployments = []
    for j in cfg.jobs:
        schedule = {"cron": j.cron, "timezone": j.timezone} if j.cron else {"interval": j.interval_seconds, "timezone": j.timezone}
        deployments.append({
            "name": j.name,
            "description": f"denoise {j.input_dir} -> {j.output_dir} with {', '.join(j.models)}",
            "entrypoint": ENTRYPOINT,
            "parameters": j.flow_parameters(),
            "schedules": [{**schedule, "active": not j.paused}],
            "concurrency_limit": {"limit": 1, "collision_strategy": j.overlap.upper()},
            "work_pool": {"name": pool, "work_queue_name": "default", "job_variables": {"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": "autoenc"}}},
        })
    doc = {"name": "autoenc", "prefect-version": "3", "pull": [], "deployments": deployments}
    head = f"# Generated by `autoenc prefect-yaml {source} --pool {pool}`: edit the schedule config, not this file.\n"
    return head + yaml.safe_dump(doc, sort_keys=False)
