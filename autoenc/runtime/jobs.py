"""Folder jobs, torch-free: check that a job can run, list its inputs, denoise batches of
files, report what was written, skipped and failed (with reasons).

A job takes one model per modality (an image model, an audio model, or both); each file goes
to the model of its modality, and a file whose modality has no model is skipped with that
reason. Every output goes to the same relative path under the output folder, written
atomically; an output path that would resolve outside the output folder is refused; inputs are
only read.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from autoenc.runtime.job_settings import DEFAULTS, JobSettings, blind_strength_error
from autoenc.runtime.ledger import STATE_DIRNAME, Ledger, LedgerError, check_ledger, file_sha256, process_alive, settings_tag
from autoenc.runtime.media import MediaError, check_regular, is_own_host, modality_of, temp_owner
from autoenc.runtime.session import ModelError, OnnxModel

log = logging.getLogger(__name__)


NOT_REACHED = "not reached: the job was interrupted"


class JobError(Exception):
    """A job that cannot run at all (bad folders, bad model); no file has been touched."""


@dataclass
class FileResult:
    """Outcome for one input file (``path`` relative to the input folder)."""

    path: str
    status: str  # "written" | "unchanged" (done before with this model) | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    pixels: int = 0  # images: H * W processed
    audio_seconds: float = 0.0  # audio: duration processed
    noise_sigma: float | None = None  # images: the estimated noise level (std, 0..255 scale) of the input


@dataclass(frozen=True)
class Tracking:
    """What a batch needs to keep a job incremental and overlap-safe (plain, picklable)."""

    state_dir: str  # folder of the ledger
    run_id: str  # claims and ledger rows are tagged with it
    model_ids: dict[str, str]  # modality -> model identity (name + file hash)
    overwrite: bool = False  # redo files the ledger says are done
    lease_seconds: float = 900.0  # a claim not renewed for this long is taken over


@dataclass
class JobPlan:
    input_dir: Path
    output_dir: Path
    models: dict[str, str]  # modality -> model path
    files: list[str]  # relative paths to denoise
    skipped: list[FileResult] = field(default_factory=list)  # includes "unchanged" results
    tracking: Tracking | None = None


def _check_writable(dst: Path) -> None:
    """The output folder (or its nearest existing parent, where it will be created) takes a
    file: a read-only or full output is refused before any file is touched."""
    where = dst
    while not where.exists():
        where = where.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".autoenc-probe-", dir=where)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise JobError(f"cannot write to the output folder {dst} ({where}: {exc.strerror or exc}); free space or fix permissions there") from None


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def refuse_blind_strength(info, model: str | Path, strength: float) -> None:
    """Raise :class:`JobError` for a blind image model (``info``: its :class:`ModelInfo`) asked
    for a strength other than 1: it has no noise level to scale."""
    if info.modality == "image" and strength != 1 and not info.noise_level_input:
        raise JobError(blind_strength_error(model, strength))


def check_job(models: str | Path | list[str | Path], input_dir: str | Path, output_dir: str | Path, files: list[str] | None = None, *, strength: float = 1.0, ensemble: bool = False) -> tuple[Path, Path, dict[str, str], dict[str, str]]:
    """Refuse a job that cannot run (missing/unusable model, two models of one modality, a
    ``strength`` other than 1 for a blind image model,
    missing input folder, an output that exists but is not a folder, output inside input or
    the reverse) before any file is touched. With an explicit ``files`` list (relative to
    ``input_dir``) nothing is walked, so the folders may nest; each file must exist and no
    output may land on an input. Returns resolved (input, output, {modality: model path},
    {modality: model identity})."""
    src = Path(input_dir)
    if not src.is_dir():
        raise JobError(f"input folder does not exist or is not a folder: {src}")
    src, dst = src.resolve(), Path(output_dir).resolve()
    if dst.exists() and not dst.is_dir():
        raise JobError(f"output {dst} exists and is not a folder: give a folder (it is created if missing)")
    if files is None:
        if _inside(dst, src):
            raise JobError(f"output folder {dst} is inside the input folder {src}: outputs would be re-read as inputs")
        if _inside(src, dst):
            raise JobError(f"input folder {src} is inside the output folder {dst}")
    else:
        for rel in files:
            if not (src / rel).exists():
                raise JobError(f"input file not found: {src / rel}")
            if (dst / rel).resolve() == (src / rel).resolve():
                raise JobError(f"output {dst / rel} would overwrite its input: give another output folder")
    by_modality: dict[str, str] = {}
    ids: dict[str, str] = {}
    for model in models if isinstance(models, list) else [models]:
        try:
            loaded = OnnxModel(model, threads=1, check_int8=False)  # metadata and identity only: the job's denoiser checks int8 when it loads
        except ModelError as exc:
            raise JobError(str(exc)) from None
        info = loaded.info
        if info.modality in by_modality:
            raise JobError(f"two {info.modality} models given: {by_modality[info.modality]} and {model}")
        refuse_blind_strength(info, model, strength)
        by_modality[info.modality] = str(loaded.path)
        ids[info.modality] = loaded.identity + (settings_tag(strength, ensemble) if info.modality == "image" else "")
    if not by_modality:
        raise JobError("no model given")
    return src, dst, by_modality, ids


def list_inputs(src: Path, accept: set[str]) -> tuple[list[str], list[FileResult]]:
    """Regular files under ``src`` (sorted, recursive) whose modality is in ``accept``, and the
    rest as skipped results with a reason: symlinks leading outside ``src`` or looping, special
    files, other file types. Symlinked folders are not followed."""
    files, skipped = [], []

    def unreadable(exc: OSError) -> None:  # os.walk would otherwise leave the folder out silently
        rel = str(Path(exc.filename).relative_to(src)) if exc.filename else "."
        skipped.append(FileResult(rel + "/", "failed", f"cannot read folder: {exc.strerror or exc}"))

    for root, dirs, names in os.walk(src, followlinks=False, onerror=unreadable):
        rdir = Path(root)
        for d in list(dirs):
            if (rdir / d).is_symlink():
                dirs.remove(d)
                skipped.append(FileResult(str((rdir / d).relative_to(src)), "skipped", "symlinked folder not followed"))
        dirs.sort()
        for name in sorted(names):
            p = rdir / name
            rel = str(p.relative_to(src))
            kind = modality_of(p)
            link = None
            try:
                link = p.is_symlink()  # lstat: fails where the folder is readable but not enterable
                outside = link and not _inside(p.resolve(strict=True), src)
                regular = p.is_file()
            except (OSError, RuntimeError) as exc:  # dangling link, symlink loop, no permission
                if link:
                    skipped.append(FileResult(rel, "skipped", "broken or looping symlink"))
                else:
                    skipped.append(FileResult(rel, "failed", f"cannot read: {getattr(exc, 'strerror', None) or exc}"))
                continue
            if outside:
                skipped.append(FileResult(rel, "skipped", "symlink points outside the input folder"))
            elif not regular:
                skipped.append(FileResult(rel, "skipped", "not a regular file"))
            elif kind is None:
                skipped.append(FileResult(rel, "skipped", "not a supported image or audio file type"))
            elif kind not in accept:
                skipped.append(FileResult(rel, "skipped", f"{kind} file, but no {kind} model was given"))
            else:
                files.append(rel)
    return files, skipped


def pick_inputs(src: Path, names: list[str], accept: set[str]) -> tuple[list[str], list[FileResult]]:
    """An explicit list of input files (relative to ``src``) split like :func:`list_inputs` does:
    the ones to denoise, and the rest as skipped results with a reason."""
    files, skipped = [], []
    for rel in dict.fromkeys(names):  # once each, in the order given
        p, kind = src / rel, modality_of(rel)
        if not p.is_file():
            skipped.append(FileResult(rel, "skipped", "not a regular file"))
        elif kind is None:
            skipped.append(FileResult(rel, "skipped", "not a supported image or audio file type"))
        elif kind not in accept:
            skipped.append(FileResult(rel, "skipped", f"{kind} file, but no {kind} model was given"))
        else:
            files.append(rel)
    return files, skipped


def split_inputs(paths: list[str | Path]) -> tuple[Path, list[str] | None]:
    """What the command line named: one folder -> (that folder, None: walk it); one or more
    files -> (their deepest common folder, their paths relative to it). JobError otherwise."""
    ps = [Path(p) for p in paths]
    if len(ps) == 1 and ps[0].is_dir():
        return ps[0], None
    if any(p.is_dir() for p in ps):
        raise JobError("give one input folder, or one or more input files (not a mix)")
    missing = [str(p) for p in ps if not p.exists()]
    if missing:
        raise JobError(f"input not found: {', '.join(missing)}")
    absolute = [p.resolve() for p in ps]
    root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    return root, [str(a.relative_to(root)) for a in absolute]


def sweep_temp(output_dir: str | Path, stale_seconds: float = 900.0) -> list[str]:
    """Remove temp files a killed run left in ``output_dir``: those of a dead process on this
    host, or of another host when older than ``stale_seconds``. A live writer's temp files are
    left alone. Returns the relative paths removed."""
    dst = Path(output_dir)
    removed = []
    for root, dirs, names in os.walk(dst):
        dirs[:] = [d for d in dirs if d != STATE_DIRNAME]
        for name in names:
            owner = temp_owner(name)
            if owner is None:
                continue
            p = Path(root) / name
            try:
                stale = not process_alive(owner[1], None) if is_own_host(owner[0]) else time.time() - p.lstat().st_mtime > stale_seconds
                if stale:
                    p.unlink()
                    removed.append(str(p.relative_to(dst)))
            except OSError:
                continue
    if removed:
        log.info("removed %d temp file(s) left by an interrupted run in %s", len(removed), dst)
    return removed


def state_dir_for(output_dir: str | Path, state_dir: str | Path | None = None) -> Path:
    """The job's state folder: ``state_dir`` if given, else ``OUTPUT_DIR/.autoenc``."""
    return Path(state_dir).resolve() if state_dir else Path(output_dir).resolve() / STATE_DIRNAME


