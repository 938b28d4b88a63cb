"""`autoenc denoise` as people use it: files or folders in, dry runs, quiet and JSON output,
exit codes, Ctrl-C, a server that does not answer, -v after the subcommand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
from PIL import Image

from autoenc.cli import main
from autoenc.runtime.jobs import state_dir_for
from autoenc.runtime.ledger import Ledger
from conftest import REPO, output_files, photo

ENV = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def _autoenc(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoenc.cli", *args], capture_output=True, text=True, cwd=REPO, env=env or ENV, timeout=timeout)


def test_files_instead_of_a_folder(tmp_path, gray_model, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    Image.fromarray(photo(40, 48, 1)).save(tmp_path / "a" / "one.png")
    Image.fromarray(photo(40, 48, 1, seed=1)).save(tmp_path / "b" / "c" / "two.png")
    # One file: it lands under its own name.
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "a" / "one.png"), str(tmp_path / "single")]) == 0
    assert output_files(tmp_path / "single") == ["one.png"]
    # Files from two folders keep their paths below the folder they share.
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "a" / "one.png"), str(tmp_path / "b" / "c" / "two.png"), str(tmp_path / "many")]) == 0
    assert output_files(tmp_path / "many") == ["a/one.png", "b/c/two.png"]
    # An output that would land on its input, a missing file, and a file as OUTPUT are refused (exit 2), nothing written.
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "a" / "one.png"), str(tmp_path / "a")]) == 2
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "a" / "none.png"), str(tmp_path / "x")]) == 2
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "a"), str(tmp_path / "b" / "c" / "two.png")]) == 2
    assert not (tmp_path / "x").exists()


def test_dry_run_quiet_and_json_to_stdout(tmp_path, gray_model):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(photo(40, 48, 1, seed=i)).save(src / f"p{i}.png")
    (src / "notes.txt").write_text("x")
    dry = _autoenc("denoise", "--model", str(gray_model), str(src), str(tmp_path / "out"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would denoise 3 file(s)" in dry.stdout and "notes.txt: not a supported" in dry.stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing, not even the ledger
    quiet = _autoenc("denoise", "-q", "--model", str(gray_model), str(src), str(tmp_path / "out"))
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    again = _autoenc("denoise", "--model", str(gray_model), str(src), str(tmp_path / "out"), "--json", "-", "-v")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"written": 0, "unchanged": 3, "skipped": 1, "failed": 0}
    assert "0 written, 3 unchanged" in again.stderr and "DEBUG" in again.stderr  # -v after the subcommand
    assert "httpx" not in again.stderr and "prefect" not in again.stderr.lower()  # -v is autoenc's detail only


def test_unreachable_server_is_one_clear_line(tmp_path, gray_model):
    from pipelines.local_server import free_port

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(40, 48, 1)).save(src / "p.png")
    r = _autoenc("denoise", "--model", str(gray_model), str(src), str(tmp_path / "out"), env={**ENV, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not answer" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_cleanly_with_a_partial_summary_and_a_rerun_finishes(tmp_path, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(80):
        Image.fromarray(photo(192, 256, 1, seed=i)).save(src / f"img{i:03d}.png")
    proc = subprocess.Popen([sys.executable, "-m", "autoenc.cli", "denoise", "--model", str(gray_model), "--threads", "1", "--batch-size", "8", str(src), str(dst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    deadline = time.monotonic() + 120
    while len(list(dst.glob("*.png"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    stopped_in = time.monotonic() - t0
    assert proc.returncode == 130, err[-2000:]
    assert stopped_in < 10, stopped_in  # the file in hand, then out (seconds, not minutes)
    assert "Traceback" not in err and "interrupted:" in out and "not reached" in out
    done = len(output_files(dst))
    assert 5 <= done < 80
    with Ledger(state_dir_for(dst)) as ledger:
        assert ledger.claims() == {}  # claims released
    rerun = _autoenc("denoise", "--model", str(gray_model), str(src), str(dst))
    assert rerun.returncode == 0 and f"{80 - done} written, {done} unchanged" in rerun.stdout, rerun.stdout
    with Ledger(state_dir_for(dst)) as ledger:
        assert all(ledger.times_done(f"img{i:03d}.png") == 1 for i in range(80))  # nothing done twice


def test_models_check_int8_says_how_each_int8_model_runs_on_this_cpu():
    proc = _autoenc("models", "--check-int8", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert {n for n, m in listed.items() if m["int8_kernels"]} == {n for n in listed if n.endswith("-int8")}
    assert {m["int8_kernels"] for n, m in listed.items() if n.endswith("-int8")} <= {"fused", "fused, uint8 x uint8"}  # never the slow unfused graph
    table = _autoenc("models", "--check-int8")
    assert table.returncode == 0 and "int8 on this CPU" in table.stdout


def test_models_config_writes_out_the_training_config_of_a_model(gray_model, tmp_path, capsys):
    """`autoenc models --config M` writes the config M's last stage trained with, as YAML that
    loads back to the same config hash; a model without one says so and fails."""
    from autoenc.config import load
    from autoenc.runtime.session import model_info

    assert main(["models", "--config", str(gray_model)]) == 0
    (tmp_path / "again.yaml").write_text(capsys.readouterr().out)
    assert load(tmp_path / "again.yaml").hash() == model_info(gray_model).config_hash
    proto = onnx.load(str(gray_model))
    kept = [p for p in proto.metadata_props if p.key != "autoenc.config"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "older.onnx"))
    assert main(["models", "--config", str(tmp_path / "older.onnx")]) == 1
    assert "before models kept their training config" in capsys.readouterr().err
