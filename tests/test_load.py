"""Load: a 10,000-file job (small images and short clips) through the denoise flow completes,
memory stays flat from 1k to 10k files, Prefect's database grows by batches, not by files, and a
rerun finds everything unchanged. Runs benchmarks/load.py in a fresh process (its own Prefect
home, so the database growth is this job's alone)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_ten_thousand_files(tmp_path, gray_model, audio_model):
    out = tmp_path / "load.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/load.py"), "--files", "10000", "--image-model", str(gray_model), "--audio-model", str(audio_model), "--json", str(out)],
        capture_output=True, text=True, timeout=1200, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    first, big = res["rows"]
    assert first["counts"] == {"written": 1000, "unchanged": 0, "skipped": 0, "failed": 0}
    assert big["counts"] == {"written": 10000, "unchanged": 0, "skipped": 0, "failed": 0}
    assert big["peak_rss_mb"] < first["peak_rss_mb"] + 64, (first, big)  # flat: no per-file growth
    assert big["db_kb_per_1k_files"] < 1500, big  # batched: no per-file rows or logs in Prefect's DB
    assert res["rerun"]["unchanged"] == 10000
