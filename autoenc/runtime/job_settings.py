"""Everything a denoise job can be told, with its default and bounds: the one definition that
the ``autoenc denoise`` flags (:func:`add_flags`), the denoise flow's parameters and a schedule
job's ``parameters`` are built from (a test checks the flow's signature against it).
"""

from __future__ import annotations

import argparse
from typing import Literal

from pydantic import Field

from autoenc.runtime.media import DEFAULT_MAX_PIXELS
from autoenc.runtime.typed_config import Frozen, validate


class JobSettings(Frozen):
    """How a denoise job runs. The first group is per file (every batch gets it); the rest
    shapes the job (batches, incrementality, runner, report)."""

    threads: int = Field(2, ge=1, description="onnxruntime intra-op threads")
    tile: int = Field(1024, ge=64, description="largest tile edge in pixels for large images")
    memory_mb: int = Field(768, ge=32, description="working memory for one image model's tiles in MB: the tile edge is the largest that fits (measured per model), at most --tile")
    strength: float = Field(1.0, gt=0, le=4, description="images: scale the estimated noise level a model with a noise-level input is told (above 1 smooths more, below 1 keeps more grain); blind models refuse anything but 1")
    ensemble: bool = Field(False, description="images: average the model over the 8 flips and rotations of each image (about +0.1-0.2 dB, 8x the time)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse larger images (decompression bombs)")
    chunk_seconds: float = Field(4.0, gt=0, description="audio window length in seconds (overlap-added; longer where the model's reach needs it)")
    min_seconds: float = Field(0.1, ge=0, description="refuse shorter audio (seconds)")
    max_seconds: float = Field(6 * 3600.0, gt=0, description="refuse longer audio (seconds)")
    batch_size: int = Field(64, ge=1, description="files per Prefect task")
    incremental: bool = Field(True, description="keep a ledger and skip files already denoised with this model", json_schema_extra={"flag": "--no-ledger", "flag_help": "process every file and keep no state (not incremental, no claims)"})
    overwrite: bool = Field(False, description="redo files the ledger says are already denoised with this model")
    state_dir: str | None = Field(None, description="where the job ledger lives (default OUTPUT_DIR/.autoenc)")
    runner: Literal["threads", "dask"] = Field("threads", description="task runner for the batches")
    workers: int = Field(1, ge=1, description="batches at a time (threads) or local Dask worker processes")
    dask_address: str | None = Field(None, description="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --runner dask)")
    report_samples: int = Field(4, ge=0, description="before/after pictures in the run's report")


DEFAULTS = JobSettings()


def blind_strength_error(model: object, strength: float) -> str:
    """Why a blind model refuses a strength other than 1."""
    return f"--strength {strength:g} needs a model with a noise-level input; {model} is blind (it estimates nothing it can be told): use strength 1 or a model whose card lists a noise-level input"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`JobSettings` field (``--no-ledger`` for ``incremental``),
    with its type, choices, default and help."""
    for name, field in JobSettings.model_fields.items():
        extra = field.json_schema_extra or {}
        flag = extra.get("flag", "--" + name.replace("_", "-"))
        default = field.default
        if field.annotation is bool:
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=name, action=action, default=default, help=extra.get("flag_help", field.description))
            continue
        kind = {int: int, float: float}.get(field.annotation, str)
        choices = list(getattr(field.annotation, "__args__", ())) if str(field.annotation).startswith("typing.Literal") else None
        parser.add_argument(flag, dest=name, type=kind, choices=choices, default=default, help=field.description + ("" if default is None else " (default: %(default)s)"))


def from_args(args: argparse.Namespace) -> JobSettings:
    """The settings a parsed command line gave, validated (bounds apply to flags too;
    ConfigError names the setting)."""
    return validate(JobSettings, {name: getattr(args, name) for name in JobSettings.model_fields}, "command line")
