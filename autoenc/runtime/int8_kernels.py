"""int8 on this CPU: whether onnxruntime's fused integer kernels compute what an int8 model's
Q/DQ graph says. Torch-free.

x86 CPUs without VNNI multiply uint8 activations by int8 weights in 16-bit pairs that saturate;
on an AVX2-only EPYC image-gray-fast-int8 came out 7 dB below its fp32 model. A fixed probe run
through the fused session and through the same graph unfused tells whether this CPU is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import onnxruntime as ort

from autoenc.runtime.metadata import ModelInfo

log = logging.getLogger(__name__)
INT8_AGREEMENT_DB = 45.0  # least agreement (PSNR of the output against the graph's own Q/DQ semantics, peak = the probe's) of the fused int8 kernels


def probe_input(info: ModelInfo) -> np.ndarray:
    """A fixed input the model takes: a 64x64 smooth pattern with noise, 8-bit (images, with
    its conditioning planes where the model takes them), or 8192 samples of a modulated tone in
    noise (audio; a raw-plane model gets it twice, as its filtered and its unfiltered plane)."""
    rng = np.random.default_rng(0)
    if info.modality == "image":
        yy, xx = np.mgrid[0:64, 0:64] / 64.0
        base = 0.5 + 0.35 * np.sin(6 * xx + 3 * yy) * np.cos(5 * yy)
        x = np.round(np.stack([np.clip(base * (0.8 + 0.15 * c) + 0.1 * rng.standard_normal(base.shape), 0, 1) for c in range(info.channels)]) * 255) / 255
        if info.conditioning_planes:
            x = np.concatenate([x, np.full((info.conditioning_planes, 64, 64), 0.1)])
        return x[None].astype(np.float32)
    t = np.arange(8192) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.shape))[None, None].astype(np.float32)
    return np.concatenate([x, x], axis=1) if info.raw_plane else x


def int8_agreement_db(fused: ort.InferenceSession, reference: ort.InferenceSession, info: ModelInfo) -> float:
    """PSNR (dB, peak = the probe's largest magnitude) of ``fused``'s output on
    :func:`probe_input` against ``reference``'s (the same int8 graph run unfused)."""
    x = probe_input(info)
    name = fused.get_inputs()[0].name
    a, b = fused.run(None, {name: x})[0], reference.run(None, {name: x})[0]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(float(np.abs(x).max()) ** 2 / mse)


Int8Kernels = Literal["fused", "fused, uint8 x uint8", "unfused"]
PRECISE_ENTRY = ("session.x64quantprecision", "1")  # onnxruntime's kOrtSessionOptionsAvx2PrecisionMode: on x86 without VNNI its int8 weights become uint8 (value + 128, zero point + 128: the same numbers) and are multiplied uint8 x uint8 in 16-bit lanes that cannot saturate; the convs stay fused


def int8_session(blob: bytes, options: Callable[[], ort.SessionOptions], fused: ort.InferenceSession, info: ModelInfo, name: str = "model", least_db: float = INT8_AGREEMENT_DB) -> tuple[ort.InferenceSession, Int8Kernels]:
    """The session that computes what the int8 model ``blob`` says on this CPU, fastest first,
    and how it runs: ``fused`` (built from ``blob``) where it agrees with the same graph run
    unfused to at least ``least_db`` dB on :func:`probe_input`; else ``blob`` fused with
    :data:`PRECISE_ENTRY` where that agrees; else the graph unfused (correct, slowest). Any but
    the first is logged as a warning naming ``name``. ``options`` makes the caller's session
    options (threads, memory), fresh each call. On an AVX2-only EPYC, 2 threads, 1 MP:
    image-gray-fast-int8 fused with the entry 1.06 s, its fp32 model 1.00 s, unfused 1.62 s;
    the entry is not set where the plain fused kernels agree, since it slows them (image-gray-int8
    there: 1.15 s fused, 2.40 s with the entry)."""
    plain = options()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(blob, plain, providers=["CPUExecutionProvider"])
    agreement = int8_agreement_db(fused, reference, info)
    if agreement >= least_db:
        return fused, "fused"
    precise_opts = options()
    precise_opts.add_session_config_entry(*PRECISE_ENTRY)
    precise = ort.InferenceSession(blob, precise_opts, providers=["CPUExecutionProvider"])
    precise_agreement = int8_agreement_db(precise, reference, info)
    if precise_agreement >= least_db:
        log.warning("%s: this CPU's uint8 x int8 kernels disagree with the model (%.1f dB on a probe, under %.0f dB; x86 without VNNI saturates their 16-bit pairs): running it with uint8 x uint8 kernels (%.1f dB), correct and about as fast as its fp32 model", name, agreement, least_db, precise_agreement)
        return precise, "fused, uint8 x uint8"
    log.warning("%s: this CPU's int8 kernels disagree with the model (%.1f dB on a probe, %.1f dB with uint8 x uint8 kernels; under %.0f dB): running its graph unfused, correct but slower than its fp32 model", name, agreement, precise_agreement, least_db)
    return reference, "unfused"
