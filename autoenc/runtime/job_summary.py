"""Views of a finished folder job for people: a files table, a counts/throughput table, a
markdown report with before/after thumbnails (images) or spectrograms (audio) for a sample of
the written files, and a terminal progress bar. Plain data and strings; the flow publishes them
as Prefect artifacts. Torch-free.
"""

from __future__ import annotations

import base64
import io
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import soundfile as sf
from PIL import Image

from autoenc.runtime.jobs import JobReport
from autoenc.runtime.report import detail_window, side_by_side, spectrogram, stacked, with_axes

MAX_TABLE_ROWS = 500  # keeps Prefect's database small on 10k-file jobs; the rest is counted


def files_table(report: JobReport, limit: int = MAX_TABLE_ROWS) -> list[dict]:
    """One row per file (path, status, reason, seconds, and for images the estimated noise std
    on the 0..255 scale, ``noise_sigma``): failed first, then skipped, written,
    unchanged; at most ``limit`` rows, the last row counting what was left out."""
    order = {"failed": 0, "skipped": 1, "written": 2, "unchanged": 3}
    rows = [
        {"path": r.path, "status": r.status, "reason": r.reason, "seconds": round(r.seconds, 3), "noise_sigma": r.noise_sigma}
        for r in sorted(report.results, key=lambda r: (order[r.status], r.path))
    ]
    if len(rows) > limit:
        left = rows[limit - 1 :]
        kinds = {s: sum(1 for r in left if r["status"] == s) for s in order}
        rows = rows[: limit - 1] + [{"path": f"... {len(left)} more", "status": ", ".join(f"{n} {s}" for s, n in kinds.items() if n), "reason": "see the JSON report", "seconds": 0.0, "noise_sigma": None}]
    return rows


def counts_table(report: JobReport) -> list[dict]:
    """One row: counts per status, wall seconds, files/s and throughput."""
    c, t = report.counts(), report.throughput()
    done = c["written"]
    return [{
        **c,
        "seconds": round(report.seconds, 2),
        "files_per_second": round(done / report.seconds, 2) if report.seconds > 0 else 0.0,
        "megapixels_per_second": round(t["megapixels_per_second"], 3),
        "audio_x_realtime": round(t["audio_seconds_per_second"], 1),
    }]


