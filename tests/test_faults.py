"""Faults a nightly job must survive: inputs swapped for FIFOs after planning, a model replaced
mid-run, folders the worker may not read (as an unprivileged user: root would bypass them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from autoenc.runtime.jobs import plan_job, run_plan, state_dir_for
from autoenc.runtime.ledger import Ledger
from conftest import REPO, make_model_file, photo


def _folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(photo(40, 48, 1, seed=i)).save(root / f"img{i}.png")
    return root


def test_an_input_swapped_for_a_fifo_after_planning_is_refused_not_waited_on(tmp_path, gray_model):
    src = _folder(tmp_path / "in", 3)
    plan = plan_job(gray_model, src, tmp_path / "out")
    (src / "img1.png").unlink()
    os.mkfifo(src / "img1.png")  # nobody will ever write to it
    t0 = time.monotonic()
    report = run_plan(plan)
    assert time.monotonic() - t0 < 30
    by = {r.path: r for r in report.results}
    assert by["img1.png"].status == "failed" and "not a regular file" in by["img1.png"].reason
    assert by["img0.png"].status == by["img2.png"].status == "written"


def test_outputs_are_recorded_under_the_model_bytes_that_made_them(tmp_path, gray_model):
    """A model file replaced between planning and denoising (a deploy): the ledger records the
    new model's identity, so putting the old one back redoes those files instead of keeping them."""
    src, dst = _folder(tmp_path / "in", 2), tmp_path / "out"
    model = tmp_path / "model.onnx"
    shutil.copy(gray_model, model)
    other = make_model_file(tmp_path / "other", channels=1, seed=7)
    plan = plan_job(model, src, dst)
    shutil.copy(other, model)  # replaced after planning
    assert run_plan(plan).counts()["written"] == 2
    from autoenc.runtime.session import OnnxModel

    with Ledger(state_dir_for(dst)) as ledger:
        assert {e.model_id for e in ledger.entries().values()} == {OnnxModel(other).identity}
    shutil.copy(gray_model, model)  # the old model is back
    again = run_plan(plan_job(model, src, dst))
    assert again.counts()["written"] == 2 and again.counts()["unchanged"] == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to an unprivileged user")
