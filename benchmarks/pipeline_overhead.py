"""Pipeline overhead benchmark: N small images through the *scheduled* denoise flow (a real
`prefect server start`, `autoenc serve`, a flow run created through the API, as a schedule
would) vs a bare onnxruntime loop over the same files (PIL read -> session.run -> PIL write).
Also the same job with the Dask runner (2 local workers x 1 thread). Prints a table and writes
JSON to benchmarks/results/pipeline_overhead.json.

    python benchmarks/pipeline_overhead.py [--files 1000] [--size 128] [--model runs/x/model.onnx]

Without --model the demo-gray architecture is exported with initial weights (speed does not
depend on the weights). Throughput = files / seconds; "in-run" is the flow run's own
start->end time from the Prefect API, "end to end" adds dispatch (runner poll, subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from image_speed import export_for_benchmark, machine
from pipelines.local_server import LocalServer


def make_files(root: Path, n: int, size: int) -> None:
    """``n`` gray PNG crops (size x size) of the default photo corpus with Gaussian noise."""
    from autoenc.corpus import build_photo_corpus

    photos = [np.asarray(Image.open(p).convert("L"), np.float32) for p in sorted(build_photo_corpus(root / "corpus").glob("*/*.png"))]
    rng = np.random.default_rng(0)
    (root / "in").mkdir()
    for i in range(n):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        noisy = np.clip(img[y : y + size, x : x + size] + rng.normal(0, 25, (size, size)), 0, 255).round().astype(np.uint8)
        sub = root / "in" / f"d{i // 100:02d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(noisy).save(sub / f"img{i:05d}.png")


def bare_loop(model: Path, src: Path, dst: Path, threads: int) -> float:
    """The floor: one session, read -> run -> write, no orchestration. Returns seconds."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    files = sorted(src.rglob("*.png"))
    t0 = time.perf_counter()
    for p in files:
        x = np.asarray(Image.open(p), np.float32)[None, None] / 255.0
        y = sess.run(None, {name: x})[0][0, 0]
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out)
    return time.perf_counter() - t0


def _api(url: str, path: str, body: dict | None = None, tries: int = 10):
    """JSON request; retries 503 (the SQLite-backed server is briefly busy), like Prefect's client."""
    for attempt in range(tries):
        req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body is not None else None, method="POST" if body is not None else "GET", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def scheduled_run(url: str, deployment: str, params: dict) -> dict:
    """Create a flow run of ``deployment`` through the API and wait for it; returns timings."""
    dep = _api(url, f"/deployments/name/denoise/{deployment}")
    t0 = time.perf_counter()
    run = _api(url, f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
    while True:
        fr = _api(url, f"/flow_runs/{run['id']}")
        if fr["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    if fr["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"flow run ended {fr['state']['type']}: {fr['state'].get('message')}")
    return {"end_to_end_s": wall, "in_run_s": fr["total_run_time"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128, help="image edge, pixels")
    ap.add_argument("--model", help="an image .onnx (default: demo-gray architecture, initial weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_overhead.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoenc-overhead-"))
    model = Path(args.model).resolve() if args.model else export_for_benchmark(str(REPO / "configs/demo-gray.yaml"), None, tmp)[2]
    make_files(tmp, args.files, args.size)
    src = tmp / "in"
    bare_loop(model, src, tmp / "warm", args.threads)  # page cache and session warm-up
    bare = bare_loop(model, src, tmp / "bare", args.threads)
    cfg = {"jobs": [
        {"name": "threads", "input_dir": str(src), "output_dir": str(tmp / "out-threads"), "models": [str(model)], "cron": "0 0 1 1 *", "parameters": {"batch_size": args.batch_size, "threads": args.threads}},
        {"name": "threads-2x1", "input_dir": str(src), "output_dir": str(tmp / "out-threads-2x1"), "models": [str(model)], "cron": "0 0 1 1 *", "parameters": {"batch_size": args.batch_size, "threads": 1, "workers": 2}},
        {"name": "dask", "input_dir": str(src), "output_dir": str(tmp / "out-dask"), "models": [str(model)], "cron": "0 0 1 1 *", "parameters": {"batch_size": args.batch_size, "threads": 1, "runner": "dask", "workers": 2}},
    ]}
    (tmp / "schedule.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"pipeline": "bare onnxruntime loop", "seconds": bare, "files_per_s": args.files / bare, "vs_bare": 1.0}]
    with LocalServer(tmp / "server", port=0, ui=False) as url:
        env = dict(os.environ, PREFECT_API_URL=url, PREFECT_HOME=str(tmp / "client"), PREFECT_RUNNER_POLL_FREQUENCY="1")
        serve = subprocess.Popen([sys.executable, "-m", "autoenc.cli", "serve", str(tmp / "schedule.yaml")], env=env, stdout=open(tmp / "serve.log", "w"), stderr=subprocess.STDOUT)
        try:
            for _ in range(120):
                if serve.poll() is not None:
                    raise RuntimeError(f"autoenc serve exited ({serve.returncode}); see {tmp / 'serve.log'}")
                try:
                    _api(url, "/deployments/name/denoise/dask")
                    break
                except OSError:
                    time.sleep(1)
            for job, label in (("threads", f"scheduled flow, thread pool, 1 batch x {args.threads} threads"), ("threads-2x1", "scheduled flow, thread pool, 2 batches x 1 thread"), ("dask", "scheduled flow, Dask 2 workers x 1 thread")):
                t = scheduled_run(url, job, {"overwrite": True})
                rows.append({"pipeline": f"{label} (in-run)", "seconds": t["in_run_s"], "files_per_s": args.files / t["in_run_s"], "vs_bare": bare / t["in_run_s"]})
                rows.append({"pipeline": f"{label} (end to end)", "seconds": t["end_to_end_s"], "files_per_s": args.files / t["end_to_end_s"], "vs_bare": bare / t["end_to_end_s"]})
                again = scheduled_run(url, job, {})
                rows.append({"pipeline": f"{label}, rerun with nothing new (end to end)", "seconds": again["end_to_end_s"], "files_per_s": float("nan"), "vs_bare": float("nan")})
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(60)
    print(f"\n{args.files} gray PNGs of {args.size}x{args.size}, onnxruntime {args.threads} threads, batch {args.batch_size} files/task\n")
    print("| pipeline | seconds | files/s | of bare |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['seconds']:.2f} | {r['files_per_s']:.1f} | {r['vs_bare']:.0%} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine(), "files": args.files, "size": args.size, "threads": args.threads, "batch_size": args.batch_size, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
