"""Scheduled jobs: the schedule config, `autoenc serve` against a real Prefect server, and the
work-pool path (prefect.yaml + `prefect deploy --all` + `prefect worker start --run-once`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from PIL import Image

from autoenc.runtime.typed_config import ConfigError
from autoenc.runtime.jobs import state_dir_for
from autoenc.runtime.ledger import Ledger
from autoenc.runtime.schedule import load_schedule, prefect_yaml
from conftest import REPO, output_files, photo

BIN = Path(sys.executable).parent


def _write(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


def test_schedule_config_validation(tmp_path):
    job = {"name": "photos", "input_dir": "in", "output_dir": "~/out", "models": ["image-gray", "m/speech.onnx"], "cron": "*/15 * * * *"}
    cfg = load_schedule(_write(tmp_path / "s.yaml", {"jobs": [job]}))
    j = cfg.jobs[0]
    assert j.input_dir == str(tmp_path / "in") and j.output_dir == str(Path.home() / "out")
    assert j.models == ["image-gray", str(tmp_path / "m/speech.onnx")]
    assert cfg.server.host == "127.0.0.1"  # loopback unless asked otherwise
    bad = [
        ({**job, "name": "Photos Job"}, "lowercase"),
        ({**job, "interval_seconds": 60}, "exactly one"),
        ({k: v for k, v in job.items() if k != "cron"}, "exactly one"),
        ({**job, "cron": "every 5 minutes"}, "5 fields"),
        ({**job, "parameters": {"batch_size": 0}}, "batch_size"),
        ({**job, "parameters": {"runner": "ray"}}, "runner"),
        ({**job, "colour": 1}, "unknown key"),
    ]
    for tree, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            load_schedule(_write(tmp_path / "bad.yaml", {"jobs": [tree]}))
    with pytest.raises(ConfigError, match="unique"):
        load_schedule(_write(tmp_path / "dup.yaml", {"jobs": [job, {**job, "output_dir": "o2"}]}))
    with pytest.raises(ConfigError, match="same folder tree"):
        load_schedule(_write(tmp_path / "nest.yaml", {"jobs": [job, {**job, "name": "b", "output_dir": "~/out/sub"}]}))


def test_job_settings_are_the_one_definition_of_flags_flow_and_schedule_parameters(tmp_path):
    """CLI flags, the flow's parameters and a schedule job's parameters all come from
    JobSettings: same names, same defaults, same bounds."""
    import argparse
    import inspect

    from autoenc.runtime.job_settings import DEFAULTS, JobSettings, add_flags, from_args
    from pipelines.denoise import denoise_flow

    sig = inspect.signature(denoise_flow.fn).parameters
    flow = {n: p.default for n, p in sig.items() if n not in ("models", "input_dir", "output_dir", "files", "job", "show_progress")}
    assert flow == DEFAULTS.model_dump()
    parser = argparse.ArgumentParser()
    add_flags(parser)
    assert from_args(parser.parse_args([])) == DEFAULTS
    given = from_args(parser.parse_args(["--no-ledger", "--threads", "3", "--runner", "dask", "--state-dir", "/s"]))
    assert (given.incremental, given.threads, given.runner, given.state_dir) == (False, 3, "dask", "/s")
    with pytest.raises(ConfigError, match="threads"):
        from_args(parser.parse_args(["--threads", "0"]))
    job = {"name": "photos", "input_dir": "in", "output_dir": "out", "models": ["image-gray"], "cron": "*/15 * * * *", "parameters": {"threads": 1}}
    params = load_schedule(_write(tmp_path / "s.yaml", {"jobs": [job]})).jobs[0].flow_parameters()
    assert params["threads"] == 1 and not set(params) & (set(JobSettings.model_fields) - {"threads"})  # the rest keep the flow's defaults
    assert set(params) - {"models", "input_dir", "output_dir", "job"} <= set(sig)


def test_serve_refuses_a_bad_job_before_starting_anything(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    for models, msg in ((["no-such-model"], "model not found"), ([str(tmp_path / "bad.onnx")], "cannot load model")):
        for where in (str(src), str(tmp_path / "later")):  # an existing input folder, and one that does not exist yet
            cfg = _write(tmp_path / "s.yaml", {"server": {"data_dir": str(tmp_path / "server")}, "jobs": [{"name": "j", "input_dir": where, "output_dir": str(tmp_path / "out"), "models": models, "interval_seconds": 60}]})
            r = subprocess.run([str(BIN / "autoenc"), "serve", str(cfg)], capture_output=True, text=True, timeout=120, env=dict(os.environ, PREFECT_API_URL=""))
            assert r.returncode == 2 and msg in r.stderr and "job j" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "server").exists() and not (tmp_path / "out").exists()


def test_committed_prefect_yaml_matches_schedule_config():
    """prefect.yaml is generated from configs/schedule.yaml; they must not drift apart."""
    expected = prefect_yaml(load_schedule(REPO / "configs/schedule.yaml"), "autoenc-cpu", "configs/schedule.yaml")
    assert (REPO / "prefect.yaml").read_text() == expected


def _api(url: str, path: str, body: dict | None = None, method: str | None = None):
    """Call the Prefect REST API, retrying on the codes Prefect's own client retries on.

    The server answers 503 for errors a client may retry (a busy or locked SQLite
    database while serve's runs write to it); 429 and 502 likewise.
    """
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body is not None else None, method=method or ("POST" if body is not None else "GET"), headers={"Content-Type": "application/json"})
    for attempt in range(6):
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code not in (429, 502, 503) or attempt == 5:
                raise
            e.close()
            time.sleep(0.5 * 2**attempt)


def _latest_table(url: str, key: str) -> list[dict]:
    arts = _api(url, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1})
    if not arts:
        return []
    data = arts[0]["data"]
    return json.loads(data) if isinstance(data, str) else data


def _wait(what: str, check, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"serve exited early ({proc.returncode}) while waiting for {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _folder(src: Path, n: int = 4) -> None:
    src.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(photo(48, 56, 1, seed=i)).save(src / f"img{i}.png")


def _env(url: str, tmp_path: Path) -> dict:
    return dict(os.environ, PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path / "client-home"), PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")


def test_serve_fires_schedules_incrementally_and_stops_on_sigterm(tmp_path, prefect_server, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    _folder(src)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = _write(tmp_path / "schedule.yaml", {"jobs": [{"name": "serve-test", "input_dir": str(src), "output_dir": str(dst), "models": [str(gray_model)], "interval_seconds": 4, "parameters": {"batch_size": 2}}]})
    proc = subprocess.Popen([str(BIN / "autoenc"), "serve", str(cfg)], env=_env(prefect_server, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        state = state_dir_for(dst)

        def times() -> dict[str, int]:
            if not (state / "ledger.sqlite").exists():
                return {}
            with Ledger(state) as ledger:
                return {p: ledger.times_done(p) for p in ledger.entries()}

        # 1. A scheduled run fires and writes every good file; the bad one is reported.
        _wait("first scheduled run", lambda: len(times()) == 4, 120, proc)
        assert output_files(dst) == [f"img{i}.png" for i in range(4)]
        files = _wait("files table", lambda: _latest_table(prefect_server, "serve-test-files"), 30, proc)
        assert {r["path"]: r["status"] for r in files}["broken.png"] == "failed"
        assert "decode" in {r["path"]: r["reason"] for r in files}["broken.png"]
        # 2. A later run skips everything already done.
        _wait("a run with all files unchanged", lambda: any(r["unchanged"] == 4 and r["written"] == 0 for r in _latest_table(prefect_server, "serve-test-counts")), 60, proc)
        # 3. A changed input is redone by the next run, and only it.
        Image.fromarray(photo(48, 56, 1, seed=42)).save(src / "img2.png")
        _wait("changed file redone", lambda: times().get("img2.png") == 2, 60, proc)
        assert {p: n for p, n in times().items() if p != "img2.png"} == {"img0.png": 1, "img1.png": 1, "img3.png": 1}
        reports = [a["data"] for a in _api(prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["serve-test-report"]}}, "sort": "CREATED_DESC", "limit": 50})]
        assert any("data:image/jpeg;base64," in md and "img2.png" in md for md in reports)  # the redo run's before/after picture
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    dep = _api(prefect_server, "/deployments/name/denoise/serve-test")
    assert dep["paused"] or not any(s["active"] for s in dep["schedules"]), dep  # no runs pile up while nothing serves


def test_serve_starts_and_stops_its_own_local_server(tmp_path, gray_model):
    """No PREFECT_API_URL: serve starts `prefect server start` on 127.0.0.1 with its database in
    server.data_dir, registers the job, and on SIGTERM stops the runner and the server."""
    from pipelines.local_server import free_port, healthy

    port, data = free_port(), tmp_path / "server"
    src = tmp_path / "in"
    _folder(src, 1)
    cfg = _write(tmp_path / "schedule.yaml", {"server": {"port": port, "data_dir": str(data)}, "jobs": [{"name": "own-server", "input_dir": str(src), "output_dir": str(tmp_path / "out"), "models": [str(gray_model)], "cron": "0 3 * * *"}]})
    env = {k: v for k, v in _env("", tmp_path).items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen([str(BIN / "autoenc"), "serve", str(cfg)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        def registered():
            try:
                return _api(url, "/deployments/name/denoise/own-server")
            except OSError:
                return None

        dep = _wait("the job registered on serve's own server", registered, 120, proc)
        assert dep["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
        assert (data / "prefect.db").is_file()  # SQLite in the configured data dir
        # A second serve on the same port is refused at once instead of attaching to this one's server.
        second = subprocess.run([str(BIN / "autoenc"), "serve", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "already answers" in second.stderr, second.stderr[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:]
    assert not healthy(url, 2.0)  # the server went down with it
    assert "stopped" in out


def _pids(match) -> list[int]:
    """PIDs of this machine's processes whose command line (bytes, NUL-separated) or environment satisfies ``match``."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if match((d / "cmdline").read_bytes(), (d / "environ").read_bytes()):
                out.append(int(d.name))
        except OSError:
            continue
    return out


def test_serve_survives_crashes_and_stops_in_seconds(tmp_path):
    """The operator's bad night, with real processes: (1) kill -9 of serve's Prefect server
    mid-run: serve restarts it on the same port and the run completes; (2) kill -9 of serve and
    of its flow-run process mid-run (the server goes down with serve): the next serve marks the
    dead run Crashed, which frees the job's concurrency slot, and the next run does only what
    was not recorded, so no file is done twice; (3) SIGTERM to serve's process group mid-run
    (docker stop, systemd): everything is gone within seconds."""
    from pipelines.local_server import free_port, healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()

    def add(prefix: str, n: int = 40) -> None:  # 512² photos: the shipped model takes a while per file
        for i in range(n):
            Image.fromarray(photo(512, 512, 1, seed=i)).save(src / f"{prefix}{i:02d}.png")

    add("a")
    cfg = _write(tmp_path / "schedule.yaml", {"server": {"port": port, "data_dir": str(tmp_path / "server")}, "jobs": [{"name": "night", "input_dir": str(src), "output_dir": str(dst), "models": ["image-gray"], "cron": "0 3 * * *", "parameters": {"batch_size": 4}}]})
    env = {k: v for k, v in _env("", tmp_path).items() if k != "PREFECT_API_URL"}

    def serve() -> subprocess.Popen:
        log = open(tmp_path / "serve.log", "a")
        proc = subprocess.Popen([str(BIN / "autoenc"), "serve", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait("the job registered", lambda: healthy(url) and _try(lambda: _api(url, "/deployments/name/denoise/night")), 180, proc)
        return proc

    def run() -> str:
        dep = _api(url, "/deployments/name/denoise/night")
        return _api(url, f"/deployments/{dep['id']}/create_flow_run", {})["id"]

    def state(run_id: str) -> str | None:
        got = _try(lambda: _api(url, f"/flow_runs/{run_id}"))
        return got["state"]["type"] if got else None

    def running_with_output(run_id: str, prefix: str) -> bool:
        return state(run_id) == "RUNNING" and len(list(dst.glob(f"{prefix}*.png"))) >= 2

    def times() -> dict[str, int]:
        with Ledger(state_dir_for(dst)) as ledger:
            return {p: ledger.times_done(p) for p in ledger.entries()}

    proc = serve()
    try:
        # 1. The server dies mid-run; serve brings it back and the run completes.
        first = run()
        _wait("the first run under way", lambda: running_with_output(first, "a"), 120, proc)
        server = _pids(lambda cmd, env_: b"server\0start" in cmd and f"--port\0{port}\0".encode() in cmd + b"\0")
        assert len(server) == 1
        os.kill(server[0], signal.SIGKILL)
        _wait("the server restarted and the run completed", lambda: state(first) == "COMPLETED", 180, proc)
        assert len(list(dst.glob("a*.png"))) == 40
        # 2. serve and its flow-run process die mid-run; the server goes down with serve.
        add("b")
        second = run()
        _wait("the second run under way", lambda: running_with_output(second, "b"), 120, proc)
        engine = _pids(lambda cmd, env_: f"PREFECT__FLOW_RUN_ID={second}".encode() in env_)
        assert engine, "the flow-run process"
        for pid in [proc.pid, *engine]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        _wait("serve's server gone with it", lambda: not healthy(url, 1.0), 30)
        proc = serve()
        _wait("the dead run marked Crashed", lambda: state(second) == "CRASHED", 60, proc)
        third = run()  # not cancelled: the crashed run no longer holds the slot
        _wait("the next run completed", lambda: state(third) == "COMPLETED", 180, proc)
        assert len(list(dst.glob("b*.png"))) == 40
        assert set(times().values()) == {1}, times()  # nothing done twice
        # 3. SIGTERM to the process group mid-run: out in seconds, nothing left behind.
        add("c")
        fourth = run()
        _wait("the fourth run under way", lambda: running_with_output(fourth, "c"), 120, proc)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        took = time.monotonic() - t0
        assert proc.returncode == 0 and took < 20, took
        _wait("no server or flow-run process left", lambda: not _pids(lambda cmd, env_: f"--port\0{port}\0".encode() in cmd + b"\0" or f"PREFECT__FLOW_RUN_ID={fourth}".encode() in env_), 15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = (tmp_path / "serve.log").read_text()
    assert "restarting it on" in log and "marked Crashed" in log


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def test_work_pool_deploy_and_worker_run_once(tmp_path, prefect_server, gray_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    _folder(src, 3)
    cfg = _write(tmp_path / "schedule.yaml", {"jobs": [{"name": "pool-test", "input_dir": str(src), "output_dir": str(dst), "models": [str(gray_model)], "cron": "0 3 * * *"}]})
    proj = tmp_path / "proj"
    env = _env(prefect_server, tmp_path)

    def run(*args: str) -> str:
        r = subprocess.run(list(args), env=env, cwd=proj, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return r.stdout

    proj.mkdir()
    run(str(BIN / "autoenc"), "prefect-yaml", str(cfg), "--pool", "test-pool", "--out", "prefect.yaml")
    run(str(BIN / "prefect"), "work-pool", "create", "test-pool", "--type", "process")
    run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    run(str(BIN / "prefect"), "deployment", "run", "denoise/pool-test", "-p", "batch_size=2")
    run(str(BIN / "prefect"), "worker", "start", "--pool", "test-pool", "--run-once")
    assert output_files(dst) == ["img0.png", "img1.png", "img2.png"]
    counts = _latest_table(prefect_server, "pool-test-counts")
    assert counts and counts[0]["written"] == 3


def test_local_server_ui_knows_its_own_port(tmp_path):
    """The UI of a server on a port other than 4200 asks its own API (not 127.0.0.1:4200)."""
    from pipelines.local_server import LocalServer, free_port

    port = free_port()
    assert port != 4200
    with LocalServer(tmp_path / "srv", "127.0.0.1", port, startup_timeout=120, ui=True) as url:
        base = url.removesuffix("/api")
        with urllib.request.urlopen(f"{base}/ui-settings", timeout=10) as r:
            settings = json.loads(r.read())
        assert settings["api_url"] == f"http://127.0.0.1:{port}/api"
        with urllib.request.urlopen(base + "/", timeout=10) as r:  # the UI itself is served there
            assert r.status == 200 and b"<html" in r.read(2000).lower()
