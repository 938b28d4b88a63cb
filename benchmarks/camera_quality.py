"""Camera-noise benchmark: the `photo` model vs CBM3D, NL-means and `image-color` on photos
through the simulated camera (autoenc.camera), all in one process on the same noisy files.

Photos: Debian ``palapeli-data`` (5 photographs; a source no model was trained or validated on),
centre crops. Noise: the camera simulation with **Fujifilm** sensor profiles (held out from the
`photo` model's training, whose validation used Pentax), MHC demosaic, tone 0.5, saturation 0.6,
JPEG 4:2:0 q90, at a mid and a high ISO; plus Gaussian σ 25 (the model must stay a general
denoiser) and the clean photo itself (how much a model changes a clean input). Noisy inputs
are 8-bit like users' files; outputs are rounded to 8 bits before scoring.

CBM3D and NL-means are given the noise level a user would give them: skimage's
``estimate_sigma`` on the noisy file (it sees the fine-grain part of correlated noise only), and
CBM3D also at 5x that estimate (the multiple ../shared/DATA.md found best with the clean answer
in hand). Gaussian rows give them the true σ. Writes JSON and a picture of 1:1 crops.
Against both CBM3D rows, each model's paired difference per level with a 95% interval that
resamples the photos (``benchmarks/paired.py``), the photos it is ahead on, and issue 14's target
(TARGETS: over CBM3D with the estimated σ) with whether the mean meets it.

    python benchmarks/camera_quality.py [--model photo] [--int8 photo-int8] [--also MODEL ...] [--ensemble MODEL ...] [--crop 512] [--no-baselines --json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from autoenc.config import NoiseConfig
from autoenc.corpus import build_benchmark_photos
from autoenc.runtime.infer import OnnxDenoiser
from autoenc.metrics import psnr, ssim
from autoenc.noise import pair_generator, synthesize
import never_seen
from image_speed import machine
from model_names import clashes, column
from paired import compare, describe, verdict

CAMERA = {"name": "camera", "makers": ["Fujifilm"], "demosaic": ["mhc"], "tone": 0.5, "saturation": 0.6, "jpeg_quality": 90}
LEVELS = {  # name -> noise spec; the third camera level lies beyond the training range (gain <= 8)
    "camera mid (ISO 12800, gain 4)": {**CAMERA, "iso": 12800, "gain": 4},
    "camera high (ISO 25600, gain 8)": {**CAMERA, "iso": 25600, "gain": 8},
    "camera very high (ISO 25600, gain 16)": {**CAMERA, "iso": 25600, "gain": 16},
    "gaussian σ25": {"name": "gaussian", "sigma": 25},
    "clean": None,
}


REFERENCES = ["CBM3D (estimated σ)", "CBM3D (5× estimated σ)"]  # what each model is compared with, photo by photo
TARGETS = {"camera mid (ISO 12800, gain 4)": 2.0, "camera high (ISO 25600, gain 8)": 3.0}  # issue 14: dB over REFERENCES[0]


def photo_files() -> list[Path]:
    """The benchmark photos' files."""
    return sorted(build_benchmark_photos().rglob("*.png"))


def photos(crop: int) -> dict[str, np.ndarray]:
    """Centre crops (RGB float 0..1) of the benchmark photos."""
    out = {}
    for path in photo_files():
        arr = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        h, w = arr.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        out[path.stem] = arr[top : top + crop, left : left + crop]
    return out


def noisy_copy(clean: np.ndarray, spec: dict | None, seed: int) -> np.ndarray:
    if spec is None:
        return clean
    x = torch.from_numpy(clean.transpose(2, 0, 1).copy())
    y, _ = synthesize(x, NoiseConfig(mixture=[spec]), pair_generator(seed, "camera-benchmark"))
    return y.permute(1, 2, 0).numpy()


def estimated_sigma(x: np.ndarray) -> float:
    """What a user would feed a non-blind denoiser: skimage's wavelet estimate (0..1 scale)."""
    from skimage.restoration import estimate_sigma

    return float(np.mean(estimate_sigma(x, channel_axis=-1)))


