"""The name a model's rows and columns get in a benchmark's tables and JSON: ``autoenc <stem>``
of its shipped name or .onnx path. Two models with the same stem (``speech-int8`` and
``runs/x/speech-int8.onnx``) would share one column, the later silently replacing the earlier,
so a benchmark refuses them."""

from __future__ import annotations

from pathlib import Path


def column(model: str | Path) -> str:
    """``autoenc <stem>`` of a shipped model name or .onnx path."""
    return "autoenc " + Path(str(model)).stem


def clashes(models: list[str | Path]) -> list[str]:
    """The column names two or more of ``models`` would share (empty when all are distinct)."""
    names = [column(m) for m in models]
    return sorted({n for n in names if names.count(n) > 1})
