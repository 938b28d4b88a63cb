"""Torch-free inference: :class:`OnnxDenoiser` (one onnxruntime session, seamless tiling) and
folder jobs (:func:`plan_job`, :func:`denoise_files`, :func:`denoise_dir`).

Tiling: tiles start on multiples of the model's ``size_multiple`` and overlap by
``2 * context + blend`` pixels, where ``context`` covers the model's receptive radius. Each
tile's weight is 0 over the ``context`` pixels next to an interior edge (where zero padding
would differ from the whole image), rises on a raised-cosine ramp over ``blend`` pixels, and is
1 elsewhere; image borders get full weight. Every pixel is thus a convex blend of tile outputs
that each equal the whole-image output, so tiled == whole up to float rounding, while memory is
bounded by one row of tiles (float32) besides the input and output arrays.

Channel rule: a model with as many channels as the image is applied directly. Otherwise each
image channel is denoised on its own: a 1-channel model runs on R, G, B (or C, M, Y, K)
separately; a 3-channel model gets a gray plane replicated to RGB and its 3 outputs are averaged.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autoenc.media import DEFAULT_MAX_PIXELS, MediaError, modality_of, read_image, write_image
from autoenc.metadata import ModelInfo

log = logging.getLogger(__name__)
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class ModelError(Exception):
    """A model that cannot be used (missing, corrupt, wrong modality, incompatible)."""


class JobError(Exception):
    """A job that cannot run at all (bad folders, bad model); no file has been touched."""


def resolve_model(model: str | Path) -> Path:
    """Return the ``.onnx`` path for a file path or a shipped model name."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{model}.onnx"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in PRETRAINED_DIR.glob("*.onnx")) if PRETRAINED_DIR.is_dir() else []
    raise ModelError(f"model not found: {model} (not a file; shipped models: {names or 'none'})")


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


