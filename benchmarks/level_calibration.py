"""Held-out check of a model's level calibration: each model told the level its calibration
gives (``autoenc calibrate``) against the same network told the plain estimate, on photos of a
package it was never trained, validated or calibrated on, at the noise settings of a
calibration settings file, on the same noisy files.

Photos: Debian ``endless-sky-high-dpi`` (landscapes, cities, sky; ``make wide-data``), every
``--every``-th by name from the ``--offset``-th, centre crops. Only for models whose training
corpus did not hold that package: `photo-hq` and `photo` trained on the photo corpus, which does
not (the ``photos-wide`` corpus does: configs that name it trained on these photos). The camera
settings use the profiles the settings file names (Pentax for `photo-hq`'s; the camera benchmark's
Fujifilm and palapeli photos are not used here). Noisy inputs are 8-bit like users' files.
Prints a table per model and the paired difference per setting with a 95% interval that
resamples photos (``benchmarks/paired.py``); writes JSON.

    python benchmarks/level_calibration.py [--model photo-hq ...] [--settings configs/calibration/photo-hq.yaml] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from autoenc.config import NoiseConfig, load_calibration_settings
from autoenc.corpus import WIDE_CORPUS, resolve_data_root
from autoenc.data import centre_crop
from autoenc.metrics import psnr
from autoenc.noise import pair_generator, synthesize
from autoenc.runtime.infer import OnnxDenoiser
import never_seen
from image_speed import machine
from paired import compare

log = logging.getLogger("level_calibration")
PACKAGE = "endless-sky-high-dpi"  # in the photos-wide corpus only


def photo_files(every: int, offset: int) -> list[Path]:
    """The held-out photos' files: every ``every``-th of the package's, from the ``offset``-th."""
    return sorted((resolve_data_root(None, None, "image", WIDE_CORPUS) / PACKAGE).glob("*.png"))[offset::every]


def photos(files: list[Path], crop: int) -> dict[str, torch.Tensor]:
    """The held-out photos (:func:`photo_files`) by name: (3, H, W) float tensors in 0..1, centre-cropped."""
    return {f.stem: centre_crop(torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1), crop) for f in files}


def _value(v) -> str:
    """A fixed parameter (or a range) as the table prints it: 6400, 0.5..2."""
    lo, hi = (v, v) if isinstance(v, (int, float)) else v
    return f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"


def setting_name(spec: dict) -> str:
    if spec["name"] == "camera":
        return f"camera ISO {_value(spec['iso'])} x{_value(spec['gain'])}"
    return f"{spec['name']} sigma {_value(spec['sigma'])}" if "sigma" in spec else spec["name"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="a model told the noise level, with a level calibration (default: photo-hq)")
    ap.add_argument("--settings", default=str(REPO / "configs/calibration/photo-hq.yaml"), help="calibration settings file whose noises are scored")
    ap.add_argument("--every", type=int, default=22)
    ap.add_argument("--offset", type=int, default=11)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/level_calibration.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = photo_files(args.every, args.offset)
    ims = photos(files, args.crop)
    noises = [spec.model_dump(mode="json", exclude_unset=True) for spec in load_calibration_settings(args.settings).noises]
    names = [setting_name(spec) for spec in noises]
    if len(set(names)) < len(names):
        raise SystemExit(f"{args.settings}: two settings print as one row ({names}); this benchmark tells settings apart by name, ISO, gain and sigma only")
    report: dict = {"photos": f"{PACKAGE}: {', '.join(ims)} ({args.crop} px centre crops)", "settings": args.settings, "machine": machine(), "models": {}}
    for model in args.model or ["photo-hq"]:
        told, plain = OnnxDenoiser(model), OnnxDenoiser(model, calibrated=False)
        checked = never_seen.check({model: told.info}, files)[model]  # refuses a model that trained on them
        if told.level_knots is None:
            raise SystemExit(f"{model}: carries no level calibration")
        rows = {}
        for spec in noises:
            name = setting_name(spec)
            cfg = NoiseConfig.model_validate({"mixture": [spec]})
            ours, theirs = {}, {}
            for j, (photo, clean) in enumerate(ims.items()):
                noisy, _ = synthesize(clean, cfg, pair_generator(0, "level-calibration", name, j))
                x = np.round(noisy.permute(1, 2, 0).numpy() * 255) / 255  # an 8-bit file
                c = clean.permute(1, 2, 0).numpy()
                ours[photo] = psnr(c, np.round(told.denoise(x) * 255) / 255)
                theirs[photo] = psnr(c, np.round(plain.denoise(x) * 255) / 255)
            rows[name] = {"calibrated": float(np.mean(list(ours.values()))), "plain_estimate": float(np.mean(list(theirs.values()))), "difference": compare(ours, theirs)}
            d = rows[name]["difference"]
            log.info("%-12s %-24s plain %.2f  calibrated %.2f  %+.2f dB [%+.2f, %+.2f]", model, name, rows[name]["plain_estimate"], rows[name]["calibrated"], d["mean"], *d["ci"])
        mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("plain_estimate", "calibrated")}
        log.info("%-12s %-24s plain %.2f  calibrated %.2f  %+.2f dB", model, "mean of the settings", mean["plain_estimate"], mean["calibrated"], mean["calibrated"] - mean["plain_estimate"])
        report["models"][model] = {"trained_on": checked, "knots": told.level_knots, "settings": rows, "mean": mean}
    Path(args.json).write_text(json.dumps(report, indent=1))
    log.info("wrote %s", args.json)


if __name__ == "__main__":
    main()
