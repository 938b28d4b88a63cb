"""int8 on this CPU: whether onnxruntime's fused integer kernels compute what an int8 model's
Q/DQ graph says. Torch-free.

x86 CPUs without VNNI multiply uint8 activations by int8 weights in 16-bit pairs that saturate;
on an AVX2-only EPYC image-gray-fast-int8 came out 7 dB below its fp32 model. A fixed probe run
through the fused session and through the same graph unfused tells whether this CPU is one.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from autoenc.runtime.metadata import ModelInfo

INT8_AGREEMENT_DB = 45.0  # least agreement (PSNR of the output against the graph's own Q/DQ semantics, peak = the probe's) of the fused int8 kernels


def probe_input(info: ModelInfo) -> np.ndarray:
    """A fixed input the model takes: a 64x64 smooth pattern with noise, 8-bit (images, with
    its noise-level plane where the model takes one), or 8192 samples of a modulated tone in
    noise (audio)."""
    rng = np.random.default_rng(0)
    if info.modality == "image":
        yy, xx = np.mgrid[0:64, 0:64] / 64.0
        base = 0.5 + 0.35 * np.sin(6 * xx + 3 * yy) * np.cos(5 * yy)
        x = np.round(np.stack([np.clip(base * (0.8 + 0.15 * c) + 0.1 * rng.standard_normal(base.shape), 0, 1) for c in range(info.channels)]) * 255) / 255
        if info.noise_level_input:
            x = np.concatenate([x, np.full((1, 64, 64), 0.1)])
        return x[None].astype(np.float32)
    t = np.arange(8192) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.shape))[None, None].astype(np.float32)


def int8_agreement_db(fused: ort.InferenceSession, reference: ort.InferenceSession, info: ModelInfo) -> float:
    """PSNR (dB, peak = the probe's largest magnitude) of ``fused``'s output on
    :func:`probe_input` against ``reference``'s (the same int8 graph run unfused)."""
    x = probe_input(info)
    name = fused.get_inputs()[0].name
    a, b = fused.run(None, {name: x})[0], reference.run(None, {name: x})[0]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(float(np.abs(x).max()) ** 2 / mse)