TRAINED_ON: dict[str, str] = {}  # method -> how far the check that it never trained on these photos reached
INT8_KERNELS: dict[str, str] = {}  # method -> how an int8 model ran on this CPU (autoenc/runtime/int8_kernels.py)


def methods(args) -> dict:
    """name -> fn(noisy, true_sigma or None) -> denoised; true sigma only for Gaussian rows.
    Refuses a model that trained on a benchmark photo (never_seen.check; how far each check
    reached goes in TRAINED_ON)."""
    out = {}
    infos = {}
    for name in [args.model, *(args.also or [])] + ([args.int8] if args.int8 else []):
        m = OnnxDenoiser(name, threads=args.threads)
        infos[column(name)] = m.info
        out[column(name)] = lambda x, s, m=m: m.denoise(x)
        if m.int8_kernels:
            INT8_KERNELS[column(name)] = m.int8_kernels
    TRAINED_ON.update(never_seen.check(infos, photo_files()))  # before any score
    for name in args.ensemble:  # averaged over the 8 flips/rotations (`autoenc denoise --ensemble`)
        m = OnnxDenoiser(name, threads=args.threads, ensemble=True)
        out[column(name) + " --ensemble"] = lambda x, s, m=m: m.denoise(x)
    if args.no_baselines:
        return out
    import bm3d
    from skimage.restoration import denoise_nl_means

    def cbm3d(mult):
        return lambda x, s: np.asarray(bm3d.bm3d_rgb(x, sigma_psd=s if s is not None else mult * estimated_sigma(x)), np.float32)

    out["CBM3D (estimated σ)"] = cbm3d(1.0)  # Gaussian rows: the true σ
    out["CBM3D (5× estimated σ)"] = cbm3d(5.0)

    def nlm(x, s):
        s = s if s is not None else estimated_sigma(x)
        return denoise_nl_means(x, h=0.8 * s, sigma=s, patch_size=7, patch_distance=11, fast_mode=True, channel_axis=-1)

    out["NL-means (estimated σ)"] = nlm  # Gaussian rows: the true σ
    return out


