"""Peak memory of `autoenc denoise` with every shipped model: a 4000x3000 RGB JPEG through each
image model and a 1-hour 16 kHz recording through each audio model, each in a fresh process
(the CLI as users run it, in-process mode), at the default memory budget and at a smaller one.
Peak RSS is the child's own maximum resident set (os.wait4; the inputs and the model list are
made in other processes, so the measuring parent stays small: a forked child starts from its
parent's RSS).
Prints a table and writes JSON.

    python benchmarks/memory.py [--budgets 768,256] [--models image-gray,speech]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_inputs(root: Path) -> dict[str, Path]:
    """A 4000x3000 photo-like JPEG and a one-hour FLAC, each alone in its folder."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    img_dir, aud_dir = root / "image", root / "audio"
    img_dir.mkdir()
    aud_dir.mkdir()
    yy, xx = np.mgrid[0:3000, 0:4000]
    base = (0.5 + 0.3 * np.sin(xx / 37.0) * np.cos(yy / 53.0))[..., None] * np.array([1.0, 0.9, 0.8])
    img = np.clip(base + 0.05 * rng.standard_normal((3000, 4000, 3)), 0, 1)
    Image.fromarray((img * 255).astype(np.uint8)).save(img_dir / "photo-12mp.jpg", quality=92)
    t = np.arange(16000 * 3600) / 16000
    voice = 0.1 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    sf.write(aud_dir / "hour.flac", (voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
    return {"image": img_dir, "audio": aud_dir}


def peak_rss(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; returns (peak RSS in MB of that process, wall seconds, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="768,256", help="--memory-mb values (MB); the first is the default")
    ap.add_argument("--models", help="comma-separated shipped names (default: all)")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/memory.json"))
    ap.add_argument("--make-inputs", help=argparse.SUPPRESS)  # internal: write the inputs into this folder and exit
    args = ap.parse_args()
    if args.make_inputs:
        make_inputs(Path(args.make_inputs))
        return
    listed = json.loads(subprocess.run([sys.executable, "-m", "autoenc.cli", "models", "--json"], capture_output=True, text=True, check=True).stdout)  # not in this process: keep it small
    models = [m for m in listed if not args.models or m["name"] in args.models.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, __file__, "--make-inputs", tmp], check=True)
        inputs = {"image": Path(tmp) / "image", "audio": Path(tmp) / "audio"}
        for m in models:
            for budget in budgets if m["modality"] == "image" else budgets[:1]:
                out = Path(tmp) / f"out-{m['name']}-{budget}"
                cmd = [sys.executable, "-m", "autoenc.cli", "denoise", "-q", "--no-ledger", "--memory-mb", str(budget), "--model", m["name"], str(inputs[m["modality"]]), str(out)]
                mb, secs, rc = peak_rss(cmd)
                rows.append({"model": m["name"], "input": "4000x3000 RGB JPEG" if m["modality"] == "image" else "1 h mono FLAC, 16 kHz", "memory_mb": budget, "peak_rss_mb": round(mb), "seconds": round(secs, 1), "exit_code": rc})
                print(f"{m['name']} budget {budget} MB: peak {mb:.0f} MB, {secs:.1f} s, exit {rc}", flush=True)
    print("\n| model | input | --memory-mb | peak RSS MB | seconds |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['memory_mb']} | {r['peak_rss_mb']} | {r['seconds']} |")
    from image_speed import machine  # imports torch: only now, after the measured children ran

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
