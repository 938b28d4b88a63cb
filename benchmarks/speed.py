"""Speed benchmark for the shipped models (issue 5's speed targets), side by side in one process:

- images: onnxruntime fp32 and int8 at 1 and 2 threads (bare session on a 512x512 input, and
  the deployed tiled path on 1024x1024), torch eager with the same architecture, and BM3D on a
  256x256 crop (s/MP; `bm3d` is benchmark-only);
- speech: real-time factor of the deployed streaming path (fp32, int8; 1 and 2 threads) and of
  torch eager, on 30 s of 16 kHz audio;
- the work each model does (conv multiply-accumulates per pixel / sample, counted with torch
  hooks on the same architecture) and the fraction of the CPU's peak it reaches: ops/s achieved
  (2 x MACs x throughput) over the best 2048² matrix product of the same precision and thread
  count (fp32: torch or onnxruntime MatMul; int8: onnxruntime MatMulInteger), the most this
  machine does in practice. Deployed rows count the work of the image itself, not the tile
  overlap computed twice, so theirs are effective rates.

Times are the median of ``--repeats`` runs after a warm-up (half as many for the deployed image
path). Prints tables, writes JSON.

    python benchmarks/speed.py [--image-models image-gray image-color] [--speech-model speech]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[1]

from autoenc.runtime.audio_infer import OnnxAudioDenoiser
from autoenc.config import load
from autoenc.runtime.infer import OnnxDenoiser
from autoenc.models import build_model
from autoenc.runtime.session import model_info, resolve_model
from autoenc.weight_storage import PARAMETER_SUFFIXES, as_fp32
from image_speed import _time, machine

log = logging.getLogger("speed")


def gemm_peaks(threads: int, n: int = 2048, repeats: int = 7) -> dict[str, float]:
    """The best matrix-product throughput this CPU reaches with ``threads`` threads, as the
    reference 'peak' (G op/s, a multiply-add = 2 ops): fp32 = the better of torch (oneDNN/MKL)
    and onnxruntime's MatMul (MLAS); int8 = onnxruntime's MatMulInteger (uint8 x int8, the
    VNNI kernels QLinearConv uses). n x n by n x n, fastest of ``repeats``."""
    from onnx import TensorProto, helper, numpy_helper

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch_fp32 = 2 * n**3 / _time(lambda: a @ b, repeats, min) / 1e9
    rng = np.random.default_rng(0)

    def ort_gemm(op: str, a_type, a: np.ndarray, b: np.ndarray) -> float:
        out_type = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["C"])], "gemm",
            [helper.make_tensor_value_info("A", a_type, [n, n])], [helper.make_tensor_value_info("C", out_type, [n, n])],
            [numpy_helper.from_array(b, "B")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return 2 * n**3 / _time(lambda: sess.run(None, {"A": a}), repeats, min) / 1e9

    ort_fp32 = ort_gemm("MatMul", TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32))
    ort_int8 = ort_gemm("MatMulInteger", TensorProto.UINT8, rng.integers(0, 255, (n, n), dtype=np.uint8), rng.integers(-128, 127, (n, n), dtype=np.int8))
    return {"fp32": max(torch_fp32, ort_fp32), "int8": ort_int8, "torch_fp32": torch_fp32, "ort_fp32": ort_fp32}


def conv_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv1d/Conv2d in one forward pass on ``x``."""
    total = 0

    def hook(mod, _inp, out):
        nonlocal total
        k = int(np.prod(mod.kernel_size))
        total += out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def onnx_conv_macs(path: Path, x: np.ndarray) -> int:
    """Multiply-accumulates of every Conv of the fp32 ONNX model at ``path`` in one run on ``x``:
    each conv's output size times its weight's (input channels / groups x kernel) size, the
    shapes read from onnxruntime with every conv's output and weight exposed as graph outputs (for
    a shipped model with no ``configs/<name>.yaml`` to build its torch twin from)."""
    model = as_fp32(onnx.load(str(path)))
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    known = {o.name for o in model.graph.output}
    for name in dict.fromkeys(t for n in convs for t in (n.output[0], n.input[1]) if t not in dims and t not in known):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: list(v.shape) for n, v in zip(names, sess.run(None, {model.graph.input[0].name: x}))}
    shape = lambda t: dims[t] if t in dims else shapes[t]  # noqa: E731
    return sum(int(np.prod(shape(n.output[0]))) * int(np.prod(shape(n.input[1])[1:])) for n in convs)


