"""Incremental, idempotent and overlap-safe jobs: the ledger in the job's state folder."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from autoenc.runtime.jobs import denoise_dir, state_dir_for
from autoenc.runtime.ledger import Ledger, check_ledger
from conftest import REPO, output_files, photo


def _folder(root, n=6):
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(40 + i, 48, 1, seed=i)).save(sub / f"img{i}.png")


def test_rerun_skips_done_redoes_changed_and_overwrite(tmp_path, gray_model, color_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    _folder(src)
    first = denoise_dir(gray_model, src, dst)
    assert first.counts()["written"] == 6
    second = denoise_dir(gray_model, src, dst)
    assert second.counts() == {"written": 0, "unchanged": 6, "skipped": 0, "failed": 0}, second.summary()
    # Touched but identical content: the hash decides, nothing is redone.
    os.utime(src / "a/img1.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    # Changed content: redone. Output deleted: redone.
    Image.fromarray(photo(41, 48, 1, seed=99)).save(src / "a/img3.png")
    (dst / "b/img0.png").unlink()
    before = (dst / "b/img2.png").read_bytes()
    third = denoise_dir(gray_model, src, dst)
    status = {r.path: r.status for r in third.results}
    assert status == {"a/img1.png": "unchanged", "a/img3.png": "written", "b/img0.png": "written", "a/img5.png": "unchanged", "b/img2.png": "unchanged", "b/img4.png": "unchanged"}
    assert "content unchanged" in {r.path: r for r in third.results}["a/img1.png"].reason
    assert (dst / "b/img2.png").read_bytes() == before
    # A different model (another identity) redoes everything; so does overwrite.
    assert denoise_dir(color_model, src, dst).counts()["written"] == 6
    assert denoise_dir(color_model, src, dst).counts()["unchanged"] == 6
    assert denoise_dir(color_model, src, dst, overwrite=True).counts()["written"] == 6
    with Ledger(state_dir_for(dst)) as ledger:
        assert ledger.times_done("a/img3.png") == 4 and ledger.times_done("a/img1.png") == 3
        assert ledger.claims() == {}  # every claim released
    assert output_files(dst) == sorted(str(p.relative_to(src)) for p in src.rglob("*.png"))


def test_claims_block_live_runs_and_expire_for_dead_ones(tmp_path, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    _folder(src, 3)
    state = state_dir_for(dst)
    with Ledger(state) as other:  # a live run (this process) holds one file
        assert other.claim(["a/img1.png"], "live-run", 60)[0] == ["a/img1.png"]
        # and a dead process held another: fake a claim by a PID that no longer exists
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
        other.db.execute("INSERT INTO claims VALUES ('b/img0.png', 'crashed-run', ?, ?, NULL, ?)", (__import__("socket").gethostname(), int(dead), time.time() + 3600))
    report = denoise_dir(gray_model, src, dst)
    by = {r.path: r for r in report.results}
    assert by["a/img1.png"].status == "skipped" and "another run (live-run)" in by["a/img1.png"].reason
    assert by["b/img0.png"].status == "written"  # stale claim taken over
    assert by["b/img2.png"].status == "written"
    with Ledger(state) as ledger:
        assert ledger.claims() == {"a/img1.png": "live-run"}
        ledger.release(["a/img1.png"], "live-run")
    assert {r.path: r.status for r in denoise_dir(gray_model, src, dst).results}["a/img1.png"] == "written"


def _open_new_ledger(state: str, go, results) -> None:
    while not go.is_set():
        pass
    try:
        check_ledger(state, timeout=10)
        with Ledger(state, timeout=10) as ledger:
            ledger.claim(["x"], str(os.getpid()), 60)
        results.put("ok")
    except Exception as exc:  # the test reports what went wrong
        results.put(repr(exc))


def test_processes_opening_a_new_ledger_together_all_get_it(tmp_path):
    """Processes that create the same ledger at the same instant wait for each other instead
    of one failing at once with "locked" (SQLite skips its busy wait for the WAL switch)."""
    ctx = multiprocessing.get_context("fork")
    answers = []
    for i in range(24):
        go, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_new_ledger, args=(str(tmp_path / f"s{i}"), go, results)) for _ in range(4)]
        for p in procs:
            p.start()
        time.sleep(0.05)
        go.set()
        answers += [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
    assert answers == ["ok"] * len(answers), [a for a in answers if a != "ok"][:3]


def test_overlapping_runs_write_each_file_once(tmp_path, gray_model):
    """Two processes start the same job together: every file is written exactly once."""
    src, dst = tmp_path / "in", tmp_path / "out"
    _folder(src, 24)
    go = tmp_path / "go"
    code = (
        "import json, sys, time, pathlib; from autoenc.runtime.jobs import denoise_dir\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "while not go.exists(): time.sleep(0.005)\n"
        f"r = denoise_dir({str(gray_model)!r}, {str(src)!r}, {str(dst)!r})\n"
        "print(json.dumps(r.counts()))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
    time.sleep(1.5)  # both imported and waiting
    go.touch()
    counts = [__import__("json").loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(c["written"] for c in counts) + sum(c["unchanged"] for c in counts) >= 24
    assert sum(c["written"] for c in counts) == 24, counts
    with Ledger(state_dir_for(dst)) as ledger:
        assert {p: ledger.times_done(p) for p in ledger.entries()} == {p: 1 for p in output_files(dst)}
        assert ledger.claims() == {}
    for rel in output_files(dst):
        assert np.asarray(Image.open(dst / rel)).shape == np.asarray(Image.open(src / rel)).shape
