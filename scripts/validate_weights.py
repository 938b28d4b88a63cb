"""Score trained weights on a config's validation pairs without training: the config's model
(with its front end, overrides applied) is built, the weights are loaded as `train.init_from`
would load them, and the validation score `autoenc train` logs per epoch is computed, with each
setting's denoised score and (audio) the SI-SDR of the clean validation clips passed through.

What it is for: judging a change that needs no training (a prefilter setting, a model as it
stands under a new validation) on the validation split only, never on the benchmark.

    python scripts/validate_weights.py WEIGHTS CONFIG MANIFEST [--set key=value ...]

WEIGHTS: a checkpoint or fp32-compute .onnx; MANIFEST: a run's manifest.csv (its split). The
data root is the config's (``data.root``) or the default corpus.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from autoenc.checkpoint import start_from
from autoenc.config import load
from autoenc.corpus import resolve_data_root
from autoenc.data import TrainingData, model_input, read_manifest
from autoenc.evaluate import evaluate, score
from autoenc.metrics import si_sdr
from autoenc.models import build_model

log = logging.getLogger("validate_weights")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("config", type=Path)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--data-root", type=Path, help="the folder the manifest's paths are relative to (default: the config's data.root, or its default corpus)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load(args.config, args.set)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    model = build_model(cfg.model, cfg.network_channels)
    start_from(model, cfg.model.name, args.weights)
    model.eval()
    data = TrainingData(cfg, args.data_root or resolve_data_root(cfg.data.root, cfg.data.corpus_dir, cfg.modality, cfg.data.corpus), read_manifest(args.manifest))
    metrics = evaluate(model, data.val, full=False, sample_rate=cfg.data.sample_rate)
    log.info("validation score %.3f dB", score(metrics))
    for tag, m in metrics.items():
        key = "psnr" if cfg.modality == "image" else "si_sdr"
        log.info("  %-40s noisy %6.2f  denoised %6.2f", tag, m[f"noisy_{key}"], m[f"denoised_{key}"])
    if cfg.modality == "audio":
        clean = [c for _, c in next(iter(data.val.values()))]
        with torch.no_grad():
            out = [si_sdr(c[0].numpy(), model(model_input(model, c[None], cfg.data.sample_rate))[0, 0].numpy()) for c in clean]
        log.info("clean validation clips passed through: SI-SDR %.2f dB (mean of %d)", float(np.mean(out)), len(out))


if __name__ == "__main__":
    main()
