"""Reliability: hostile and odd inputs, size limits, wrong or broken models, crash (SIGKILL)
and resume. Every job must exit 0, write every good file, report every bad one with a reason,
write nothing outside OUTPUT_DIR and leave the input tree byte-identical."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from autoenc.cli import main as cli
from autoenc.runtime.jobs import JobError, check_job, denoise_dir, plan_job, state_dir_for
from autoenc.runtime.ledger import Ledger
from autoenc.runtime.media import TMP_SUFFIX
from conftest import REPO, output_files, photo, tone


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(w: int = 50000, h: int = 50000) -> bytes:
    """A tiny PNG whose header declares w x h 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def absurd_wav() -> bytes:
    """A RIFF/WAVE header claiming 65535 channels at 4 GHz and a 4 GB data chunk, then 8 bytes."""
    fmt = struct.pack("<HHIIHH", 1, 65535, 4_000_000_000, 4_000_000_000, 65535, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 8


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under root: (kind, mode, sha256 or link target) — compares inputs before/after."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif p.is_dir():
            out[str(p.relative_to(root))] = ("dir", st.st_mode)
        else:
            data = p.read_bytes() if os.access(p, os.R_OK) else b""
            out[str(p.relative_to(root))] = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def hostile_folder(src: Path, outside: Path) -> tuple[set[str], set[str]]:
    """Fill ``src`` with good and hostile files; returns (files that must be written, files that
    must be reported as failed or skipped). Files whose fate depends on the user (no read
    permission: root may still read) are in neither set."""
    good, bad = set(), set()
    src.mkdir(parents=True)
    (src / "a/b/c").mkdir(parents=True)
    rgb = Image.fromarray(photo(48, 64, 3))
    png = _encoded(rgb, "PNG")
    jpg = _encoded(rgb, "JPEG", quality=90)
    wav = io.BytesIO()
    sf.write(wav, tone(1.0), 16000, format="WAV", subtype="PCM_16")
    flac = io.BytesIO()
    sf.write(flac, tone(1.0), 16000, format="FLAC")

    def put(rel: str, data: bytes, ok: bool) -> None:
        (src / rel).write_bytes(data)
        (good if ok else bad).add(rel)

    put("good.png", png, True)
    put("a/b/c/deep.jpg", jpg, True)
    put("with space.png", png, True)
    put("ünïcödé 写真.png", png, True)
    put("-dash.png", png, True)
    put("--help.wav", wav.getvalue(), True)
    put("good.flac", flac.getvalue(), True)
    put("zero.png", b"", False)
    put("zero.wav", b"", False)
    put("trunc.png", png[: len(png) // 2], False)
    put("trunc.jpg", jpg[: len(jpg) // 2], False)
    put("trunc.wav", wav.getvalue()[: len(wav.getvalue()) // 3], False)
    put("trunc.flac", flac.getvalue()[: len(flac.getvalue()) // 3], False)
    put("text.jpg", b"this is not a JPEG, just text\n", False)
    put("bomb.png", bomb_png(), False)
    put("absurd.wav", absurd_wav(), False)
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = tone(0.5)
        x[100:200] = value
        sf.write(src / name, x, 16000, subtype="FLOAT")
        bad.add(name)
    sf.write(src / "click.wav", tone(0.01), 16000)
    bad.add("click.wav")
    Image.fromarray(photo(1, 1, 1)).save(src / "one.png")
    good.add("one.png")
    rgb.convert("P", palette=Image.ADAPTIVE).save(src / "palette.png")
    Image.fromarray((photo(32, 40, 1).astype(np.uint16) * 257)).save(src / "deep16.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(src / "rgba.png")
    rgb.convert("CMYK").save(src / "cmyk.jpg")
    good |= {"palette.png", "deep16.png", "rgba.png", "cmyk.jpg"}
    outside.write_bytes(png)
    os.symlink(outside, src / "outside-link.png")
    bad.add("outside-link.png")
    (src / "x.png").mkdir()  # a directory with an image name: not a file, never listed
    noperm = src / "noperm.png"
    noperm.write_bytes(png)
    noperm.chmod(0)
    return good, bad


def test_hostile_inputs_job_reports_failures_and_loses_nothing(tmp_path, prefect_api, gray_model, audio_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    good, bad = hostile_folder(src, tmp_path / "elsewhere.png")
    before, around = _tree(src), sorted(p.name for p in tmp_path.iterdir())
    rc = cli(["denoise", "--model", str(gray_model), "--model", str(audio_model), str(src), str(dst), "--json", str(tmp_path / "report.json")])
    assert rc == 3  # the job ran; some files failed (each with its reason): not a clean success
    report = json.loads((tmp_path / "report.json").read_text())
    by = {r["path"]: r for r in report["results"]}
    assert {p for p in good if by[p]["status"] == "written"} == good, [by[p] for p in good]
    for p in bad:
        assert by[p]["status"] in ("failed", "skipped") and len(by[p]["reason"]) > 8, by[p]
    assert "over the limit" in by["bomb.png"]["reason"]
    assert "NaN" in by["nan.wav"]["reason"] and "shorter than" in by["click.wav"]["reason"]
    assert "outside" in by["outside-link.png"]["reason"] and "x.png" not in by
    assert by["noperm.png"]["status"] == "written" or "Permission" in by["noperm.png"]["reason"]
    # Written outputs are valid files of the same kind; nothing else was written anywhere.
    written = {p for p, r in by.items() if r["status"] == "written"}
    assert set(output_files(dst)) == written
    for rel in written:
        if rel.endswith((".wav", ".flac")):
            assert sf.info(str(dst / rel)).frames == sf.info(str(src / rel)).frames
        else:
            with Image.open(src / rel) as a, Image.open(dst / rel) as b:
                mode = {"P": "RGB"}.get(a.mode, a.mode)  # palette images come back as RGB (documented)
                assert (a.format, a.size, mode) == (b.format, b.size, b.mode)
    assert not list(dst.rglob("*" + TMP_SUFFIX))
    assert _tree(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(around + ["out", "report.json"])


def test_size_limits_are_enforced_with_clear_errors(tmp_path, gray_model, audio_model):
    from autoenc.runtime.jobs import JobSettings

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(40, 50, 1)).save(src / "p.png")
    sf.write(src / "long.wav", tone(1.0), 16000)
    report = denoise_dir([gray_model, audio_model], src, tmp_path / "out", JobSettings(max_pixels=1000, max_seconds=0.5))
    by = {r.path: r for r in report.results}
    assert by["p.png"].status == "failed" and "over the limit of 1000 pixels" in by["p.png"].reason and "2000 pixels" in by["p.png"].reason
    assert by["long.wav"].status == "failed" and "1.0 s, over the 0.5 s limit" in by["long.wav"].reason
    assert output_files(tmp_path / "out") == []


def test_bad_models_refused_before_any_file_is_touched(tmp_path, gray_model, audio_model):
    import onnx

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(photo(20, 20, 1)).save(src / "p.png")
    (tmp_path / "corrupt.onnx").write_bytes(Path(gray_model).read_bytes()[:500])
    m = onnx.load(str(gray_model))
    for prop in m.metadata_props:
        if prop.key == "autoenc.format_version":
            prop.value = "99"
    onnx.save(m, str(tmp_path / "future.onnx"))
    for model, msg in ((tmp_path / "corrupt.onnx", "cannot load model"), (tmp_path / "future.onnx", "format version 99"), (audio_model, "wrong model for these inputs")):
        with pytest.raises(JobError, match=msg):
            plan_job(model, src, dst)
        assert cli(["denoise", "--model", str(model), str(src), str(dst)]) == 2
    assert not dst.exists()
    with pytest.raises(JobError, match="two image models"):
        check_job([gray_model, gray_model], src, dst)


def test_sigkill_mid_job_then_rerun_completes_without_redoing(tmp_path, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(60):
        Image.fromarray(photo(192, 256, 1, seed=i)).save(src / f"img{i:03d}.png")
    code = f"from autoenc.runtime.jobs import denoise_dir, JobSettings; denoise_dir({str(gray_model)!r}, {str(src)!r}, {str(dst)!r}, JobSettings(threads=1))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    state = state_dir_for(dst)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once some, but not all, files are done
        if (state / "ledger.sqlite").exists():
            with Ledger(state) as ledger:
                n = len(ledger.entries())
            if n >= 10:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Ledger(state) as ledger:
        done_before = set(ledger.entries())
        assert ledger.claims(), "the killed run held claims"
    assert 10 <= len(done_before) < 60, len(done_before)
    # Leftovers of the kind a kill mid-write leaves: a temp file named for the dead writer.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    from autoenc.runtime.media import _HOST_TAG

    (dst / f".autoenc-{_HOST_TAG}-{dead}-xyz{TMP_SUFFIX}").write_bytes(b"partial")
    report = denoise_dir(gray_model, src, dst)
    c = report.counts()
    assert c["failed"] == 0 and c["skipped"] == 0  # the dead run's claims did not block anything
    assert c["unchanged"] == len(done_before) and c["written"] == 60 - len(done_before)
    assert output_files(dst) == sorted(f"img{i:03d}.png" for i in range(60))
    assert not list(dst.rglob("*" + TMP_SUFFIX))
    with Ledger(state) as ledger:
        entries = ledger.entries()
        assert set(entries) == set(output_files(dst)) and ledger.claims() == {}
        assert all(ledger.times_done(p) == 1 for p in entries)  # nothing done twice
        for rel, e in entries.items():
            assert (dst / rel).stat().st_size == e.output_size
    for rel in output_files(dst):
        with Image.open(dst / rel) as im:
            im.load()
            assert im.size == (256, 192)
