"""Which files a model learned from, across all its stages: the record a checkpoint keeps under
``trained_on`` and an exported model under ``autoenc.trained_on`` (torch-free, so benchmarks and
tools that hold only the .onnx can read it).

A run's record joins the sha256 of its own training files with the records of the model it
started from (``train.init_from``) and of its teacher (``train.teacher``), so a file any stage
trained on, or any teacher learned from, stays in it. A start or teacher made before records
existed is named under ``unknown``: what it trained on cannot be checked.

Record: ``{"sha256": [sorted DIGEST_CHARS-hex prefixes], "stages": [config hashes],
"unknown": [paths]}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16  # hex characters of each file's sha256 kept: 64 bits, no accidental match among a few 10^4 files (the speech corpus: ~5,000 files, ~90 KB of metadata)


def record(own: Iterable[str], stage: str, earlier: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The record of a run whose training split has sha256 digests ``own`` (full or prefixes),
    made with config hash ``stage``, that started from or learned from the models in ``earlier``
    (name -> their record, or None where they carry none; a name is listed once under
    ``unknown`` however many stages lacked its record)."""
    digests = {d[:DIGEST_CHARS] for d in own}
    stages: list[str] = []
    unknown: list[str] = []
    for path, rec in earlier.items():
        if rec is None:
            unknown += [str(path)] if str(path) not in unknown else []
            continue
        digests |= set(rec["sha256"])
        stages += [s for s in rec["stages"] if s not in stages]
        unknown += [u for u in rec.get("unknown", []) if u not in unknown]
    return {"sha256": sorted(digests), "stages": [*stages, stage], "unknown": unknown}


def file_digest(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes (as the data manifest records it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seen(rec: Mapping[str, Any] | None, files: Mapping[str, str]) -> list[str]:
    """The names in ``files`` (name -> sha256) whose content is in record ``rec``; empty when
    ``rec`` is None (nothing recorded: see :func:`describe`)."""
    if rec is None:
        return []
    known = set(rec["sha256"])
    return sorted(name for name, digest in files.items() if digest[:DIGEST_CHARS] in known)


def summary(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A record without its digests, for listings: ``{"files": count, "stages": [config hashes],
    "unknown": [names]}``, or None where the model records nothing."""
    if rec is None:
        return None
    return {"files": len(rec["sha256"]), "stages": list(rec["stages"]), "unknown": list(rec.get("unknown", []))}


def describe(rec: Mapping[str, Any] | None) -> str:
    """One line on how far a record reaches, for logs and reports."""
    if rec is None:
        return "the model records no training files (made before autoenc.trained_on existed)"
    head = f"{len(rec['sha256'])} training files over {len(rec['stages'])} stage(s)"
    if rec.get("unknown"):
        return head + f"; not recorded: what {', '.join(rec['unknown'])} trained on"
    return head + ", every stage and teacher recorded"