def made_from(onnx_path: Path) -> Path | None:
    """The config in ``configs/`` the model was trained with: the one whose hash is the model's
    (its metadata's ``config_hash``), or None (a model made from an older state of a config)."""
    want = model_info(onnx_path).config_hash
    for path in sorted((REPO / "configs").glob("*.yaml")):
        try:
            cfg = load(path)
        except ValueError:  # schedule.yaml and other non-run YAML
            continue
        if cfg.hash() == want:
            return path
    return None


def torch_twin(name: str, onnx_path: Path) -> torch.nn.Module | None:
    """The shipped model's architecture in torch, initial weights (weights do not change a conv
    net's speed): built from the config it was trained with (:func:`made_from`), else from
    ``configs/<name>.yaml``, whichever first builds the ONNX file's parameter count. None where
    neither does (a model made from an older state of its config, e.g. image-color-fast): no
    torch rows."""
    n_onnx = sum(int(np.prod(t.dims)) for t in as_fp32(onnx.load(str(onnx_path))).graph.initializer if t.name.endswith(PARAMETER_SUFFIXES))
    for config in dict.fromkeys(c for c in (made_from(onnx_path), REPO / "configs" / f"{name}.yaml") if c is not None and c.exists()):
        cfg = load(config)
        model = build_model(cfg.model, cfg.network_channels).eval()
        if sum(p.numel() for p in model.parameters()) == n_onnx:
            return model
        log.warning("%s builds another architecture than %s (not %d parameters)", config.relative_to(REPO), onnx_path, n_onnx)
    log.warning("no config in configs/ builds %s's architecture: no torch eager rows; MACs counted from the ONNX graph", name)
    return None


