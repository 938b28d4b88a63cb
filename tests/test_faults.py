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
