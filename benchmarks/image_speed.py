"""Image speed benchmark: onnxruntime vs torch eager throughput (megapixels/s) of a configured
model at 512x512 and 2048x2048, gray, 2 threads. Prints a table and writes JSON.

    python benchmarks/image_speed.py [--config configs/demo-gray.yaml] [--checkpoint best.pt]

Weights do not change the speed of a conv net, so without --checkpoint the config's
architecture is exported with its initial weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[1]

from autoenc.config import load
from autoenc.export import to_onnx
from autoenc.runtime.infer import OnnxDenoiser
from autoenc.models import build_model
from autoenc.checkpoint import load_checkpoint, pack, save_checkpoint


def _time(fn, repeats: int, reduce=statistics.median) -> float:
    """``reduce`` (the median; ``min`` for a peak) of ``repeats`` wall times (s) after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return reduce(times)


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "int8_isa": int8_isa(), "bf16_isa": bf16_isa(), "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__}


def _cpu_has(features: tuple[str, ...]) -> str:
    """Which of ``features`` (Linux /proc/cpuinfo flag names) this CPU has, space-separated."""
    try:
        flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    return " ".join(f for f in features if f in flags)


def int8_isa() -> str:
    """The x86 integer dot-product extensions this CPU has, which decide how its int8 models run
    (without VNNI, see autoenc/runtime/int8_kernels.py): e.g. "avx2", "avx2 avx_vnni", "avx512_vnni"."""
    return _cpu_has(("avx2", "avx512bw", "avx_vnni", "avx512_vnni", "amx_int8"))


def bf16_isa() -> str:
    """The x86 bfloat16 extensions this CPU has, which decide whether ``train.precision: bf16``
    is faster than fp32 (benchmarks/train_speed.py): "" (none), "avx512_bf16", "avx512_bf16 amx_bf16"."""
    return _cpu_has(("avx512_bf16", "amx_bf16"))


def export_for_benchmark(config: str, checkpoint: str | None, tmp: Path):
    """(torch model in eval mode, checkpoint dict, exported ONNX path) for a config's
    architecture with initial weights, or for a trained checkpoint."""
    if checkpoint:
        ckpt_path = Path(checkpoint)
    else:
        cfg = load(config)
        channels = cfg.network_channels
        model = build_model(cfg.model, channels)
        ckpt_path = Path(tmp) / "bench.pt"
        save_checkpoint(ckpt_path, pack(model, {"channels": channels, **cfg.model.kwargs}, cfg, epoch=0, step=0, history=[]))
    model, ckpt = load_checkpoint(ckpt_path)
    onnx_path = Path(tmp) / "bench.onnx"
    to_onnx(ckpt_path, onnx_path, metrics={})
    return model, ckpt, onnx_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs/demo-gray.yaml"))
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/image_speed.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt, onnx_path = export_for_benchmark(args.config, args.checkpoint, Path(tmp))
        c = ckpt["kwargs"]["channels"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        den = OnnxDenoiser(onnx_path, threads=args.threads)
        params = sum(p.numel() for p in model.parameters())
        rows = []
        for size in args.sizes:
            x = np.random.default_rng(0).random((1, getattr(model, "in_channels", c), size, size), dtype=np.float32)  # with any noise-level plane
            xt = torch.from_numpy(x)
            mp = size * size / 1e6
            with torch.inference_mode():
                t_torch = _time(lambda: model(xt), args.repeats)
            t_ort = _time(lambda: sess.run(None, {"input": x}), args.repeats)
            planes = x[0, :c].transpose(1, 2, 0).copy()
            t_tiled = _time(lambda: den.denoise(planes), args.repeats)
            rows.append({"size": size, "torch_eager_mps": mp / t_torch, "ort_whole_mps": mp / t_ort, "ort_tiled_mps": mp / t_tiled, "speedup_ort_vs_torch": t_torch / t_ort})

    print(f"\nmodel {ckpt['model']} {ckpt['kwargs']} ({params} params), {args.threads} threads, median of {args.repeats}\n")
    print(f"{'size':>6} {'torch eager MP/s':>17} {'ORT MP/s':>9} {'ORT tiled MP/s':>15} {'ORT/torch':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['torch_eager_mps']:>17.2f} {r['ort_whole_mps']:>9.2f} {r['ort_tiled_mps']:>15.2f} {r['speedup_ort_vs_torch']:>9.1f}x")
    result = {"benchmark": "image_speed", "model": ckpt["model"], "kwargs": ckpt["kwargs"], "params": params, "threads": args.threads, "rows": rows, "machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