def _unchanged(entry, st: os.stat_result, model_id: str, out_path: Path) -> bool:
    """Ledger says this exact file (same size and mtime) was written with this model, and the
    output it wrote is still there with the size it had."""
    try:
        out_size = out_path.stat().st_size
    except OSError:
        return False
    return entry is not None and entry.model_id == model_id and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns and entry.output_size == out_size


def plan_job(
    models: str | Path | list[str | Path],
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    incremental: bool = True,
    overwrite: bool = False,
    state_dir: str | Path | None = None,
    run_id: str | None = None,
    lease_seconds: float = 900.0,
    files: list[str] | None = None,
    sweep: bool = True,
    strength: float = 1.0,
    ensemble: bool = False,
) -> JobPlan:
    """:func:`check_job`, then list the inputs. Symlinks that resolve outside the input folder
    are not followed (reported as skipped); other file types, and files of a modality with no
    model, are skipped with a reason. With ``incremental``, files the ledger says were already
    denoised with the same model (same size and mtime, output still present) come back as
    "unchanged" unless ``overwrite``; the batches hash the rest. ``files`` (relative to
    ``input_dir``) names the inputs instead of walking the folder. ``sweep`` removes temp files
    a dead run left (a dry run passes False: it changes nothing). ``strength`` and ``ensemble``
    are the image settings that change outputs (part of the model identity the ledger keeps)."""
    src, dst, by_modality, ids = check_job(models, input_dir, output_dir, files, strength=strength, ensemble=ensemble)
    files, skipped = list_inputs(src, set(by_modality)) if files is None else pick_inputs(src, files, set(by_modality))
    other = sorted({m for r in skipped if (m := modality_of(r.path)) and m not in by_modality and "model was given" in r.reason})
    if not files and other:
        raise JobError(f"wrong model for these inputs: {input_dir} holds {' and '.join(other)} files, but the model(s) given are for {' and '.join(sorted(by_modality))}")
    if sweep:
        _check_writable(dst)
        if dst.is_dir():
            sweep_temp(dst, lease_seconds)
    if not incremental:
        return JobPlan(src, dst, by_modality, files, skipped)
    state = state_dir_for(dst, state_dir)
    if files is None and _inside(state, src):  # a walk would list the ledger as input
        raise JobError(f"state folder {state} is inside the input folder {src}")
    if sweep:  # a dry run changes nothing: no probe, no repair
        try:
            check_ledger(state)
        except LedgerError as exc:
            raise JobError(str(exc)) from None
    tracking = Tracking(str(state), run_id or uuid.uuid4().hex[:12], ids, overwrite, lease_seconds)
    if overwrite or not (state / "ledger.sqlite").exists():
        return JobPlan(src, dst, by_modality, files, skipped, tracking)
    with Ledger(state) as ledger:
        done = ledger.entries()
    todo = []
    for rel in files:
        try:
            st = (src / rel).stat()
        except OSError:
            todo.append(rel)  # the batch reports why
            continue
        if _unchanged(done.get(rel), st, ids[modality_of(rel)], dst / rel):
            skipped.append(FileResult(rel, "unchanged", f"already denoised with {ids[modality_of(rel)]}"))
        else:
            todo.append(rel)
    log.debug("plan: %d file(s) to denoise, %d unchanged per the ledger in %s", len(todo), len(files) - len(todo), state)
    return JobPlan(src, dst, by_modality, todo, skipped, tracking)


