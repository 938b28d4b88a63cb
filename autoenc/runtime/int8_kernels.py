"""int8 on this CPU: whether onnxruntime's fused integer kernels compute what an int8 model's
Q/DQ graph says. Torch-free.

x86 CPUs without VNNI multiply uint8 activations by int8 weights in 16-bit pairs that saturate;
on an AVX2-only EPYC image-gray-fast-int8 came out 7 dB below its fp32 model. A fixed probe run
through the fused session and through the same graph unfused tells whether this CPU is one.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from autoenc.runtime.metadata import ModelInfo

log = logging.getLogger(__name__)
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


def uint8_weights(blob: bytes) -> bytes:
    """The int8 model ``blob`` (serialized ONNX) with its int8 weights stored as uint8: each
    value and its zero point plus 128, so every weight dequantizes to the same number.
    onnxruntime then multiplies uint8 by uint8, widening both to 16 bits first: no pair can
    saturate, and the convs stay fused ``QLinearConv``."""
    import onnx  # only needed on CPUs whose uint8 x int8 kernels saturate
    from onnx import numpy_helper

    model = onnx.load_from_string(blob)
    inits = {t.name: t for t in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        for name in node.input[:3:2]:  # the quantized tensor and its zero point
            t = inits.get(name)
            if t is None or name in done or t.data_type != onnx.TensorProto.INT8:
                continue
            t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t).astype(np.int16) + 128).astype(np.uint8), name))
            done.add(name)
    return model.SerializeToString()


def int8_session(blob: bytes, opts: ort.SessionOptions, fused: ort.InferenceSession, info: ModelInfo, name: str = "model", least_db: float = INT8_AGREEMENT_DB) -> tuple[ort.InferenceSession, str]:
    """The session that computes what the int8 model ``blob`` says on this CPU, fastest first,
    and how: ``fused`` (built from ``blob`` with ``opts``) where it agrees with the same graph
    run unfused to at least ``least_db`` dB on :func:`probe_input`; else the graph with
    :func:`uint8_weights`, fused, where that agrees; else the graph unfused (correct, slowest).
    Any but the first is logged as a warning naming ``name``.
    On an AVX2-only EPYC the uint8-weights graph ran at about the fp32 model's speed (image-gray-fast
    1.15 s/MP against fp32 1.10 and unfused 1.75, 2 threads)."""
    plain = ort.SessionOptions()
    plain.intra_op_num_threads, plain.inter_op_num_threads = opts.intra_op_num_threads, opts.inter_op_num_threads
    plain.log_severity_level, plain.enable_mem_pattern = opts.log_severity_level, opts.enable_mem_pattern
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(blob, plain, providers=["CPUExecutionProvider"])
    agreement = int8_agreement_db(fused, reference, info)
    if agreement >= least_db:
        return fused, "fused"
    widened = ort.InferenceSession(uint8_weights(blob), opts, providers=["CPUExecutionProvider"])
    widened_agreement = int8_agreement_db(widened, reference, info)
    if widened_agreement >= least_db:
        log.warning("%s: this CPU's uint8 x int8 kernels disagree with the model (%.1f dB on a probe, under %.0f dB; x86 without VNNI saturates their 16-bit pairs): running it with its weights as uint8 (%.1f dB), correct and about as fast as its fp32 model", name, agreement, least_db, widened_agreement)
        return widened, "fused, uint8 weights"
    log.warning("%s: this CPU's int8 kernels disagree with the model (%.1f dB on a probe, %.1f dB with uint8 weights; under %.0f dB): running its graph unfused, correct but slower than its fp32 model", name, agreement, widened_agreement, least_db)
    return reference, "unfused"
