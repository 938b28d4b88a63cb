"""Fit the level calibration of an image model that is told the noise level: the gain, as a
function of the estimated level, that the estimate is multiplied by before the model is told
it (ONNX metadata ``autoenc.level_calibration``, applied by
:func:`autoenc.runtime.noise_level.calibrated_level` at inference). ``autoenc calibrate`` calls
:func:`calibrate`. Needs the ``train`` extra (the validation pairs come from the data pipeline).

Why: a model trained on estimates from small noisy patches, with Gaussian, Poisson and speckle
noise that read alike to the estimator, hedges; on whole Gaussian-noisy images it did better when
told a little less than the estimate at low levels. On the validation photos (scikit-learn,
PyWavelets; whole images), telling `image-gray` 0.85 x the estimate gained +0.07 dB at sigma
15 and +0.06 at sigma 25, while sigma 50 wanted 0.95-1.0. Whether that holds beyond the
validation photos is for a benchmark to say: for the width-16 `image-gray-fast` candidate of
2026-12-05 a fit that gained +0.10 / +0.04 / +0.07 dB on its validation pairs (sigma 15 / 25 /
50) lost -0.03 / 0.00 / -0.09 dB on the palapeli photos, so no shipped model carries one; fit
on more validation photos than the four of scikit-learn and PyWavelets.

How: on the run's own validation pairs (never a benchmark). Each validation setting that is
Gaussian noise of one sigma gives a knot at the median estimate of its pairs, starting at the
gain in :data:`GAINS` that setting alone scores best with (mean PSNR). The pairs' estimates
spread (clipping lowers them at sigma 50, small smooth crops read differently), so one
setting's best gain is not the best knot: the knots' gains are then chosen by coordinate
ascent on the whole validation score (every setting, the non-Gaussian ones included: Poisson
noise reads like a Gaussian level and may want another gain there). The knots are kept only if
that score beats the plain estimate's; otherwise the model is written with no calibration.

By kind of noise: where the validation settings include camera noise of one ISO and gain
(``calibrate(settings=...)``, ``autoenc calibrate --settings``: other settings on the run's
held-out files, or on other held-out files the settings name), those settings' knots form a second, *blotchy* curve beside the Gaussian
(*white*) one, and each pair is told the estimate through the blend its own blotchiness picks
(:func:`autoenc.runtime.noise_level.blotchiness`). Why: the fine-scale estimate reads camera
noise (demosaiced, JPEG-smeared) far too low and white noise about right, so one curve over the
estimate cannot serve both. On its validation photos (seed-30 pairs, probe of 2026-12-05)
`photo-hq` wanted 0.4 x the estimate for mild camera noise (ISO 6400 x2, +0.14 dB) and for
Gaussian sigma 10 (+0.42 dB), but 2.6 x for ISO 25600 x8 / x16 (+0.20 / +0.48 dB), at estimates
that overlap (camera x8 / x16 read 4.5-8.9 / 255, Gaussian sigma 5 4.9-7.9 / 255), where
blotchiness mostly separates them (camera 1.6-3.3, Gaussian sigma >= 10 1.03-1.4, sigma 5
1.15-1.67 on textured crops).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import onnx

from autoenc.made_with import held_out_data, model_config, model_data
from autoenc.metrics import psnr
from autoenc.runtime.media import atomic_write
from autoenc.runtime.metadata import PREFIX, ModelInfo
from autoenc.runtime.noise_level import blotchiness, calibrated_level

if TYPE_CHECKING:
    from autoenc.config import CalibrationSettings, NoiseConfig
    from autoenc.data import TrainingData

log = logging.getLogger(__name__)

GAINS = (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.3, 2.6)  # gains tried at each knot: 0.05 apart near 1 (white noise), coarser out to 0.4 and 2.6 (photo-hq on camera noise wanted both, 2026-12-05)
ROUNDS = 2  # passes of coordinate ascent over the knots
REPORT_KEY = PREFIX + "calibration"  # metadata key of the fit's report (scores per gain, before/after)


def one_sigma(noise: NoiseConfig) -> bool:
    """Whether a validation setting is Gaussian noise of a single sigma (a knot's setting)."""
    if len(noise.mixture) != 1 or noise.then:
        return False
    spec = noise.mixture[0]
    return spec.name == "gaussian" and spec.sigma[0] == spec.sigma[1]


def one_camera(noise: NoiseConfig) -> bool:
    """Whether a validation setting is camera noise of a single ISO and gain (a knot's setting
    on the blotchy curve)."""
    if len(noise.mixture) != 1 or noise.then:
        return False
    spec = noise.mixture[0]
    return spec.name == "camera" and spec.iso[0] == spec.iso[1] and spec.gain[0] == spec.gain[1]


Knots = list[list[float]] | dict[str, list[list[float]]]  # [level, gain] pairs, or such pairs by kind of noise ("white", "blotchy")


def fit(data: TrainingData, model: str | Path) -> tuple[Knots | None, dict]:
    """(knots or None, report) for ``model`` (an .onnx with a noise-level input) on ``data``'s
    validation pairs; see the module docstring. The report holds the mean PSNR (dB) per knot
    setting (single-sigma Gaussian, single-ISO camera) and uniform gain, the knots each setting
    alone picks (the start; by kind of noise where there are camera settings), the fitted knots,
    and the score per setting before and after."""
    from autoenc.data import noise_settings
    from autoenc.runtime.infer import OnnxDenoiser

    runner = OnnxDenoiser(model, calibrated=False)
    pairs = {tag: [(x.permute(1, 2, 0).numpy(), c.permute(1, 2, 0).numpy()) for x, c in p] for tag, p in data.val.items()}
    estimates = {tag: [runner.noise_level(x) for x, _ in p] for tag, p in pairs.items()}
    blotchy = {tag: [blotchiness(x) for x, _ in p] for tag, p in pairs.items()}
    cache: dict[tuple, float] = {}  # (setting, pair, told level) -> PSNR: a knot's gain moves only the pairs near it

    def pair_score(tag: str, j: int, told: np.ndarray) -> float:
        key = (tag, j, tuple(np.round(np.atleast_1d(told), 9)))
        if key not in cache:
            x, c = pairs[tag][j]
            cache[key] = psnr(c, runner.denoise(x, level=told))
        return cache[key]

    def scores(told: Callable[[np.ndarray, float], np.ndarray]) -> dict[str, float]:
        return {tag: float(np.mean([pair_score(tag, j, told(e, blotchy[tag][j])) for j, e in enumerate(estimates[tag])])) for tag in pairs}

    def overall(knots: Knots) -> float:
        return float(np.mean(list(scores(lambda e, b: calibrated_level(e, knots, b)).values())))

    by_gain: dict[str, dict[str, float]] = {}
    curves: dict[str, list[list[float]]] = {"white": [], "blotchy": []}
    for tag, noise in noise_settings(data.cfg).items():
        curve = "white" if one_sigma(noise) else "blotchy" if one_camera(noise) else None
        if curve is None:
            continue
        by_gain[tag] = {f"{g:g}": float(np.mean([pair_score(tag, j, g * e) for j, e in enumerate(estimates[tag])])) for g in GAINS}
        curves[curve].append([float(np.median([e.mean() for e in estimates[tag]])), max(GAINS, key=lambda g: by_gain[tag][f"{g:g}"])])
    for c in curves.values():
        c.sort()
    start: Knots = curves if curves["blotchy"] else curves["white"]  # by kind of noise only where the validation has camera noise
    knots: Knots = {k: [list(kn) for kn in c] for k, c in start.items()} if isinstance(start, dict) else [list(k) for k in start]
    every = [k for c in (knots.values() if isinstance(knots, dict) else [knots]) for k in c]
    for _ in range(ROUNDS):  # coordinate ascent on the whole validation score, one knot's gain at a time (ties keep it)
        for k in every:
            was, scored = k[1], {}
            for g in GAINS:
                k[1] = g
                scored[g] = overall(knots)
            k[1] = max(GAINS, key=lambda g: (scored[g], g == was))
    before = scores(lambda e, b: e)
    after = scores(lambda e, b: calibrated_level(e, knots, b)) if every else dict(before)
    kept = bool(every) and float(np.mean(list(after.values()))) > float(np.mean(list(before.values())))
    report = {"gains": list(GAINS), "by_gain": by_gain, "knots_start": start, "start_score": overall(start) if every else None,
              "knots_fitted": knots, "before": before, "after": after, "kept": kept}
    return (knots if kept else None), report


def calibrate(source: str | Path, model: str | Path, also: list[str | Path] | None = None, overrides: list[str] | None = None, settings: CalibrationSettings | None = None) -> tuple[Knots | None, dict]:
    """Fit ``model``'s level calibration on the validation pairs of ``source`` (the checkpoint it
    was exported from, or its training config with ``overrides``; its config hash must be the
    model's) and write it, with the fit's report, into ``model`` and each file in ``also`` (its
    int8 twin: the same input planes), atomically. ``settings``: noise specs to fit on instead of
    the run's own validation settings (more levels than training watched, or camera noise for
    knots by kind of noise) and, with its ``data``, other held-out files than the run's
    validation split (more photos than it has); a ValueError if one of those files is one the
    model trained on. Returns (knots or None, report)."""
    info = _info(model)
    if info.modality != "image" or not info.noise_level_input:
        raise ValueError(f"{model}: only an image model told the noise level (noise_level_input) has a level to calibrate")
    twins = [Path(p) for p in also or []]
    for twin in twins:
        theirs = _info(twin)
        if (theirs.modality, theirs.channels, theirs.noise_level_input, theirs.noise_profile) != (info.modality, info.channels, info.noise_level_input, info.noise_profile):
            raise ValueError(f"--also {twin}: takes other input planes than {model}; give its int8 twin")
    cfg, ckpt = model_config(source, model, info, overrides)
    if settings is not None and settings.other_files:  # other held-out files: ingested afresh, checked against what the model trained on
        data, origin = held_out_data(source, cfg, ckpt, settings.applied(cfg, str(source)), info.trained_on)
    elif settings is not None:  # after the hash check: the validation settings are not what the model was made with
        cfg = settings.applied(cfg, str(source))
        data, origin = model_data(source, cfg, {**ckpt, "config": cfg.model_dump(mode="json")} if ckpt is not None else None, overrides)
    else:
        data, origin = model_data(source, cfg, ckpt, overrides)
    knots, report = fit(data, model)
    report = {**report, "fitted_on": str(model), "source": str(source), **origin, **({"settings": settings.model_dump(mode="json", exclude_unset=True)} if settings is not None else {})}
    for path in [Path(model), *twins]:
        _write(path, knots, report)
    log.info("level calibration of %s: %s (validation %.3f -> %.3f dB)", model, knots, np.mean(list(report["before"].values())), np.mean(list(report["after"].values())))
    return knots, report


def _info(path: str | Path) -> ModelInfo:
    return ModelInfo.from_props({p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props})


def _write(path: Path, knots: list[list[float]] | None, report: dict) -> None:
    """Set the calibration and report keys of ``path``'s metadata (replacing any before)."""
    m = onnx.load(str(path))
    keep = [(p.key, p.value) for p in m.metadata_props if p.key not in (PREFIX + "level_calibration", REPORT_KEY)]
    del m.metadata_props[:]
    for k, v in [*keep, (PREFIX + "level_calibration", json.dumps(knots)), (REPORT_KEY, json.dumps(report))]:
        m.metadata_props.add(key=k, value=v)
    blob = m.SerializeToString()
    atomic_write(path, lambda f: f.write(blob))
