"""Ad-hoc latency: wall time of `autoenc denoise` on one small photo, as a user types it, in a
fresh process each time: in this process (no PREFECT_API_URL, the default), and as a flow run
on a temporary Prefect server (--prefect, what every run cost before). Median of --repeats.
Prints a table and writes JSON.

    python benchmarks/adhoc.py [--model image-color] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from image_speed import machine

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="image-color")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/adhoc.json"))
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        yy, xx = np.mgrid[0:480, 0:640]
        img = np.clip((0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 13.0))[..., None] + 0.05 * np.random.default_rng(0).standard_normal((480, 640, 3)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(photo, quality=90)
        for mode, extra in (("in-process (default)", []), ("flow run, temporary server (--prefect)", ["--prefect"])):
            times = []
            for i in range(args.repeats if not extra else max(2, args.repeats // 2)):
                out = Path(tmp) / f"out-{len(rows)}-{i}"
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "autoenc.cli", "denoise", "-q", "--model", args.model, str(photo), str(out), *extra], env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if r.returncode:
                    sys.exit(f"{mode} failed: {r.stderr[-2000:]}")
            rows.append({"mode": mode, "model": args.model, "photo": "640x480 JPEG", "median_seconds": round(statistics.median(times), 2), "runs": [round(t, 2) for t in times]})
            print(f"{mode}: median {rows[-1]['median_seconds']} s over {len(times)} runs", flush=True)
    print("\n| mode | model | median wall s (one 640x480 photo) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['model']} | {r['median_seconds']} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