def test_unreadable_folders_are_reported_with_the_right_reason(gray_model):
    """As an unprivileged user: a folder it may not list and a folder it may list but not
    enter are reported as failed with the real reason; the job exits 3; the rest is written."""
    base = Path(tempfile.mkdtemp(prefix="autoenc-perm-"))
    try:
        base.chmod(0o755)
        src = _folder(base / "in", 2)
        _folder(src / "secret", 2).chmod(0o000)  # no read, no enter
        _folder(src / "listonly", 2).chmod(0o644)  # read (list) but no enter
        model = base / "model.onnx"
        shutil.copy(gray_model, model)
        model.chmod(0o644)
        (base / "out").mkdir()
        os.chown(base / "out", 65534, 65534)
        report = base / "out" / "report.json"
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "autoenc.cli", "denoise", "--no-ledger", "--model", str(model), str(src), str(base / "out"), "--json", str(report)]
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"HOME": str(base)}
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert r.returncode == 3, r.stdout + r.stderr
        by = {x["path"]: x for x in json.loads(report.read_text())["results"]}
        assert by["secret/"]["status"] == "failed" and "Permission denied" in by["secret/"]["reason"]
        for name in ("listonly/img0.png", "listonly/img1.png"):
            assert by[name]["status"] == "failed" and "Permission denied" in by[name]["reason"] and "symlink" not in by[name]["reason"]
        assert by["img0.png"]["status"] == by["img1.png"]["status"] == "written"
    finally:
        for d in (base / "in" / "secret", base / "in" / "listonly"):
            if d.exists():
                d.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of our own (a full disk on demand), unmounted afterwards; skips where
    mounting is not allowed."""
    mounted = []

    def make(name: str, size: str, *opts: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *opts]), "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([sys.executable, "-m", "autoenc.cli", "denoise", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_full_output_disk_reports_the_true_split_and_a_rerun_finishes(tmp_path, tmpfs, gray_model):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(40):
        Image.fromarray(photo(96, 128, 1, seed=i)).save(src / f"img{i:02d}.png")
    out = tmpfs("out", "256k")
    report = tmp_path / "report.json"
    r = _cli("--model", str(gray_model), str(src), str(out), "--state-dir", str(tmp_path / "state"), "--json", str(report))
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    results = json.loads(report.read_text())["results"]
    written = {x["path"] for x in results if x["status"] == "written"}
    failed = [x for x in results if x["status"] == "failed"]
    assert written and failed and len(written) + len(failed) == 40
    assert all("No space left on device" in x["reason"] for x in failed), failed[:3]
    assert written == {p.name for p in out.glob("*.png")}  # every output it claims is there, and complete
    for name in written:
        Image.open(out / name).load()
    subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)
    again = _cli("--model", str(gray_model), str(src), str(out), "--state-dir", str(tmp_path / "state"))
    assert again.returncode == 0 and f"{len(failed)} written, {len(written)} unchanged" in again.stdout, again.stdout
    with Ledger(tmp_path / "state") as ledger:
        assert all(ledger.times_done(f"img{i:02d}.png") == 1 for i in range(40))


def _fill(disk: Path) -> None:
    """Write zeros into ``disk`` until it is full."""
    try:
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


def test_a_state_disk_that_fills_mid_run_keeps_the_outputs_and_says_so(tmp_path, tmpfs, gray_model):
    """The ledger's disk fills after the batch claimed its files: every output is still written
    and reported as written; those the ledger could not record say the next run redoes them.
    A ledger that cannot even take its claims fails the files with that reason and touches
    nothing (rather than risk two runs doing one file)."""
    src = _folder(tmp_path / "in", 30)
    state = tmpfs("state", "1m")
    plan = plan_job(gray_model, src, tmp_path / "out", state_dir=state)
    filled = []
    report = run_plan(plan, on_file=lambda r: filled or (_fill(state), filled.append(1)))
    assert report.counts()["written"] == 30, [r for r in report.results if r.status != "written"][:3]
    assert len(list((tmp_path / "out").glob("*.png"))) == 30
    assert any("not recorded in the ledger" in r.reason and "full" in r.reason for r in report.results)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)  # now no claim can be taken at all
    blocked = run_plan(plan)
    assert blocked.counts()["failed"] == 30 and all("nothing was done" in r.reason for r in blocked.results)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")} == before


def test_jobs_that_cannot_run_exit_2_naming_the_path(tmp_path, tmpfs, gray_model):
    src = _folder(tmp_path / "in", 2)
    readonly = tmpfs("ro", "1m", "ro")
    r = _cli("--model", str(gray_model), str(src), str(readonly / "out"))
    assert r.returncode == 2 and str(readonly) in r.stderr and "Read-only" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    full = tmpfs("full", "16k")
    _fill(full)
    r = _cli("--model", str(gray_model), str(src), str(tmp_path / "out"), "--state-dir", str(full / "state"))
    assert r.returncode == 2 and str(full / "state") in r.stderr and "space" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


def test_a_corrupt_ledger_is_set_aside_and_a_locked_one_named(tmp_path, gray_model):
    import sqlite3

    from autoenc.runtime.ledger import LedgerError, check_ledger

    src, dst = _folder(tmp_path / "in", 2), tmp_path / "out"
    state = state_dir_for(dst)
    state.mkdir(parents=True)
    (state / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    r = _cli("--model", str(gray_model), str(src), str(dst))
    assert r.returncode == 0 and "moved aside" in r.stderr, r.stderr
    assert list(state.glob("ledger.sqlite.corrupt-*")) and len(list(dst.glob("*.png"))) == 2
    holder = sqlite3.connect(state / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerError, match="locked by another process"):
            check_ledger(state, timeout=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_killed_prefect_cli_run_leaves_no_server_behind(tmp_path, gray_model):
    """`autoenc denoise --prefect` without PREFECT_API_URL runs the job as a flow run on a
    temporary Prefect server it stops at the end; kill -9 of the CLI (a timeout, the OOM killer)
    takes that server down with it."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(64, 64, 1)).save(src / "a.png")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    done = subprocess.run([str(Path(sys.executable).parent / "autoenc"), "denoise", "--prefect", "--json", "-", "--model", str(gray_model), str(src), str(tmp_path / "done")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and json.loads(done.stdout)["counts"]["written"] == 1, done.stderr[-2000:]
    assert (tmp_path / "done" / "a.png").is_file()
    cli = subprocess.Popen([str(Path(sys.executable).parent / "autoenc"), "denoise", "--prefect", "-q", "--model", str(gray_model), str(src), str(tmp_path / "out")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def servers() -> list[int]:
        found = []
        for d in Path("/proc").glob("[0-9]*"):
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == cli.pid and b"server\0start" in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
        return found

    try:
        deadline = time.monotonic() + 120
        while not (found := servers()) and cli.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found, "the CLI's temporary server never started"
        cli.kill()
        cli.wait(10)

        def alive(pid: int) -> bool:
            try:
                return b"server\0start" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False

        deadline = time.monotonic() + 15
        while any(map(alive, found)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(alive, found)), "the temporary server outlived the killed CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