def _denoiser(modality: str, model: str, settings: JobSettings):
    if modality == "image":
        from autoenc.runtime.infer import OnnxDenoiser

        return OnnxDenoiser(model, threads=settings.threads, tile=settings.tile, memory_mb=settings.memory_mb, strength=settings.strength, ensemble=settings.ensemble)
    from autoenc.runtime.audio_infer import OnnxAudioDenoiser

    return OnnxAudioDenoiser(model, threads=settings.threads, chunk_seconds=settings.chunk_seconds)


def _denoise_one(den, modality: str, src: Path, out_path: Path, settings: JobSettings) -> tuple[str, int, float, float | None]:
    """Denoise one file; returns (note, pixels, audio seconds, estimated noise std on the
    0..255 scale for images). Raises MediaError/OSError."""
    if modality == "image":
        from autoenc.runtime.media import read_image, write_image

        data = read_image(src, max_pixels=settings.max_pixels)
        levels = den.noise_level(data.planes, data.max_value)  # estimated once: reported, and told to a model that takes it
        write_image(out_path, data, den.denoise(data.planes, data.max_value, level=levels))
        h, w, _ = data.planes.shape
        return data.note, h * w, 0.0, round(255 * float(levels.mean()), 2)
    seconds = den.denoise_file(src, out_path, min_seconds=settings.min_seconds, max_seconds=settings.max_seconds)
    return "", 0, seconds, None


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, MediaError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {str(exc)[:2000]}"


