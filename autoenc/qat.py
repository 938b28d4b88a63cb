"""Quantization-aware fine-tuning: train a model while its convolutions see what the int8 model
will give them, so the int8 twin made afterwards (:mod:`autoenc.quantize`) loses less.

How: the model is exported and quantised once with the same scheme and calibration as its int8
twin (:func:`autoenc.quantize.quantize_int8`); from that int8 graph each quantised Conv's input
and output scales and zero points are read and the Conv is found again in the torch model by the name of its
weight. Its forward then uses

- the input fake-quantised to uint8 with that fixed scale and zero point (clipped to the range
  the calibration chose, rounded to its step), and its output too where the int8 graph
  quantises it (before a ReLU, a Concat of a skip, a Resize: onnxruntime folds the ReLU into
  the uint8 range), and a residual sum around it (``f + conv(f)``) rounded where the int8 graph
  rounds it (a forward hook on the module computing the sum), and
- the weight fake-quantised per output channel, symmetric int8 (scale ``max|w| / 127``, as
  onnxruntime's symmetric weights),

with straight-through gradients; and where the int8 graph quantises its input (for the first
conv and for ``x - noise``: twins made before the input convs stayed fp32, whose ranges a resumed
fine-tune reads back from its checkpoint), the model sees that 8-bit input (a forward pre-hook).
Convs the int8 model keeps in fp32 (the residual noise head, fixed colour maps, the convs that
read the input or its colour planes: the stem, :func:`autoenc.quantize.input_convs`) are left as they are.
Only instance attributes change (each conv's ``forward``, the hook), so the state dict, the EMA
and the checkpoints are unchanged; :func:`detach` restores the model.

The ranges are calibrated once, on the weights the fine-tune starts from, and kept in its
checkpoints (a resumed run reuses them); ``autoenc quantize`` calibrates the twin again on the
fine-tuned weights, whose ranges differ little. Validation during such a run scores the
simulated int8 model, and the best checkpoint is chosen by it.

Measured on image-gray before this existed: with int8 weights and 16-bit activations the int8
loss on training photos fell from -0.30 / -0.16 / -0.32 dB (sigma 15 / 25 / 50) to +0.00 / +0.01
/ -0.25, so the loss is the activations' rounding (low sigma) and clipping (high sigma), which
fixed-range fake quantization lets the weights adapt to.
"""

from __future__ import annotations

import logging
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import torch
from onnx import numpy_helper

if TYPE_CHECKING:
    from autoenc.data import TrainingData

log = logging.getLogger(__name__)

WEIGHT_QMAX = 127  # symmetric int8 weights: -127..127 (onnxruntime's symmetric range)
QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a quantised initializer: <name>_quantized
INPUT = "<input>"  # conv_ranges' key for the graph input's own range
SUM = ":sum"  # conv_ranges' key suffix for a residual sum around a conv (a module's output), after the module's name


Range = tuple[float, int]  # (scale, zero point) of a uint8 activation


def conv_ranges(int8: onnx.ModelProto) -> dict[str, tuple[Range, Range | None]]:
    """For each quantised Conv of a QDQ model: its weight's name in the fp32 model (the torch
    parameter name) -> the (scale, zero point) of its input and of its output (None where the
    output is not quantised: it feeds an fp32 node). Under the key :data:`INPUT` (where the
    graph's input is quantised): the input's range, output None. Where a quantised Conv's output
    reaches, through reshapes only, an Add whose sum is quantised (a residual ``f + conv(f)``,
    :class:`autoenc.models.opponent.PlaneMix`), that sum's range under the conv's module name
    plus :data:`SUM` (its owner, one level up, is the module that computes the sum), output None:
    the sum is rounded once for every reader, a skip's Concat included, where the convs reading
    it would otherwise see only their own rounding of it."""
    init = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    producer = {o: n for n in int8.graph.node for o in n.output}
    quantizer = {n.input[0]: n for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    qparams = lambda q: (float(init[q.input[1]]), int(init[q.input[2]]))  # noqa: E731
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in int8.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, tuple[Range, Range | None]] = {}
    if int8.graph.input[0].name in quantizer:
        out[INPUT] = (qparams(quantizer[int8.graph.input[0].name]), None)
    for node in int8.graph.node:
        if node.op_type != "Conv":
            continue
        act, weight = (producer.get(node.input[i]) for i in (0, 1))
        if act is None or weight is None or act.op_type != "DequantizeLinear" or weight.op_type != "DequantizeLinear":
            continue  # an fp32 Conv (kept out of quantisation)
        q_out = quantizer.get(node.output[0])
        name = weight.input[0].removesuffix(QUANTIZED_SUFFIX)
        out[name] = (qparams(act), qparams(q_out) if q_out is not None else None)
        total = _residual_sum(consumers, node)
        if total is not None and total.output[0] in quantizer:
            out[name.removesuffix(".weight").rpartition(".")[0] + SUM] = (qparams(quantizer[total.output[0]]), None)
    return out


