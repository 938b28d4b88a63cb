"""Training-step speed by precision (``train.precision``): one optimizer step of a config's
model, with its teacher's forward pass where the config names one, on synthetic batches of the
config's patch size or segment length, in fp32 and in bf16, side by side in one process; and how
exactly bf16 computes the model's output: what the fp32 network removes from its input, in dB
over the bf16 output's difference from fp32's (with ``train.init_from``'s weights where the
config has one). The networks run in the layout training uses (:func:`autoenc.train.fast_layout`).

What it leaves out: drawing the noisy patches (the data pipeline, the same in both precisions);
the real rate of a run is the ``it/s`` its log prints.

    python benchmarks/train_speed.py [--config configs/photo-distil.yaml] [--set model.kwargs.width=32] [--steps 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from autoenc.checkpoint import start_from
from autoenc.config import load
from autoenc.data import model_input
from autoenc.losses import LOSSES
from autoenc.models import build_model
from autoenc.train import fast_layout, load_teacher, objective, step_precision
from image_speed import machine

log = logging.getLogger("train_speed")
PRECISIONS = ("fp32", "bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs/photo-distil.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config override, as for autoenc train")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per precision (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/train_speed.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    cfg = load(args.config, args.set)
    gen = torch.Generator().manual_seed(0)
    b = cfg.train.batch_size
    if cfg.modality == "image":  # patches in 0..1
        shape = (b, cfg.data.channels, cfg.data.patch_size, cfg.data.patch_size)
        clean = torch.rand(shape, generator=gen)
        batch = ((clean + 0.1 * torch.randn(shape, generator=gen)).clamp(0, 1), clean)
    else:  # segments at about -20 dBFS
        shape = (b, 1, round(cfg.data.segment_seconds * cfg.data.sample_rate))
        clean = 0.1 * torch.randn(shape, generator=gen)
        batch = (clean + 0.03 * torch.randn(shape, generator=gen), clean)
    model = fast_layout(build_model(cfg.model, cfg.network_channels))
    if cfg.train.init_from:  # trained weights: the output gap between precisions is then a real one
        start_from(model, cfg.model.name, cfg.train.init_from)
    teacher = fast_layout(load_teacher(cfg.train.teacher, model)) if cfg.train.teacher else None  # relative to the working directory, as in training
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)  # steps move the weights a little: each precision times the same work
    rows = {}
    for precision in PRECISIONS:
        times = []
        for i in range(args.steps + 2):
            t0 = time.perf_counter()
            loss = objective(model, batch, teacher, LOSSES[cfg.train.loss], cfg.data.sample_rate, cfg.train.teacher_weight, cfg.train.teacher_views, precision)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        rows[precision] = {"s_per_step": float(np.median(times[2:])), "loss": loss.item()}
    with torch.no_grad():
        x = model_input(model, batch[0], cfg.data.sample_rate)
        outs = {}
        for precision in PRECISIONS:
            with step_precision(precision):
                outs[precision] = model(x).float()
    gap = float((outs["bf16"] - outs["fp32"]).abs().max())
    removed = outs["fp32"] - batch[0]  # what the fp32 network takes out of its noisy input
    agree = float(10 * torch.log10(removed.pow(2).mean() / (outs["bf16"] - outs["fp32"]).pow(2).mean()))  # how exactly bf16 computes that, dB
    speedup = rows["fp32"]["s_per_step"] / rows["bf16"]["s_per_step"]
    here = machine()
    print(f"\n{cfg.name}: {cfg.model.name} {cfg.model.kwargs}, batch {list(shape)}{', teacher ' + str(cfg.train.teacher) if teacher else ''}; "
          f"{args.threads} threads, {here['cpu'] or 'CPU unknown'} (bf16 units: {here['bf16_isa'] or 'none'})")
    print(f"{'precision':<10} {'s/step':>8} {'steps/s':>8}")
    for precision, r in rows.items():
        print(f"{precision:<10} {r['s_per_step']:>8.3f} {1 / r['s_per_step']:>8.2f}")
    print(f"bf16 is {speedup:.2f}x fp32; its output differs from fp32's by at most {gap:.2e}; what the network removes from its input is {agree:.1f} dB above that difference")
    out = {"config": str(args.config), "overrides": args.set, "config_hash": cfg.hash(), "threads": args.threads, "machine": here,
           "batch": list(shape), "teacher": str(cfg.train.teacher) if teacher else None, "rows": rows, "bf16_speedup": speedup, "max_output_gap": gap, "removed_over_bf16_error_db": agree}
    Path(args.json).write_text(json.dumps(out, indent=1))
    log.info("wrote %s", args.json)


if __name__ == "__main__":
    main()