def denoise_files(
    models: dict[str, str],
    input_dir: str | Path,
    output_dir: str | Path,
    files: list[str],
    settings: JobSettings = DEFAULTS,
    tracking: Tracking | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FileResult]:
    """Denoise ``files`` (relative to ``input_dir``) into ``output_dir`` at the same relative
    paths, each with the model of its modality. One bad file is reported with its reason; the
    rest are still written. One onnxruntime session per modality per call. ``on_file`` sees
    each result as it happens; once ``stop`` is set, the file in hand is finished and the rest
    come back as skipped ("not reached").

    With ``tracking``, the batch first claims its files in the ledger (files another live run
    holds are skipped), skips files whose content hash and model identity match the ledger
    (unless overwriting), and records each written file as it goes, so a crash loses at most
    the file in flight."""
    src, dst = Path(input_dir).resolve(), Path(output_dir).resolve()
    denoisers: dict = {}
    results: list[FileResult] = []

    def done(r: FileResult) -> None:
        results.append(r)
        if on_file is not None:
            on_file(r)

    try:
        ledger = Ledger(tracking.state_dir) if tracking else None
        if ledger is not None:
            files, busy = ledger.claim(files, tracking.run_id, tracking.lease_seconds)
    except sqlite3.Error as exc:  # no claim, no ledger: touch nothing rather than risk doing a file twice
        for rel in files:
            done(FileResult(rel, "failed", f"the job ledger in {tracking.state_dir} failed: {exc}; nothing was done to this file"))
        return results
    try:
        if ledger is not None:
            for rel, holder in busy.items():
                done(FileResult(rel, "skipped", f"being denoised by another run ({holder})"))
            renewed = time.monotonic()
        for i, rel in enumerate(files):
            if stop is not None and stop.is_set():
                for r in files[i:]:
                    done(FileResult(r, "skipped", NOT_REACHED))
                break
            t0 = time.perf_counter()
            kind = modality_of(rel)
            out_path = (dst / rel).resolve()
            if kind not in models:
                done(FileResult(rel, "skipped", f"no {kind} model given"))
                continue
            if not _inside(out_path, dst):
                done(FileResult(rel, "failed", "output path would fall outside the output folder"))
                continue
            try:
                check_regular(src / rel)  # swapped for a FIFO since planning? refuse, never block
                if ledger is not None:
                    if time.monotonic() - renewed > tracking.lease_seconds / 4:  # keep the batch's claims alive
                        ledger.renew(files, tracking.run_id, tracking.lease_seconds)
                        renewed = time.monotonic()
                    st = (src / rel).stat()
                    digest = file_sha256(src / rel)
                    entry = ledger.entry(rel)
                    model_id = tracking.model_ids[kind]
                    if not tracking.overwrite and entry is not None and entry.sha256 == digest and entry.model_id == model_id and out_path.is_file():
                        ledger.touch(rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
                        done(FileResult(rel, "unchanged", f"content unchanged since denoised with {model_id}"))
                        continue
                if kind not in denoisers:
                    denoisers[kind] = _denoiser(kind, models[kind], settings)
                    if tracking is not None and denoisers[kind].identity != tracking.model_ids[kind]:
                        log.warning("%s model %s changed since the job was planned (%s, now %s): its outputs are recorded as made by the new one", kind, models[kind], tracking.model_ids[kind], denoisers[kind].identity)
                note, pixels, secs, sigma = _denoise_one(denoisers[kind], kind, src / rel, out_path, settings)
                if ledger is not None:  # the identity of the bytes that made this output, not the planned one
                    try:
                        ledger.record(rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest, model_id=denoisers[kind].identity, output_size=out_path.stat().st_size, run_id=tracking.run_id)
                    except sqlite3.Error as exc:  # the output is written and valid; say so, and why it is redone next time
                        note = f"written, but not recorded in the ledger ({exc}): the next run redoes it"
                        log.warning("%s: %s", rel, note)
            except Exception as exc:  # one bad file never sinks the batch: report it and go on
                reason = _failure_reason(exc)
                log.warning("failed %s: %s", rel, reason)
                done(FileResult(rel, "failed", reason, time.perf_counter() - t0))
                continue
            done(FileResult(rel, "written", note, time.perf_counter() - t0, pixels, secs, sigma))
            log.debug("wrote %s (%.2fs)", rel, results[-1].seconds)  # per-file successes stay out of Prefect's log table
    finally:
        if ledger is not None:
            try:  # a failing release must not replace the per-file results
                ledger.release(files, tracking.run_id)
            except sqlite3.Error as exc:
                log.warning("could not release the claims in %s (%s): they expire with their lease or their process", tracking.state_dir, exc)
            ledger.close()
    return results


@dataclass
class JobReport:
    input_dir: str
    output_dir: str
    models: dict[str, str]
    results: list[FileResult]
    seconds: float

    def counts(self) -> dict[str, int]:
        out = {"written": 0, "unchanged": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def throughput(self) -> dict[str, float]:
        """Image megapixels and audio seconds processed per second of busy time."""
        out = {}
        for key, attr in (("megapixels_per_second", "pixels"), ("audio_seconds_per_second", "audio_seconds")):
            done = [r for r in self.results if r.status == "written" and getattr(r, attr)]
            busy = sum(r.seconds for r in done)
            scale = 1e6 if attr == "pixels" else 1.0
            out[key] = sum(getattr(r, attr) for r in done) / scale / busy if busy > 0 else 0.0
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts(), **self.throughput()}

    @classmethod
    def from_dict(cls, d: dict) -> "JobReport":
        return cls(d["input_dir"], d["output_dir"], d["models"], [FileResult(**r) for r in d["results"]], d["seconds"])

    def summary(self) -> str:
        """Human summary: counts and throughput, then each skipped/failed file with its reason."""
        c, t = self.counts(), self.throughput()
        rate = ", ".join(s for s in (f"{t['megapixels_per_second']:.2f} MP/s" if t["megapixels_per_second"] else "", f"{t['audio_seconds_per_second']:.0f}x real time" if t["audio_seconds_per_second"] else "") if s)
        lines = [
            f"denoised {self.input_dir} -> {self.output_dir}: {c['written']} written, {c['unchanged']} unchanged, "
            f"{c['skipped']} skipped, {c['failed']} failed in {self.seconds:.1f}s" + (f" ({rate})" if rate else "")
        ]
        for r in self.results:
            if r.status in ("skipped", "failed") and r.reason != NOT_REACHED:
                lines.append(f"  {r.status}: {r.path}: {r.reason}")
        if self.interrupted:
            lines.append(f"  interrupted: {sum(r.reason == NOT_REACHED for r in self.results)} file(s) not reached; run the same command again to finish")
        return "\n".join(lines)

    @property
    def interrupted(self) -> bool:
        """Whether the job was stopped before every file was reached."""
        return any(r.reason == NOT_REACHED for r in self.results)


def run_plan(
    plan: JobPlan,
    settings: JobSettings = DEFAULTS,
    *,
    on_file: Callable[[FileResult], None] | None = None,
    stop: threading.Event | None = None,
) -> JobReport:
    """Run a planned job in this process, ``settings.batch_size`` files at a time (as the flow's
    batch tasks do; claims are taken per batch). ``on_file`` sees each result; once ``stop`` is
    set the job ends after the file in hand and the rest are reported as not reached."""
    t0 = time.perf_counter()
    results = list(plan.skipped)
    for i in range(0, len(plan.files), settings.batch_size):
        if stop is not None and stop.is_set():
            results += [FileResult(r, "skipped", NOT_REACHED) for r in plan.files[i:]]
            break
        batch = plan.files[i : i + settings.batch_size]
        results += denoise_files(plan.models, plan.input_dir, plan.output_dir, batch, settings, plan.tracking, on_file, stop)
    return JobReport(str(plan.input_dir), str(plan.output_dir), plan.models, results, time.perf_counter() - t0)


def denoise_dir(
    models: str | Path | list[str | Path],
    input_dir: str | Path,
    output_dir: str | Path,
    settings: JobSettings = DEFAULTS,
    *,
    files: list[str] | None = None,
    **overrides,
) -> JobReport:
    """Plan and run a whole job in this process; ``files`` names the inputs instead of walking
    ``input_dir``; ``overrides`` change single settings, e.g. ``overwrite=True``."""
    if overrides:
        settings = JobSettings(**{**settings.model_dump(), **overrides})
    plan = plan_job(models, input_dir, output_dir, incremental=settings.incremental, overwrite=settings.overwrite, state_dir=settings.state_dir, files=files, strength=settings.strength, ensemble=settings.ensemble)
    return run_plan(plan, settings)