_DATA_MOVES = ("QuantizeLinear", "DequantizeLinear", "Reshape")


def _residual_sum(consumers: dict[str, list[onnx.NodeProto]], conv: onnx.NodeProto) -> onnx.NodeProto | None:
    """The Add that ``conv``'s output reaches (``consumers``: the graph's readers of each
    tensor) through Q/DQ pairs and reshapes only, when it is the one node it reaches; else None."""
    node = conv
    while True:
        nxt = consumers.get(node.output[0], [])
        if len(nxt) != 1:
            return None
        node = nxt[0]
        if node.op_type == "Add":
            return node
        if node.op_type not in _DATA_MOVES:
            return None


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / WEIGHT_QMAX).clamp(min=1e-12)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), torch.zeros_like(scale, dtype=torch.int32), 0, -WEIGHT_QMAX, WEIGHT_QMAX)


def _fake_quant(x: torch.Tensor, r: Range) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, r[0], r[1], 0, 255)


def _quantized_forward(conv: torch.nn.Conv2d | torch.nn.Conv1d, inp: Range, outp: Range | None):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(_fake_quant(x, inp), _fake_quant_weight(self.weight), self.bias)
        return y if outp is None else _fake_quant(y, outp)

    return types.MethodType(forward, conv)


def _quantized_input(args: tuple, r: Range) -> tuple:
    return (_fake_quant(args[0], r), *args[1:])


def _quantized_output(module: torch.nn.Module, args: tuple, out: torch.Tensor, r: Range) -> torch.Tensor:
    return _fake_quant(out, r)


def attach(model: torch.nn.Module, ranges: dict[str, tuple[Range, Range | None]]) -> list[str]:
    """Make each Conv of ``model`` named in ``ranges`` (by its weight, see
    :func:`conv_ranges`) compute as its int8 twin will, and the model see its input as the int8
    model does (8-bit, where it quantises the input: its ``x - noise`` starts from that too);
    returns the module names."""
    detach(model)
    done, convs, hooks = [], [], []
    for name, module in model.named_modules():
        key = f"{name}.weight"
        if key in ranges and isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            module.forward = _quantized_forward(module, *ranges[key])
            done.append(name)
            convs.append(module)
        if name + SUM in ranges:  # a residual sum the int8 model rounds: the module's output
            hooks.append(module.register_forward_hook(lambda m, args, out, r=ranges[name + SUM][0]: _quantized_output(m, args, out, r)))
            done.append(name + SUM)
    missing = set(ranges) - {f"{n}.weight" for n in done} - set(done) - {INPUT}
    if missing:
        raise ValueError(f"quantised convs not found in the torch model: {sorted(missing)}")
    if INPUT in ranges:
        model._qat_input = model.register_forward_pre_hook(lambda m, args, r=ranges[INPUT][0]: _quantized_input(args, r))
    model._qat_convs, model._qat_sums = convs, hooks
    return [n for n in done if not n.endswith(SUM)]


def detach(model: torch.nn.Module) -> None:
    """Undo :func:`attach`: every module computes in fp32 again."""
    for module in model.__dict__.pop("_qat_convs", []):
        module.__dict__.pop("forward", None)
    for handle in model.__dict__.pop("_qat_sums", []):
        handle.remove()
    handle = model.__dict__.pop("_qat_input", None)
    if handle is not None:
        handle.remove()


def calibrated_ranges(model: torch.nn.Module, data: TrainingData, opset: int) -> dict[str, tuple[Range, Range | None]]:
    """Export ``model`` as it is now, quantise it as its int8 twin would be (same calibration
    inputs from the training split, same percentile) and read back its Convs' input and output ranges (:func:`conv_ranges`)."""
    from autoenc.export import export_bytes
    from autoenc.quantize import CALIBRATION_PERCENTILE, calibration_inputs, quantize_int8

    was_training = model.training
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, q = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(export_bytes(model, opset))
        quantize_int8(fp32, q, calibration_inputs(data), percentile=CALIBRATION_PERCENTILE[data.cfg.modality])
        ranges = conv_ranges(onnx.load(str(q)))
    model.train(was_training)
    return ranges


def quantization_aware(model: torch.nn.Module, data: TrainingData, opset: int, ranges: dict | None = None) -> dict[str, tuple[Range, Range | None]]:
    """:func:`attach` ``ranges`` (those a resumed run kept) or, without them, the ranges
    :func:`calibrated_ranges` finds for ``model`` now; logs and returns the ranges used."""
    if ranges is None:
        ranges = calibrated_ranges(model, data, opset)
    else:
        ranges = {k: (tuple(i), tuple(o) if o is not None else None) for k, (i, o) in ranges.items()}  # as a checkpoint stores them
    names = attach(model, ranges)
    log.info("quantization-aware: %d convs train as int8 (activation ranges fixed by calibration)", len(names))
    return ranges
