"""Audio speed benchmark: real-time factor of onnxruntime (streaming, as deployed) vs torch
eager on 60 s of 16 kHz audio, 2 threads; and peak RSS of a fresh process denoising a 1-hour
file. Prints a table and writes JSON.

    python benchmarks/audio_speed.py [--config configs/speech.yaml] [--checkpoint best.pt] [--hour-minutes 60]

Weights do not change the speed of a conv net, so without --checkpoint the config's
architecture is exported with its initial weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]

from autoenc.runtime.audio_infer import OnnxAudioDenoiser
from image_speed import _time, export_for_benchmark, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs/speech.yaml"))
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--hour-minutes", type=float, default=60.0, help="length of the long file for the memory test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/audio_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, ckpt, onnx_path = export_for_benchmark(args.config, args.checkpoint, tmp)
        sr = 16000
        x = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * sr))).astype(np.float32)
        with torch.inference_mode():
            t_torch = _time(lambda: model(torch.from_numpy(x)[None, None]), args.repeats)
        den = OnnxAudioDenoiser(onnx_path, threads=args.threads)
        t_ort = _time(lambda: den.denoise(x[:, None]), args.repeats)

        long_path = tmp / "hour.wav"
        n = int(args.hour_minutes * 60 * sr)
        with sf.SoundFile(long_path, "w", sr, 1, subtype="PCM_16") as f:
            block = (0.1 * np.random.default_rng(1).standard_normal(sr * 60)).astype(np.float32)
            for i in range(0, n, len(block)):
                f.write(block[: n - i])
        code = (
            "import re, time; from pathlib import Path; from autoenc.runtime.audio_infer import OnnxAudioDenoiser\n"
            f"d = OnnxAudioDenoiser({str(onnx_path)!r}, threads={args.threads}); t = time.perf_counter()\n"
            f"d.denoise_file({str(long_path)!r}, {str(tmp / 'hour_out.wav')!r}, max_seconds=1e9)\n"
            "print(time.perf_counter() - t, re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
        long_s, hwm_kb = out.stdout.split()
        assert sf.info(str(tmp / "hour_out.wav")).frames == n

    params = sum(p.numel() for p in model.parameters())
    result = {
        "benchmark": "audio_speed",
        "model": ckpt["model"], "kwargs": ckpt["kwargs"], "params": params, "threads": args.threads,
        "seconds_of_audio": args.seconds,
        "torch_eager_rtf": t_torch / args.seconds, "ort_streaming_rtf": t_ort / args.seconds, "window_seconds": den.window / den.info.sample_rate,
        "ort_speedup_vs_torch": t_torch / t_ort,
        "long_file_minutes": args.hour_minutes, "long_file_rtf": float(long_s) / (args.hour_minutes * 60),
        "long_file_peak_rss_mb": int(hwm_kb) / 1024,
        "machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"\nmodel {ckpt['model']} {ckpt['kwargs']} ({params} params), {args.threads} threads, median of {args.repeats}\n")
    print(f"{'path':<40} {'RTF':>8} {'x real time':>12}")
    for name, rtf in (("torch eager (whole 60 s)", result["torch_eager_rtf"]), (f"onnxruntime streaming ({result['window_seconds']:.1f} s windows)", result["ort_streaming_rtf"]), (f"ORT, {args.hour_minutes:.0f}-min file from disk", result["long_file_rtf"])):
        print(f"{name:<40} {rtf:>8.4f} {1 / rtf:>11.0f}x")
    print(f"\npeak RSS denoising the {args.hour_minutes:.0f}-minute file: {result['long_file_peak_rss_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
