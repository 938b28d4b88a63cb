"""Image quality benchmark: a model vs classical denoisers on the same held-out photos, same
noisy inputs, same process. Gray photos (the val split every shipped config holds out: aero,
camera, chelsea, coins, flower, converted to gray), Gaussian noise at sigma 15/25/50 on the
0..255 scale, saved as 8-bit (clipped, rounded) like users' files, seeded.

Baselines: BM3D (PyPI `bm3d`, told the true sigma; non-commercial licence, benchmark-only),
scikit-image NL-means (true sigma, h = 0.8 sigma) and TV (Chambolle). Prints a table and writes
JSON with machine info.

    python benchmarks/image_quality.py [--model image-gray] [--int8 autoenc/pretrained/image-gray-int8.onnx] [--no-bm3d]
    python benchmarks/image_quality.py --color --model image-color --also image-gray --json benchmarks/results/image_quality_color.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from autoenc.runtime.infer import OnnxDenoiser
from autoenc.metrics import psnr, ssim
from image_speed import machine

VAL = ["PyWavelets/aero", "scikit-image/camera", "scikit-image/chelsea", "scikit-image/coins", "scikit-learn/flower"]


def held_out(corpus: Path, color: bool = False) -> dict[str, np.ndarray]:
    """Gray versions of every held-out photo, or (``color``) the held-out photos that are RGB."""
    if color:
        rgb = [n for n in VAL if Image.open(corpus / f"{n}.png").mode == "RGB"]
        return {n.split("/")[-1]: np.asarray(Image.open(corpus / f"{n}.png"), np.float32) / 255.0 for n in rgb}
    return {n.split("/")[-1]: np.asarray(Image.open(corpus / f"{n}.png").convert("L"), np.float32)[..., None] / 255.0 for n in VAL}


def noisy_copy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round((clean + rng.normal(0, sigma / 255.0, clean.shape)) * 255), 0, 255).astype(np.float32) / 255.0


def methods(args) -> dict:
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    out = {}
    fp32 = OnnxDenoiser(args.model, threads=args.threads)
    out["autoenc " + Path(str(args.model)).stem] = lambda x, s: fp32.denoise(x)
    if args.int8:
        q = OnnxDenoiser(args.int8, threads=args.threads)
        out["autoenc " + Path(args.int8).stem] = lambda x, s: q.denoise(x)
    for extra in args.also or []:
        m = OnnxDenoiser(extra, threads=args.threads)
        out["autoenc " + Path(extra).stem] = lambda x, s, m=m: m.denoise(x)
    if args.color:
        if not args.no_bm3d:
            import bm3d

            out["CBM3D (true sigma)"] = lambda x, s: np.asarray(bm3d.bm3d_rgb(x, sigma_psd=s / 255.0), np.float32)
        out["NL-means skimage colour (true sigma)"] = lambda x, s: denoise_nl_means(x, h=0.8 * s / 255.0, sigma=s / 255.0, patch_size=7, patch_distance=11, fast_mode=True, channel_axis=-1)
        out["TV Chambolle colour"] = lambda x, s: denoise_tv_chambolle(x, weight=0.9 * s / 255.0, channel_axis=-1)
        return out
    if not args.no_bm3d:
        import bm3d

        out["BM3D (true sigma)"] = lambda x, s: np.asarray(bm3d.bm3d(x[..., 0], sigma_psd=s / 255.0), np.float32)[..., None]
    out["NL-means skimage (true sigma)"] = lambda x, s: denoise_nl_means(x[..., 0], h=0.8 * s / 255.0, sigma=s / 255.0, patch_size=7, patch_distance=11, fast_mode=True)[..., None]
    out["TV Chambolle"] = lambda x, s: denoise_tv_chambolle(x[..., 0], weight=0.9 * s / 255.0)[..., None]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="image-gray")
    ap.add_argument("--int8")
    ap.add_argument("--sigmas", default="0,15,25,50", help="0 = clean input (models only: how much they change it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("--color", action="store_true", help="the RGB held-out photos against CBM3D and colour NL-means/TV")
    ap.add_argument("--also", action="append", help="another model to run on the same files (e.g. image-gray on colour: per plane)")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/image_quality.json"))
    args = ap.parse_args()
    from autoenc.corpus import build_photo_corpus

    photos = held_out(build_photo_corpus(), args.color)
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
            rows.append({"sigma": sigma, "method": name, "psnr": float(np.mean([psnr(photos[n], den[n]) for n in photos])), "ssim": float(np.mean([ssim(photos[n], den[n]) for n in photos])), "s_per_mp": secs / mp})
            print(f"sigma {sigma:g} {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
    print(f"\n{'RGB' if args.color else 'Gray'} held-out photos ({', '.join(photos)}; {mp:.2f} MP), 8-bit noisy inputs, {args.threads} threads\n")
    print("| σ | method | PSNR dB | SSIM | s/MP |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sigma']:g} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['s_per_mp']:.3f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "files": list(photos), "color": args.color, "megapixels": mp, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