def bare_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def image_rows(name: str, args, peak: dict[int, float]) -> tuple[list[dict], dict]:
    """Throughput rows for one shipped image model and its int8 twin."""
    fp32 = resolve_model(name)
    int8 = fp32.with_name(fp32.stem + "-int8.onnx")
    model = torch_twin(name, fp32)
    info = model_info(fp32)
    c = info.channels
    size, tiled = args.size, args.tiled_size
    x = np.random.default_rng(0).random((1, c + int(info.noise_level_input), size, size), dtype=np.float32)  # with any noise-level plane
    planes = np.random.default_rng(1).random((tiled, tiled, c), dtype=np.float32)
    macs_px = (conv_macs(model, torch.from_numpy(x)) if model is not None else onnx_conv_macs(fp32, x)) / (size * size)
    mp, mp_tiled = size * size / 1e6, tiled * tiled / 1e6
    rows = []
    for threads in args.threads:
        if model is not None:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                t = _time(lambda: model(torch.from_numpy(x)), args.repeats)
            rows.append({"model": name, "runtime": "torch eager", "threads": threads, "path": f"whole {size}²", "mp_per_s": mp / t})
        for kind, path in (("fp32", fp32), ("int8", int8)):
            if not path.exists():
                continue
            sess = bare_session(path, threads)
            t = _time(lambda: sess.run(None, {"input": x}), args.repeats)
            rows.append({"model": name, "runtime": f"onnxruntime {kind}", "threads": threads, "path": f"whole {size}²", "mp_per_s": mp / t})
            den = OnnxDenoiser(path, threads=threads)
            t = _time(lambda: den.denoise(planes), max(1, args.repeats // 2))
            rows.append({"model": name, "runtime": f"onnxruntime {kind}", "threads": threads, "path": f"deployed, tiled {tiled}²", "mp_per_s": mp_tiled / t})
    for r in rows:
        r["gflops"] = 2 * macs_px * r["mp_per_s"] * 1e6 / 1e9
        r["of_gemm_peak"] = r["gflops"] / peak[r["threads"]]["int8" if "int8" in r["runtime"] else "fp32"]
    params = sum(int(np.prod(t.dims)) for t in as_fp32(onnx.load(str(fp32))).graph.initializer if t.name.endswith(PARAMETER_SUFFIXES))
    return rows, {"model": name, "channels": c, "params": params, "macs_per_pixel": macs_px}


def bm3d_seconds_per_mp(size: int = 256, sigma: float = 25.0) -> float:
    """BM3D (PyPI ``bm3d``, told the true sigma) on a gray photo crop, s/MP."""
    import bm3d
    from PIL import Image

    from autoenc.corpus import build_photo_corpus

    clean = np.asarray(Image.open(build_photo_corpus() / "scikit-image/camera.png").convert("L"), np.float32)[:size, :size] / 255
    noisy = clean + np.random.default_rng(0).normal(0, sigma / 255, clean.shape).astype(np.float32)
    t0 = time.perf_counter()
    bm3d.bm3d(noisy, sigma_psd=sigma / 255)
    return (time.perf_counter() - t0) / (size * size / 1e6)


def speech_rows(name: str, args, peak: dict[int, float]) -> tuple[list[dict], dict]:
    fp32 = resolve_model(name)
    int8 = fp32.with_name(fp32.stem + "-int8.onnx")
    model = torch_twin(name, fp32)
    if model is None:
        raise SystemExit(f"{name}: no config in configs/ builds its architecture, and the speech rows need its torch twin (MACs per sample, torch eager)")
    sr, secs = 16000, args.audio_seconds
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(secs * sr))).astype(np.float32)
    macs_sample = conv_macs(model, torch.from_numpy(audio[: sr * 4])[None, None]) / (sr * 4)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            t = _time(lambda: model(torch.from_numpy(audio)[None, None]), args.repeats)
        rows.append({"model": name, "runtime": "torch eager", "threads": threads, "path": f"whole {secs:g} s", "rtf": t / secs})
        for kind, path in (("fp32", fp32), ("int8", int8)):
            if path.exists():
                sess = bare_session(path, threads)
                t = _time(lambda: sess.run(None, {"input": audio[None, None]}), args.repeats)
                rows.append({"model": name, "runtime": f"onnxruntime {kind}", "threads": threads, "path": f"whole {secs:g} s", "rtf": t / secs})
                den = OnnxAudioDenoiser(path, threads=threads)
                t = _time(lambda: den.denoise(audio[:, None]), args.repeats)
                rows.append({"model": name, "runtime": f"onnxruntime {kind}", "threads": threads, "path": f"deployed, streaming {den.window / den.info.sample_rate:.1f} s windows", "rtf": t / secs})
    for r in rows:
        r["gflops"] = 2 * macs_sample * sr / r["rtf"] / 1e9
        r["of_gemm_peak"] = r["gflops"] / peak[r["threads"]]["int8" if "int8" in r["runtime"] else "fp32"]
    return rows, {"model": name, "params": sum(p.numel() for p in model.parameters()), "macs_per_sample": macs_sample}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-models", nargs="*", default=["image-gray", "image-color"])
    ap.add_argument("--speech-model", default="speech", help="'' to skip")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", type=int, default=512, help="bare-session input edge, pixels")
    ap.add_argument("--tiled-size", type=int, default=1024, help="deployed-path image edge, pixels")
    ap.add_argument("--audio-seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/speed.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    peak = {t: gemm_peaks(t) for t in args.threads}
    image, speech, models = [], [], []
    for name in args.image_models:
        rows, info = image_rows(name, args, peak)
        image += rows
        models.append(info)
    if args.speech_model:
        rows, info = speech_rows(args.speech_model, args, peak)
        speech += rows
        models.append(info)
    bm3d_spm = None if args.no_bm3d else bm3d_seconds_per_mp()

    print("\nGEMM peaks (2048², best of 7; G op/s): " + "; ".join(f"{t} thread(s): fp32 {p['fp32']:.0f} (torch {p['torch_fp32']:.0f}, onnxruntime {p['ort_fp32']:.0f}), int8 {p['int8']:.0f}" for t, p in peak.items()))
    for m in models:
        work = f"{m['macs_per_pixel'] / 1e3:.1f} kMAC/pixel" if "macs_per_pixel" in m else f"{m['macs_per_sample'] / 1e3:.1f} kMAC/sample"
        print(f"{m['model']}: {m['params']} params, {work}")
    if image:
        print("\n| model | runtime | threads | input | MP/s | s/MP | × faster than BM3D | G op/s | of GEMM peak (same precision) |\n|---|---|---|---|---|---|---|---|---|")
        for r in image:
            r["x_bm3d"] = bm3d_spm * r["mp_per_s"] if bm3d_spm else None
            xb = f"{r['x_bm3d']:.0f}" if r["x_bm3d"] else "-"
            print(f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['path']} | {r['mp_per_s']:.2f} | {1 / r['mp_per_s']:.3f} | {xb} | {r['gflops']:.1f} | {r['of_gemm_peak']:.0%} |")
        if bm3d_spm:
            print(f"\nBM3D (bm3d {__import__('bm3d').__version__ if hasattr(__import__('bm3d'), '__version__') else ''}, 256² gray crop, σ 25): {bm3d_spm:.1f} s/MP")
    if speech:
        print("\n| model | runtime | threads | input | RTF | × real time | G op/s | of GEMM peak (same precision) |\n|---|---|---|---|---|---|---|---|")
        for r in speech:
            print(f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['path']} | {r['rtf']:.4f} | {1 / r['rtf']:.0f} | {r['gflops']:.1f} | {r['of_gemm_peak']:.0%} |")
    ratios = derived(image, speech, args.threads)
    if ratios:
        print("\n| ratio | value |\n|---|---|")
        for k, v in ratios.items():
            print(f"| {k} | {v:.2f}× |")
    out = {"benchmark": "speed", "machine": machine(), "gemm_peak_gops": peak, "models": models, "bm3d_s_per_mp": bm3d_spm, "image": image, "speech": speech, "ratios": ratios, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")


def derived(image: list[dict], speech: list[dict], threads: list[int]) -> dict[str, float]:
    """Speed-ups the issue asks about: ORT vs torch, int8 vs fp32, thread scaling 1 -> 2."""
    out = {}
    rate = lambda rows, key: {(r["model"], r["runtime"], r["threads"], r["path"]): key(r) for r in rows}  # noqa: E731
    img = rate(image, lambda r: r["mp_per_s"])
    sp = rate(speech, lambda r: 1 / r["rtf"])
    hi, lo = max(threads), min(threads)
    for (model, runtime, t, path), v in {**img, **sp}.items():
        if runtime == "onnxruntime fp32" and path.startswith("whole") and t == hi:
            torch_v = {**img, **sp}.get((model, "torch eager", t, path))
            if torch_v:
                out[f"{model}: onnxruntime fp32 / torch eager ({t} threads, {path})"] = v / torch_v
        if runtime == "onnxruntime int8":
            f = {**img, **sp}.get((model, "onnxruntime fp32", t, path))
            if f:
                out[f"{model}: int8 / fp32 ({t} threads, {path})"] = v / f
        if t == hi and hi != lo and runtime.startswith("onnxruntime"):
            one = {**img, **sp}.get((model, runtime, lo, path))
            if one:
                out[f"{model}: {runtime} {lo} -> {hi} threads ({path})"] = v / one
    return out


if __name__ == "__main__":
    main()