def crops_picture(rows: list[tuple[str, np.ndarray]], out: Path, size: int = 160) -> None:
    """1:1 crops side by side, each labelled, as one PNG."""
    from PIL import ImageDraw

    tiles = []
    for label, arr in rows:
        im = Image.fromarray((np.clip(arr[:size, :size], 0, 1) * 255).round().astype(np.uint8))
        canvas = Image.new("RGB", (size, size + 14), "white")
        canvas.paste(im, (0, 14))
        ImageDraw.Draw(canvas).text((2, 1), label.replace("×", "x").replace("σ", "sigma"), fill="black")  # Pillow's default font is ASCII
        tiles.append(canvas)
    sheet = Image.new("RGB", (len(tiles) * (size + 4), size + 14), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * (size + 4), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="photo")
    ap.add_argument("--int8")
    ap.add_argument("--also", action="append", help="another model on the same files (default: photo-hq, photo-hq-int8, photo-fast, photo-fast-int8, image-color, image-color-fast: the README's columns)")
    ap.add_argument("--ensemble", action="append", default=[], help="also this model with --ensemble (8 flips/rotations, 8x the time; repeatable)")
    ap.add_argument("--crop", type=int, default=512, help="centre crop edge in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-baselines", action="store_true", help="models only, no CBM3D or NL-means (minutes instead of half an hour): to compare candidates; the README's table comes from a full run")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/camera_quality.json"))
    ap.add_argument("--picture", help="where to draw the crops (default: docs/photo/crops.png in a full run; with --no-baselines none unless given, so a candidate run leaves the README's picture alone)")
    args = ap.parse_args()
    if args.no_baselines and args.json == ap.get_default("json"):
        ap.error("--no-baselines: give --json elsewhere (the results file holds the full run with its baselines)")
    if args.picture is None and not args.no_baselines:
        args.picture = str(REPO / "docs/photo/crops.png")
    if args.also is None:
        args.also = ["photo-hq", "photo-hq-int8", "photo-fast", "photo-fast-int8", "image-color", "image-color-fast"]
    for group in ([args.model, *args.also, *([args.int8] if args.int8 else [])], args.ensemble):  # plain columns; "--ensemble" ones
        if clashes(group):
            ap.error(f"two models would share the column {clashes(group)}: copy one to another file name")
    clean = photos(args.crop)
    mp = sum(c.shape[0] * c.shape[1] for c in clean.values()) / 1e6
    fns = methods(args)
    rows = []
    for level, spec in LEVELS.items():
        noisy = {n: noisy_copy(c, spec, seed=i) for i, (n, c) in enumerate(clean.items())}
        true_sigma = spec["sigma"] / 255 if spec and spec["name"] == "gaussian" else None
        if spec is not None:
            rows.append({"level": level, "method": "noisy input", "psnr": float(np.mean([psnr(clean[n], noisy[n]) for n in clean])), "ssim": float(np.mean([ssim(clean[n], noisy[n]) for n in clean])), "s_per_mp": 0.0})
        shown = []
        for name, fn in fns.items():
            if spec is None and not name.startswith("autoenc"):
                continue  # baselines need a noise level; the clean row asks how much a model changes a photo
            if true_sigma is not None and "5×" in name:
                continue  # told the true σ, the multiple means nothing
            fn(next(iter(noisy.values()))[:64, :64], true_sigma)  # warm-up
            t0 = time.perf_counter()
            den = {n: np.clip(fn(x, true_sigma), 0, 1) for n, x in noisy.items()}
            secs = time.perf_counter() - t0
            den = {n: np.round(d * 255) / 255 for n, d in den.items()}
            per_photo = {n: float(psnr(clean[n], den[n])) for n in clean}
            rows.append({"level": level, "method": name, "psnr": float(np.mean(list(per_photo.values()))), "ssim": float(np.mean([ssim(clean[n], den[n]) for n in clean])), "s_per_mp": secs / mp, "psnr_per_photo": per_photo})
            print(f"{level} {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
            shown.append((name.removeprefix("autoenc "), den))
        if level.startswith("camera high") and args.picture:
            first = next(iter(clean))
            y, x = args.crop // 2 - 80, args.crop // 2 - 80
            pick = [("noisy", noisy[first])] + [(n, d[first]) for n, d in shown if n in (args.model, *args.also[:1], "CBM3D (5× estimated σ)")] + [("clean", clean[first])]
            crops_picture([(lab, arr[y:, x:]) for lab, arr in pick], Path(args.picture))
    print(f"\nBenchmark photos ({', '.join(clean)}; {args.crop}² centre crops, {mp:.2f} MP), Debian palapeli-data; {args.threads} threads\n")
    print("| noise | method | PSNR dB | SSIM | s/MP |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['level']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['s_per_mp']:.3f} |")
    against = against_references(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "int8_kernels": INT8_KERNELS, "trained_on": TRAINED_ON, "files": list(clean), "crop": args.crop, "megapixels": mp, "levels": {k: v for k, v in LEVELS.items()}, "rows": rows, "against": against}, indent=2))
    print(f"\nwrote {args.json}")


def against_references(rows: list[dict]) -> list[dict]:
    """Each model's paired difference from each of REFERENCES per noise level (printed as a
    table, issue 14's target against the first); empty without baselines."""
    out = []
    for reference in REFERENCES:
        ref = {r["level"]: r["psnr_per_photo"] for r in rows if r["method"] == reference}
        for r in rows:
            if r["method"].startswith("autoenc") and r["level"] in ref:
                target = TARGETS.get(r["level"]) if reference == REFERENCES[0] else None
                out.append({"level": r["level"], "method": r["method"], "reference": reference, "target": target, **compare(r["psnr_per_photo"], ref[r["level"]], margin=target or 0.0)})
    if out:
        print("\nPaired differences, dB [95% interval, resampling the photos] photos ahead of the target; target = issue 14's margin over CBM3D (estimated σ)\n")
        print("| noise | method | against | difference | target | met |\n|---|---|---|---|---|---|")
        for a in out:
            target, met = verdict(a)
            print(f"| {a['level']} | {a['method']} | {a['reference']} | {describe(a)} | {target} | {met} |")
    return out


if __name__ == "__main__":
    main()