def _data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _rgb(path: Path) -> np.ndarray:
    """The file's pixels as uint8 RGB (kept 8-bit: a large photo as floats would be 4x the memory)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _spectrogram(path: Path, seconds: float) -> np.ndarray:
    info = sf.info(str(path))
    x, _ = sf.read(str(path), frames=int(seconds * info.samplerate), dtype="float32", always_2d=True)
    return with_axes(spectrogram(x.mean(axis=1), n_fft=512, hop=max(64, len(x) // 480), height=128), info.samplerate, len(x) / info.samplerate)


def before_after_picture(src: Path, dst: Path, modality: str, size: int = 192, seconds: float = 10.0) -> Image.Image:
    """Input and output of one file: for images, 1:1 crops of the most detailed ``size`` px
    window (whole-frame thumbnails of a large photo look the same before and after) beside a
    small thumbnail of the whole frame; for audio, spectrograms of the first ``seconds`` with
    time and frequency axes."""
    if modality != "image":
        return stacked([("input", _spectrogram(src, seconds)), ("denoised", _spectrogram(dst, seconds))])
    a, b = _rgb(src), _rgb(dst)
    y, x = detail_window(a[..., 1], size)
    whole = Image.fromarray(a)
    whole.thumbnail((size, size))
    return side_by_side([
        ("whole frame", np.asarray(whole, np.float32) / 255.0),
        (f"input 1:1 at ({x},{y})", a[y : y + size, x : x + size].astype(np.float32) / 255.0),
        ("denoised 1:1", b[y : y + size, x : x + size].astype(np.float32) / 255.0),
    ])


def sample_written(report: JobReport, k: int) -> list[str]:
    """Up to ``k`` written files, spread evenly over the sorted list (deterministic)."""
    written = sorted(r.path for r in report.results if r.status == "written")
    if len(written) <= k:
        return written
    return [written[round(i * (len(written) - 1) / max(k - 1, 1))] for i in range(k)]


def markdown_report(report: JobReport, title: str, samples: int = 4) -> str:
    """Markdown: counts and throughput, failed/skipped files with reasons (first 50), and
    before/after pictures of a sample of written files as inline JPEG data URIs."""
    from autoenc.runtime.media import modality_of

    c = counts_table(report)[0]
    lines = [
        f"# {title}",
        "",
        f"`{report.input_dir}` → `{report.output_dir}`",
        "",
        "| written | unchanged | skipped | failed | seconds | files/s | MP/s | audio × real time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {c['written']} | {c['unchanged']} | {c['skipped']} | {c['failed']} | {c['seconds']} | {c['files_per_second']} | {c['megapixels_per_second']} | {c['audio_x_realtime']} |",
    ]
    bad = [r for r in report.results if r.status in ("failed", "skipped")]
    if bad:
        lines += ["", "## Not written", "", "| file | status | reason |", "|---|---|---|"]
        lines += [f"| `{r.path}` | {r.status} | {r.reason.replace('|', '/')} |" for r in bad[:50]]
        if len(bad) > 50:
            lines.append(f"| ... {len(bad) - 50} more | | |")
    picks = sample_written(report, samples)
    if picks:
        lines += ["", "## Before / after (sample)", ""]
    for rel in picks:
        try:
            pic = before_after_picture(Path(report.input_dir) / rel, Path(report.output_dir) / rel, modality_of(rel) or "image")
        except Exception as exc:  # a picture is a nicety; never fail the report for it
            lines += [f"`{rel}`: no picture ({type(exc).__name__})", ""]
            continue
        lines += [f"**{rel}**", "", f"![{rel}]({_data_uri(pic)})", ""]
    return "\n".join(lines)


class ProgressBar:
    """One redrawn line on a terminal: files done of total, files/s, megapixels/s or audio
    x real time, and the time left. Log records go above it (:class:`BarLogHandler`), so the
    two never share a line. Silent when ``stream`` is not a tty (unless ``force``)."""

    active: "ProgressBar | None" = None  # the bar on screen, for BarLogHandler

    def __init__(self, total: int, label: str = "denoise", stream: TextIO | None = None, force: bool = False) -> None:
        self.total, self.label, self.done = total, label, 0
        self.pixels = self.audio = 0.0
        self.stream = stream or sys.stderr
        self.enabled = force or (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.shown = False
        if self.enabled:
            ProgressBar.active = self

    def line(self) -> str:
        """The bar's text: ``label [####....] 12/40 files 3.1 files/s 2.0 MP/s ETA 9s``."""
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed
        parts = [f"{self.label} [{'#' * int(frac * 24):<24}] {self.done}/{self.total} files", f"{rate:.1f} files/s"]
        if self.pixels:
            parts.append(f"{self.pixels / 1e6 / elapsed:.1f} MP/s")
        if self.audio:
            parts.append(f"{self.audio / elapsed:.0f}x real time")
        if 0 < self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        elif self.done >= self.total:
            parts.append(f"in {_duration(elapsed)}")
        return "  ".join(parts)

    def update(self, n: int = 1, pixels: float = 0.0, audio_seconds: float = 0.0) -> None:
        with self.lock:
            self.done += n
            self.pixels += pixels
            self.audio += audio_seconds
            self._draw()

    def file_done(self, result) -> None:
        """``on_file`` callback for a job: one :class:`~autoenc.runtime.jobs.FileResult`."""
        self.update(1, result.pixels, result.audio_seconds)

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        """Erase the bar's line (a log record is about to be written)."""
        if self.enabled and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def redraw(self) -> None:
        with self.lock:
            self._draw()

    def close(self) -> None:
        if self.enabled:
            with self.lock:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
            ProgressBar.active = None


class BarLogHandler(logging.StreamHandler):
    """A stderr log handler that erases the active progress bar before a record and draws it
    again after, so a log line never lands in the middle of the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        bar = ProgressBar.active
        if bar is None:
            return super().emit(record)
        with bar.lock:
            bar.clear()
            super().emit(record)
            bar._draw()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