def tile_spans(length: int, tile: int, context: int, blend: int, multiple: int) -> list[tuple[int, int]]:
    """Tile [start, end) spans along one axis: the fewest tiles of at most about ``tile`` px
    that overlap by ``2 * context + blend``, evenly spread, starts on multiples of ``multiple``."""
    if length <= tile:
        return [(0, length)]
    overlap = 2 * context + blend
    n = math.ceil((length - overlap) / (tile - overlap))
    t = math.ceil((math.ceil((length - overlap) / n) + overlap) / multiple) * multiple + multiple
    starts = [round(i * (length - t) / (n - 1)) // multiple * multiple for i in range(n)]
    return [(s, s + t) for s in starts[:-1]] + [(starts[-1], length)]


def span_weights(span: tuple[int, int], length: int, context: int, blend: int) -> np.ndarray:
    """Blend weights of one tile span: 0 on ``context`` px at interior edges, then a ramp."""
    s, e = span
    w = np.ones(e - s, dtype=np.float32)
    ramp = _ramp(blend)
    if s > 0:
        w[:context] = 0
        w[context : context + blend] = ramp
    if e < length:
        w[e - s - context :] = 0
        w[e - s - context - blend : e - s - context] = ramp[::-1]
    return w


class OnnxDenoiser:
    """One onnxruntime session and the model's self-description.

    Args:
        model: path to an autoenc ``.onnx`` file, or a shipped model name.
        threads: onnxruntime intra-op threads.
        tile: tile edge in pixels; images larger than this are tiled (memory bound).
        blend: length in pixels of the cross-fade between tiles.
        modality: what the caller will feed it; a model of another modality is refused.
    """

    def __init__(self, model: str | Path, *, threads: int = 2, tile: int = 1024, blend: int = 16, modality: str = "image") -> None:
        self.path = resolve_model(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load model {self.path}: {type(exc).__name__}: {str(exc)[:300]}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_props(props)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"model {self.path}: {exc}") from None
        if self.info.modality != modality:
            raise ModelError(f"model {self.path} is a {self.info.modality} model; this job needs {modality}")
        self.input_name = self.session.get_inputs()[0].name
        m = self.info.size_multiple
        self.context = math.ceil(self.info.receptive_radius / m) * m
        self.blend = max(m, math.ceil(blend / m) * m)
        self.tile = max(math.ceil(tile / m) * m, 2 * (2 * self.context + self.blend))

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run the network on (N, C, h, w) float32 in 0..1."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def _apply(self, tile: np.ndarray) -> np.ndarray:
        """Denoise an (h, w, K) float tile with the channel rule (see module docstring)."""
        k, c = tile.shape[2], self.info.channels
        chw = tile.transpose(2, 0, 1)
        if k == c:
            return self._run(chw[None])[0].transpose(1, 2, 0)
        if c == 1:
            return self._run(chw[:, None])[:, 0].transpose(1, 2, 0)
        rep = np.repeat(chw[:, None], c, axis=1)  # each plane as a gray "colour" image
        return self._run(rep).mean(axis=1).transpose(1, 2, 0)

    def denoise(self, planes: np.ndarray, max_value: float = 1.0) -> np.ndarray:
        """Denoise (H, W, K) planes: an integer array with full scale ``max_value`` returns the
        same dtype; a float array on the 0..1 scale (``max_value=1``) returns float32.

        Works one row of tiles at a time: rows of the float accumulator are finalised as soon
        as no later tile reaches them, so extra memory is about ``tile`` rows, whatever H is.
        """
        h, w, k = planes.shape
        m = self.info.size_multiple
        ys = tile_spans(h, self.tile, self.context, self.blend, m)
        xs = tile_spans(w, self.tile, self.context, self.blend, m)
        wx = [span_weights(s, w, self.context, self.blend) for s in xs]
        # Weights are separable over a grid of tiles, so their sum is an outer product.
        sum_y, sum_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
        for y0, y1 in ys:
            sum_y[y0:y1] += span_weights((y0, y1), h, self.context, self.blend)
        for (x0, x1), wx_j in zip(xs, wx):
            sum_x[x0:x1] += wx_j
        out = np.empty(planes.shape, np.float32 if planes.dtype.kind == "f" else planes.dtype)
        done, acc = 0, np.zeros((0, w, k), np.float32)  # acc holds rows [done, done + len(acc))
        for i, (y0, y1) in enumerate(ys):
            if y1 - done > acc.shape[0]:
                acc = np.concatenate([acc, np.zeros((y1 - done - acc.shape[0], w, k), np.float32)])
            wy = span_weights((y0, y1), h, self.context, self.blend)
            for (x0, x1), wx_j in zip(xs, wx):
                tile = planes[y0:y1, x0:x1].astype(np.float32) / max_value
                acc[y0 - done : y1 - done, x0:x1] += self._apply(tile) * (wy[:, None, None] * wx_j[None, :, None])
            final = ys[i + 1][0] if i + 1 < len(ys) else h
            out[done:final] = self._finish(acc[: final - done], sum_y[done:final], sum_x, max_value, out.dtype)
            acc, done = acc[final - done :], final
        return out

    @staticmethod
    def _finish(rows: np.ndarray, sum_y: np.ndarray, sum_x: np.ndarray, max_value: float, dtype) -> np.ndarray:
        """Normalise accumulated rows by their blend weights and convert to the output dtype."""
        rows = rows / (sum_y[:, None, None] * sum_x[None, :, None])
        np.nan_to_num(rows, copy=False, nan=0.0)
        np.clip(rows, 0.0, 1.0, out=rows)
        if np.dtype(dtype).kind == "f":
            return rows
        return (rows * max_value + 0.5).astype(dtype)


@dataclass
class FileResult:
    """Outcome for one input file (``path`` relative to the input folder)."""

    path: str
    status: str  # "written" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    pixels: int = 0


@dataclass
class JobPlan:
    input_dir: Path
    output_dir: Path
    files: list[str]  # relative paths to denoise
    skipped: list[FileResult] = field(default_factory=list)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_job(model: str | Path, input_dir: str | Path, output_dir: str | Path, *, modality: str = "image") -> tuple[Path, Path]:
    """Refuse a job that cannot run (missing/unusable model, missing input folder, output
    inside input or the reverse) before any file is touched; returns resolved (input, output)."""
    src = Path(input_dir)
    if not src.is_dir():
        raise JobError(f"input folder does not exist or is not a folder: {src}")
    src, dst = src.resolve(), Path(output_dir).resolve()
    if _inside(dst, src):
        raise JobError(f"output folder {dst} is inside the input folder {src}: outputs would be re-read as inputs")
    if _inside(src, dst):
        raise JobError(f"input folder {src} is inside the output folder {dst}")
    try:
        OnnxDenoiser(model, modality=modality)
    except ModelError as exc:
        raise JobError(str(exc)) from None
    return src, dst


def plan_job(model: str | Path, input_dir: str | Path, output_dir: str | Path, *, modality: str = "image") -> JobPlan:
    """:func:`check_job`, then list the inputs. Symlinks that resolve outside the input folder
    are not followed (reported as skipped); files of another type are skipped with a reason."""
    src, dst = check_job(model, input_dir, output_dir, modality=modality)
    files, skipped = [], []
    for root, dirs, names in os.walk(src, followlinks=False):
        rdir = Path(root)
        for d in list(dirs):
            if (rdir / d).is_symlink():
                dirs.remove(d)
                skipped.append(FileResult(str((rdir / d).relative_to(src)), "skipped", "symlinked folder not followed"))
        dirs.sort()
        for name in sorted(names):
            p = rdir / name
            rel = str(p.relative_to(src))
            if p.is_symlink() and not _inside(p.resolve(), src):
                skipped.append(FileResult(rel, "skipped", "symlink points outside the input folder"))
            elif modality_of(p) != modality:
                skipped.append(FileResult(rel, "skipped", f"not a supported {modality} file type"))
            else:
                files.append(rel)
    return JobPlan(src, dst, files, skipped)


def denoise_files(
    model: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    files: list[str],
    *,
    threads: int = 2,
    tile: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[FileResult]:
    """Denoise ``files`` (relative to ``input_dir``) into ``output_dir`` at the same relative
    paths. One bad file is reported with its reason; the rest are still written."""
    den = OnnxDenoiser(model, threads=threads, tile=tile)
    src, dst = Path(input_dir).resolve(), Path(output_dir).resolve()
    results = []
    for rel in files:
        t0 = time.perf_counter()
        out_path = (dst / rel).resolve()
        if not _inside(out_path, dst):
            results.append(FileResult(rel, "failed", "output path would fall outside the output folder"))
            continue
        try:
            data = read_image(src / rel, max_pixels=max_pixels)
            cleaned = den.denoise(data.planes, data.max_value)
            write_image(out_path, data, cleaned)
        except (MediaError, OSError) as exc:
            reason = str(exc) if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc.strerror or exc}"
            log.warning("failed %s: %s", rel, reason)
            results.append(FileResult(rel, "failed", reason, time.perf_counter() - t0))
            continue
        h, w, _ = data.planes.shape
        note = data.note
        results.append(FileResult(rel, "written", note, time.perf_counter() - t0, h * w))
        log.info("wrote %s (%dx%d, %.2fs)", rel, w, h, results[-1].seconds)
    return results


@dataclass
class JobReport:
    input_dir: str
    output_dir: str
    model: str
    results: list[FileResult]
    seconds: float

    def counts(self) -> dict[str, int]:
        out = {"written": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def megapixels_per_second(self) -> float:
        px = sum(r.pixels for r in self.results)
        busy = sum(r.seconds for r in self.results if r.status == "written")
        return px / 1e6 / busy if busy > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts(), "megapixels_per_second": self.megapixels_per_second()}

    def summary(self) -> str:
        """Human summary: counts, then each skipped/failed file with its reason."""
        c = self.counts()
        lines = [
            f"denoised {self.input_dir} -> {self.output_dir} with {self.model}: "
            f"{c['written']} written, {c['skipped']} skipped, {c['failed']} failed "
            f"in {self.seconds:.1f}s ({self.megapixels_per_second():.2f} MP/s)"
        ]
        for r in self.results:
            if r.status != "written":
                lines.append(f"  {r.status}: {r.path}: {r.reason}")
        return "\n".join(lines)


def denoise_dir(model: str | Path, input_dir: str | Path, output_dir: str | Path, **kwargs) -> JobReport:
    """Plan and run a whole folder job in-process (the flow does the same in batched tasks)."""
    t0 = time.perf_counter()
    plan = plan_job(model, input_dir, output_dir)
    results = plan.skipped + denoise_files(model, plan.input_dir, plan.output_dir, plan.files, **kwargs)
    return JobReport(str(plan.input_dir), str(plan.output_dir), str(model), results, time.perf_counter() - t0)
