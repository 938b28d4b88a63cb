"""A benchmark scores a model only on files it never trained on: before any score, each model's
record of what every stage and teacher trained on (``autoenc.trained_on``,
:mod:`autoenc.runtime.trained_on`) is checked against the benchmark's clean files, and the JSON
says how far that check reached (models made before the record existed carry none)."""

from __future__ import annotations

from pathlib import Path

from autoenc.runtime.metadata import ModelInfo
from autoenc.runtime.trained_on import describe, file_digest, seen


def check(models: dict[str, ModelInfo], files: list[Path]) -> dict[str, str]:
    """Per model name, how far the check reached; SystemExit naming the files if a model trained
    on any of ``files``."""
    digests = {str(f): file_digest(f) for f in files}
    out = {}
    for name, info in models.items():
        hit = seen(info.trained_on, digests)
        if hit:
            raise SystemExit(f"{name} trained on {len(hit)} of this benchmark's files ({', '.join(Path(h).name for h in hit[:5])}): its scores here would not be held out")
        out[name] = describe(info.trained_on)
    return out
