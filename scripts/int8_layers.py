"""Compare, conv by conv, what a quantization-aware torch model (:mod:`autoenc.qat`) feeds each
quantised conv with what the int8 twin's own Q/DQ graph (onnxruntime, graph optimisation off)
feeds it, on one noisy image: does the fake-quantised model compute what the int8 model
computes, and where does it part from it?

    python scripts/int8_layers.py CONFIG WEIGHTS INT8_ONNX IMAGE [--sigma 5] [--crop 128]

WEIGHTS: the checkpoint or fp32 .onnx the int8 model was quantised from (for a twin made after
a quantization-aware fine-tune, that run's weights, not the fp32 model it stands in for).

Prints, per quantised conv in graph order, the fraction of its input elements that differ by
more than half a quantisation step, then the PSNR (dB, against the clean crop) of the fp32
model, the int8 model and the fake-quantised torch model.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image

from autoenc import qat
from autoenc.checkpoint import start_from
from autoenc.config import load
from autoenc.data import model_input
from autoenc.models import build_model

log = logging.getLogger("int8_layers")


def conv_inputs(graph: onnx.ModelProto) -> dict[str, str]:
    """Each quantised conv's weight name (the torch parameter) -> the dequantised tensor it reads."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    out = {}
    for node in graph.graph.node:
        weight = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is not None and weight.op_type == "DequantizeLinear":
            out[weight.input[0].removesuffix(qat.QUANTIZED_SUFFIX)] = node.input[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("weights")
    ap.add_argument("int8")
    ap.add_argument("image")
    ap.add_argument("--sigma", type=float, default=5.0, help="Gaussian noise, 8-bit units")
    ap.add_argument("--crop", type=int, default=128, help="top-left crop (px)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = load(args.config)
    model = build_model(cfg.model, cfg.network_channels).eval()
    start_from(model, cfg.model.name, args.weights)
    graph = onnx.load(args.int8)
    ranges = qat.conv_ranges(graph)
    inputs = conv_inputs(graph)
    output = graph.graph.output[0].name
    graph.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in inputs.values())
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])

    mode = "RGB" if cfg.data.channels == 3 else "L"
    im = np.asarray(Image.open(args.image).convert(mode), dtype=np.float32)[: args.crop, : args.crop] / 255
    clean = torch.from_numpy(np.atleast_3d(im).transpose(2, 0, 1)[None].copy())
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32))
    noisy = torch.round((clean + args.sigma / 255 * noise).clamp(0, 1) * 255) / 255
    x = model_input(model, noisy)
    got = dict(zip([output, *inputs.values()], session.run(None, {session.get_inputs()[0].name: x.numpy()})))

    seen: dict[str, np.ndarray] = {}
    modules = dict(model.named_modules())
    for key in inputs:
        modules[key.removesuffix(".weight")].register_forward_hook(lambda m, a, o, key=key: seen.__setitem__(key, qat._fake_quant(a[0], ranges[key][0]).numpy()))
    with torch.no_grad():
        fp32 = model(x).numpy()
        qat.attach(model, ranges)
        fake = model(x).numpy()
    for key, tensor in inputs.items():
        step = ranges[key][0][0]
        log.info("%-30s input elements off by > half a step: %.4f", key, float(np.mean(np.abs(got[tensor] - seen[key]) > step / 2)))
    psnr = lambda y: float(-10 * np.log10(((np.clip(y, 0, 1) - clean.numpy()) ** 2).mean()))  # noqa: E731
    log.info("PSNR dB: fp32 %.2f  int8 %.2f  fake-quantised torch %.2f", psnr(fp32), psnr(got[output]), psnr(fake))


if __name__ == "__main__":
    main()
