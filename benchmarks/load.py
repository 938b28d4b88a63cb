"""Load benchmark: a 1,000-file and then a 10,000-file denoise job (small images and short
clips: 90% 32x32 gray PNGs, 10% 0.1 s 16 kHz WAVs) through the denoise flow in this process,
with Prefect's temporary local server. Reports throughput, peak RSS after each job (memory
must stay flat across files), and how much Prefect's SQLite database grew per job (batching
keeps it to a few rows per 64 files). Prints a table and writes JSON.

    python benchmarks/load.py [--files 10000] [--image-model M.onnx --audio-model A.onnx] [--json out.json]

Without models, untrained demo-gray / demo-speech architectures are exported (needs torch).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="autoenc-load-prefect-")
os.environ["PREFECT_HOME"] = _HOME  # before Prefect is imported: a fresh database to measure
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine starts it slowly

import numpy as np
import soundfile as sf
from PIL import Image


def make_files(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"d{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 10 == 9:
            sf.write(d / f"clip{i:05d}.wav", (rng.standard_normal(1600) * 0.1).astype(np.float32), 16000, subtype="PCM_16")
        else:
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(d / f"img{i:05d}.png")


def peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def db_mb() -> float:
    return sum(p.stat().st_size for p in Path(_HOME).glob("prefect.db*")) / 1e6


def default_models(tmp: Path) -> tuple[str, str]:
    from image_speed import export_for_benchmark

    image = export_for_benchmark(str(REPO / "configs/demo-gray.yaml"), None, tmp / "img")[2]
    audio = export_for_benchmark(str(REPO / "configs/demo-speech.yaml"), None, tmp / "aud")[2]
    return str(image), str(audio)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--first", type=int, default=1_000, help="size of the first job")
    ap.add_argument("--image-model")
    ap.add_argument("--audio-model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/load.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoenc-load-"))
    models = [args.image_model, args.audio_model] if args.image_model else list(default_models(tmp))
    make_files(tmp / "first", args.first, seed=1)
    make_files(tmp / "all", args.files, seed=2)
    from pipelines.denoise import denoise_flow

    rows = []
    denoise_flow(models, str(tmp / "first"), str(tmp / "warm"), batch_size=args.batch_size)  # server start, sessions
    for name in ("first", "all"):
        db0 = db_mb()
        t0 = time.perf_counter()
        out = denoise_flow(models, str(tmp / name), str(tmp / f"out-{name}"), batch_size=args.batch_size)
        secs = time.perf_counter() - t0
        n = sum(out["counts"].values())
        rows.append({"files": n, "counts": out["counts"], "seconds": secs, "files_per_s": n / secs, "peak_rss_mb": peak_rss_mb(), "db_growth_mb": db_mb() - db0, "db_kb_per_1k_files": (db_mb() - db0) * 1e6 / n})
    t0 = time.perf_counter()
    again = denoise_flow(models, str(tmp / "all"), str(tmp / "out-all"), batch_size=args.batch_size)
    rerun = {"files": sum(again["counts"].values()), "unchanged": again["counts"]["unchanged"], "seconds": time.perf_counter() - t0}
    print("\n| files | written | failed | seconds | files/s | peak RSS MB | Prefect DB growth MB | DB kB per 1k files |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['files']} | {r['counts']['written']} | {r['counts']['failed']} | {r['seconds']:.1f} | {r['files_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['db_growth_mb']:.2f} | {r['db_kb_per_1k_files']:.0f} |")
    print(f"\nrerun of the {rerun['files']}-file job with nothing new: {rerun['unchanged']} unchanged in {rerun['seconds']:.1f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "rerun": rerun, "batch_size": args.batch_size}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
