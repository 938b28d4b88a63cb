"""Static int8 quantization of an exported model (onnxruntime QDQ: per-channel symmetric int8
weights, asymmetric uint8 activations, a dedicated Q/DQ pair per consumer), calibrated on
noisy *training* inputs, never on validation data; the metadata is carried over and
``autoenc.quantization`` records the scheme, the calibration set and the measured validation
change. ``autoenc export --int8`` and ``autoenc quantize`` call :func:`int8_twin`. Needs the ``train`` extra (onnx, torch for the data pipeline).

Why uint8 activations and dedicated pairs: on x86 onnxruntime fuses a DQ -> Conv -> Q group
into an integer ``QLinearConv`` only for uint8 activations with int8 weights (U8S8, the VNNI
path) and only where the input DQ feeds that Conv alone. With int8 activations or shared DQ
nodes (every U-Net skip), 9 of image-gray's 19 convs ran as fp32 between Q/DQ pairs, and the
"int8" model was no faster than fp32.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from autoenc.made_with import model_config, model_data
from autoenc.runtime.media import atomic_write
from autoenc.runtime.metadata import ModelInfo
from autoenc.weight_storage import PARAMETER_SUFFIXES, as_fp32

if TYPE_CHECKING:  # the data pipeline imports torch; only needed at call time
    from autoenc.data import TrainingData

log = logging.getLogger(__name__)


class _Reader(CalibrationDataReader):
    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self.it = iter([{input_name: b.astype(np.float32)} for b in batches])

    def get_next(self):
        return next(self.it, None)


def calibration_inputs(data: TrainingData, n: int = 64) -> list[np.ndarray]:
    """``n`` noisy training inputs (1, C, H, W) or (1, C, T) drawn as training draws them
    (seeded) from the run's train split, as the model takes them: with the noise-level plane, or
    through the prefilter, if it has one. Images come from the training photos only, never the
    synthetic dead-leaves share: their full-contrast edges widened the activation ranges (the
    image-gray twin calibrated with them lost 0.24 dB at sigma 15 on held-out photos, 0.10 without)."""
    from autoenc.data import model_input
    from autoenc.models import build_model

    cfg = data.cfg
    model = build_model(cfg.model, cfg.network_channels)  # only what its input is: model_input reads that
    return [model_input(model, noisy[None], cfg.data.sample_rate).numpy() for noisy, _ in itertools.islice(iter(data.dataset(0, media_only=True)), n)]


_PASS_THROUGH = ("Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Slice", "Pad")


def residual_head(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that form the model's output ``x - noise``: the final Sub (and any
    reshapes after it) and the noise head feeding it: its Conv, or Convs in a row with only
    reshapes between (opponent_unet_dae maps its planes' noise back to RGB with a 1x1 conv).
    They stay fp32 (cheap convs), so
    the output is not rounded to 8 bits over its whole range. Measured on image-color-fast: -0.056
    dB on its held-out pairs with them quantised, -0.040 dB kept fp32.

    The input reaches the Sub unquantised, like the input convs (:func:`input_convs`), so the
    head estimates the noise of exactly the input it is subtracted from. (Before, with the input
    quantised for the first conv, the Sub had to take that same 8-bit input: bypassing it cost
    -0.19 dB mean SI-SDR on the speech-int8 of then, since the model had removed the rounding it
    then added back.)"""
    producer = {o: n for n in model.graph.node for o in n.output}
    keep, node = [], producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in _PASS_THROUGH:
        keep.append(node.name)
        node = producer.get(node.input[0])
    if node is not None and not _reads_input(node, producer, model.graph.input[0].name):
        # a stage after the residual (unet1d_dae's spectral gate): its Sub is inside the graph
        keep, node = [], next((n for n in model.graph.node if n.op_type == "Sub" and _reads_input(n, producer, model.graph.input[0].name)), None)
    if node is not None and node.op_type in ("Sub", "Add"):
        keep.append(node.name)
        for name in node.input:
            src = producer.get(name)
            while src is not None and src.op_type in _PASS_THROUGH:
                src = producer.get(src.input[0])
            while src is not None and src.op_type == "Conv":  # the noise head: linear convs in a row
                keep.append(src.name)
                src = producer.get(src.input[0])
                while src is not None and src.op_type in _PASS_THROUGH:
                    keep.append(src.name)
                    src = producer.get(src.input[0])
    return [k for k in keep if k]  # an empty name would exclude every unnamed node


def _source(producer: dict[str, onnx.NodeProto], name: str, through: tuple[str, ...] = _PASS_THROUGH) -> onnx.NodeProto | None:
    """The node that made tensor ``name``, looking through nodes of the op types ``through``
    (None for a graph input or initializer)."""
    src = producer.get(name)
    while src is not None and src.op_type in through:
        src = producer.get(src.input[0])
    return src


def _reads_input(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], graph_input: str) -> bool:
    """Whether ``node``'s first operand is the graph input, through reshapes only."""
    name = node.input[0] if node.input else ""
    while name != graph_input and name in producer and producer[name].op_type in _PASS_THROUGH:
        name = producer[name].input[0]
    return name == graph_input


def gate_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of a spectral gate's nodes (:mod:`autoenc.models.spectral`, found by the
    exporter's namespace, the class name) other than its learned convs: the STFT and inverse,
    the power, log and noise-floor features, the gain and its products with the spectrum. They
    stay fp32: 8 bits over a spectrum's range would zero its quiet bins, and the log features
    are where level-freedom lives. The learned convs between features and gain (about a third
    of the gate's MACs; the fixed transforms are the rest) are quantised like the U-Net.
    A graph that holds a gate's transforms but none of its nodes by namespace is refused (an
    exporter that stopped writing it must not get the STFT quantised silently)."""
    from autoenc.models.spectral import BUFFERS, BandGate, SpectralGate

    gates = (SpectralGate.__name__, BandGate.__name__)

    def scope(n: onnx.NodeProto) -> str:
        return next((p.value for p in n.metadata_props if p.key == "namespace"), "")

    learned = {t.name for t in model.graph.initializer if t.name.split("::")[0].endswith(PARAMETER_SUFFIXES)}
    found = [n.name for n in model.graph.node if n.name and any(g in scope(n) for g in gates) and not (n.op_type == "Conv" and any(i in learned for i in n.input[1:]))]
    if not found and any(t.name.endswith("." + BUFFERS[0]) for t in model.graph.initializer):
        raise ValueError(f"a spectral-gated model whose gate nodes are not found (no {' or '.join(gates)} namespace in the graph): refusing to quantise its STFT")
    return found


def fixed_maps(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that apply a fixed (not learned) map held in a float constant of 3 or
    more values: opponent_unet_dae's colour transform and its per-plane noise-level gains. They
    stay fp32: cheap (a few multiply-adds per pixel), and int8 would round the map itself."""
    consts = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and not t.name.endswith(PARAMETER_SUFFIXES) and int(np.prod(t.dims)) >= 3}
    return [n.name for n in model.graph.node if n.name and n.op_type in ("Conv", "Mul") and any(i in consts for i in n.input)]


def input_convs(model: onnx.ModelProto, kept: list[str]) -> list[str]:
    """Names of the model's *stem*: the learned Convs that read the graph input itself or planes
    a fixed map (:func:`fixed_maps`: opponent_unet_dae's colour transform and noise-level gains;
    a spectral model's STFT conv is one too, but its outputs feed only power and gain arithmetic)
    made of it, through reshapes and Concats only; those Concats; and the Adds that join only
    stem Convs' outputs (plane_unet_dae's and opponent_unet_dae's ``head(planes) + guide(...)``).
    :func:`quantize_int8` keeps them in fp32 (a few kMAC per pixel, a few % of a U-Net's), for
    three reasons:

    - **Audio** is finer than 8 bits: a 16-bit recording rounded to 256 levels over a range
      wide enough for clicks keeps a handful of levels in a quiet passage. The int8 speech model
      (99.99th percentile) returned clean speech at 35.9 dB SI-SDR and lost 0.89 dB mean on its
      held-out settings (13.81 -> 12.91); with its input conv in fp32 (1 input channel: well under
      1 % of the MACs), 60.0 dB and -0.25 dB (13.55), at the same percentile.
    - **A colour map's planes** are float combinations of the 8-bit input; rounding them to 8
      bits again is noise a denoiser cannot tell from the photo's. On the quantization-aware
      photo-context weights (camera and Gaussian validation pairs; simulated int8, weights fp32),
      8-bit activations at opponent_unet_dae's head conv alone cost -0.062 dB, at any of its 16
      other convs at most -0.037. The whole stem must stay fp32, Concat and Add included: with
      only the head Conv excluded, onnxruntime still quantised the Concat before it and the Add
      after it, and the twin lost -0.191 dB against -0.153 with everything quantised; with the
      Concat and the Add excluded too, -0.127 (``keep``-list probes, 2026-12-04).
    - **x86 without VNNI** multiplies uint8 by int8 in 16-bit pairs that saturate, and the input
      conv is where they do: its input spans the whole 8-bit range. On an AVX2-only EPYC, fused
      kernels agreed with their own Q/DQ graph at only 37-39 dB for photo, photo-fast and
      image-gray-fast with their input quantised (so they ran onnxruntime's slower uint8 x uint8
      kernels, at about fp32 speed: photo 0.57 MP/s), and at 69-71 dB with the input conv fp32
      (fused: photo 1.04 MP/s, image-gray-fast 2.20 against 1.41). Change on their held-out pairs:
      photo +0.005 -> -0.001 dB, photo-fast -0.033 -> -0.027, image-gray-fast -0.017 -> -0.022.

    Twins made before the stem rule (2026-12-04) kept only the Convs that read the input through
    reshapes: plane_unet_dae's guide and opponent_unet_dae's two stem Convs were quantised (the
    shipped image-color-fast-int8 is such a twin, made before input convs stayed fp32 at all).
    A quantization-aware run started before the rule and resumed after it keeps the ranges of its
    checkpoint, stem convs included: its simulation then quantises convs its twin keeps fp32.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    maps = set(fixed_maps(model))
    convs, joins, seen, todo = [], [], set(), [model.graph.input[0].name]
    while todo:
        for n in consumers.get(todo.pop(), []):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op_type == "Conv" and n.name not in kept:
                convs.append(n)
            elif n.op_type in _PASS_THROUGH or n.op_type == "Concat" or n.name in maps:
                # (a Shape's output is a size; another kept node's output, e.g. x - noise, is no stem)
                if n.op_type == "Concat":
                    joins.append(n)
                todo.extend(n.output)
    stem = {id(c) for c in convs}

    def from_stem(name: str) -> bool:
        src = _source(producer, name)
        return src is not None and id(src) in stem

    adds = [n for n in model.graph.node if n.op_type in ("Add", "Sum") and len(n.input) > 1 and all(from_stem(i) for i in n.input)]
    return [n.name for n in convs + joins + adds if n.name]


_JOINS = ("Concat", "Add", "Sum")


def output_tail(model: onnx.ModelProto, head: list[str], stem: list[str]) -> list[str]:
    """Names of the decoder's last stage where it joins the stem: walking back from the residual
    head's first Conv (:func:`residual_head`) through ReLUs, reshapes and single-input Convs to
    the first Concat or Add, that join and those Convs, when the join reads a stem output
    (:func:`input_convs`: the U-Nets' full-resolution skip); else nothing.
    :func:`quantize_int8` keeps them fp32. The skip carries the finest detail, the noise itself
    included, and the convs after it compute the noise estimate the head subtracts: rounding the
    skip and their activations to 8 bits is error the model cannot remove, and it shows where the
    picture is smooth (sky, blurred backgrounds) and the fp32 model reaches 40-48 dB. On the 24
    smoothest 96 px crops of image-gray's validation photos (scikit-learn, PyWavelets; Gaussian
    sigma 15 / 25, 8-bit) its twin of 2026-12-04 lost -0.32 / -0.19 dB against the fp32 model; the
    same weights with this tail fp32 but the skip still rounded for its Concat, -0.12 / -0.04;
    with the skip read unrounded too (:func:`fp32_reads`), -0.03 / +0.02; with only the Concat and
    first Conv fp32, -0.19 / -0.08; any other one Conv fp32, at most +0.01 (simulated int8:
    unrounding the Concat's input alone won two thirds of what unrounding every activation did).
    The cost: 15.6 of image-gray's 112 kMAC per pixel, about 5% of its int8 speed (README, export)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node if n.name}
    convs = [by_name[k] for k in head if k in by_name and by_name[k].op_type == "Conv"]
    if not convs:
        return []
    stem_ids = {id(by_name[k]) for k in stem if k in by_name}
    source = lambda name: _source(producer, name, (*_PASS_THROUGH, "Relu"))  # noqa: E731

    tail, node = [], source(convs[-1].input[0])  # residual_head lists the head from the output back
    while node is not None and node.op_type == "Conv" and node.name not in head:
        tail.append(node)
        node = source(node.input[0])
    if node is None or node.op_type not in _JOINS or not any(id(source(i)) in stem_ids for i in node.input):
        return []
    return [n.name for n in [*tail, node] if n.name]


def fp32_reads(model: onnx.ModelProto, keep: list[str]) -> int:
    """Rewire, in the quantised ``model``, each input of a ``keep`` (fp32) node that onnxruntime's
    quantizer fed through a QuantizeLinear -> DequantizeLinear pair although the tensor was made by
    an fp32 node (through ReLUs and reshapes): the node then reads it unrounded. (The quantizer
    quantises a tensor once for all its consumers: the stem's output, which quantised convs also
    read, reached the fp32 tail's Concat rounded to 8 bits.) Quantised consumers keep their pair.
    Returns how many inputs were rewired."""
    producer = {o: n for n in model.graph.node for o in n.output}
    fp32 = set(keep)

    def made_in_fp32(name: str) -> bool:
        src = producer.get(name)
        while src is not None and (src.op_type in _PASS_THROUGH or src.op_type == "Relu") and src.name not in fp32:
            src = producer.get(src.input[0])
        return src is not None and src.name in fp32

    done = 0
    for n in model.graph.node:
        if n.name not in fp32:
            continue
        for k, name in enumerate(n.input):
            dq = producer.get(name)
            qn = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if qn is not None and qn.op_type == "QuantizeLinear" and made_in_fp32(qn.input[0]):
                n.input[k] = qn.input[0]
                done += 1
    return done


CALIBRATION_PERCENTILE = {"image": 99.99, "audio": 99.999}  # per modality: activation ranges clip
# the rarest activations, whose min/max would waste the 8 bits. Audio training inputs hold rare
# huge clicks (crackle, clipping): on the voices speech model's held-out settings, its input
# quantised, min/max cost -1.55 dB mean SI-SDR, percentiles 99.9 / 99.99 / 99.999 -0.92 / -0.65
# / -0.97 dB; with its input convs in fp32 (input_convs), the context-block speech model
# lost -0.25 / -0.19 / -0.22 dB at 99.99 / 99.999 / 99.9999 (crackle -0.94 / -0.54 / -0.43, clean
# 40 dB input -0.73 / -0.67 / -0.67). Images: the strongest training noise (sigma 55) sets min/max
# ranges too coarse for clean photos; on image-gray, on 384^2 crops of the validation sources
# (scikit-learn, PyWavelets) at sigma 5 / 15 / 25 / 50, min/max cost -0.14 / -0.07 / -0.03 / -0.01
# dB, 99.999 -0.07 / -0.04 / -0.02 / -0.01, 99.99 -0.04 / -0.02 / +0.01 / -0.02.


def quantize_int8(fp32: str | Path, out: str | Path, calibration: list[np.ndarray], note: dict | None = None, percentile: float | None = None) -> None:
    """Write an int8 QDQ copy of ``fp32`` to ``out`` (atomically), calibrated over
    ``calibration`` inputs with min/max, or with the ``percentile`` of each activation's
    histogram; Conv weights per channel. The residual head, fixed maps, the input stem
    (:func:`input_convs`) and the decoder's last stage (:func:`output_tail`) stay fp32. ``note`` goes into the ``autoenc.quantization``
    metadata next to the scheme."""
    src = as_fp32(onnx.load(str(fp32)))  # the quantizer wants float32 weight initializers
    name = src.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        plain, q = Path(tmp) / "fp32.onnx", Path(tmp) / "q.onnx"
        onnx.save(src, str(plain))
        fixed, head, gate = fixed_maps(src), residual_head(src), gate_nodes(src)
        keep = list(dict.fromkeys(head + fixed + gate))  # in that order, each node once
        first = input_convs(src, keep)
        keep += first
        tail = [n for n in output_tail(src, head, first) if n not in keep]
        keep += tail
        quantize_static(
            str(plain), str(q), _Reader(name, calibration), quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=keep,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "DedicatedQDQPair": True, **({"CalibPercentile": percentile} if percentile else {})},
        )
        model = onnx.load(str(q))
    unrounded = fp32_reads(model, keep)
    del model.metadata_props[:]
    for p in src.metadata_props:
        model.metadata_props.add(key=p.key, value=p.value)
    scheme = "static QDQ, per-channel symmetric int8 weights, asymmetric uint8 activations, " + (f"{percentile:g}th-percentile calibration" if percentile else "min/max calibration")
    info = {"scheme": scheme + ("; residual output head in fp32" if head else "") + ("; fixed colour maps in fp32" if fixed else "") + ("; input stem (the convs that read the input or its colour planes, with their Concats and Adds) in fp32" if first else "") + ("; the decoder's last stage from its join with the stem in fp32" if tail else "") + ("; spectral gate's transforms and gain arithmetic in fp32" if gate else ""), "fp32_nodes": keep, "fp32_reads": unrounded, "calibration_inputs": len(calibration), **(note or {})}
    model.metadata_props.add(key="autoenc.quantization", value=json.dumps(info))
    blob = model.SerializeToString()
    atomic_write(out, lambda f: f.write(blob))
    log.info("wrote int8 model %s (%.2f MB)", out, len(blob) / 1e6)


def val_delta(data: TrainingData, fp32: str | Path, int8: str | Path) -> dict[str, float]:
    """Mean validation score (PSNR dB for images, SI-SDR dB for audio) of the fp32 and int8
    files on the run's held-out pairs, per noise setting and overall, run with onnxruntime."""
    from autoenc.metrics import psnr, si_sdr

    cfg = data.cfg
    if cfg.modality == "image":
        from autoenc.runtime.infer import OnnxDenoiser

        runners = {k: OnnxDenoiser(p) for k, p in (("fp32", fp32), ("int8", int8))}
        run = lambda r, x: r.denoise(x.permute(1, 2, 0).numpy())  # noqa: E731
        metric = lambda clean, y: psnr(clean.permute(1, 2, 0).numpy(), y)  # noqa: E731
    else:
        from autoenc.runtime.audio_infer import OnnxAudioDenoiser

        runners = {k: OnnxAudioDenoiser(p) for k, p in (("fp32", fp32), ("int8", int8))}
        run = lambda r, x: r.denoise(x[0].numpy()[:, None])[:, 0]  # noqa: E731
        metric = lambda clean, y: si_sdr(clean[0].numpy(), y)  # noqa: E731
    out: dict[str, float] = {}
    for tag, pairs in data.val.items():
        for k, r in runners.items():
            out[f"{tag}/{k}"] = float(np.mean([metric(clean, run(r, noisy)) for noisy, clean in pairs]))
    for k in runners:
        out[k] = float(np.mean([v for t, v in out.items() if t.endswith("/" + k)]))
    out["delta_db"] = out["int8"] - out["fp32"]
    return out


def int8_twin(source: str | Path, fp32: str | Path, n_calibration: int = 64, against: str | Path | None = None, overrides: list[str] | None = None) -> tuple[Path, dict[str, float]]:
    """Write ``<fp32 stem>-int8.onnx`` beside ``fp32``, calibrated on ``n_calibration`` training
    inputs, with its measured held-out change recorded in the metadata; returns (int8 path,
    :func:`val_delta` result). ``source``: the checkpoint ``fp32`` was exported from (its run
    folder holds the manifest), or the training config (.yaml) it was made with, whose data is
    ingested again (a shipped model whose run folder is gone), with ``overrides`` (``key=value``,
    as ``autoenc train --set`` took them); either way its config hash must be the model's. ``against``: the fp32 model the
    twin stands in for, when it is not ``fp32`` (a quantization-aware fine-tune's start, see
    :mod:`autoenc.qat`; by default that start where it is an fp32 .onnx): the change is
    measured against it, on the same held-out pairs."""
    src = onnx.load(str(fp32), load_external_data=False)
    info = ModelInfo.from_props({p.key: p.value for p in src.metadata_props})
    if any(p.key == "autoenc.quantization" for p in src.metadata_props):
        raise ValueError(f"{fp32} is already quantised; give the fp32 model")
    cfg, ckpt = model_config(source, fp32, info, overrides)
    start = cfg.train.init_from if cfg.train.quantization_aware else None
    if against is None and start is not None and str(start).endswith(".onnx"):
        against = start  # a quantization-aware fine-tune's twin stands in for the model it started from
    if against is not None:
        ref = onnx.load(str(against), load_external_data=False)
        props = {p.key: p.value for p in ref.metadata_props}
        theirs = ModelInfo.from_props(props)
        if "autoenc.quantization" in props or (theirs.modality, theirs.channels) != (info.modality, info.channels):
            raise ValueError(f"--against {against}: needs an fp32 {info.modality} model with {info.channels} channel(s) like {fp32}")
    elif start is not None:
        log.warning("%s was fine-tuned quantization-aware from %s; its int8 change is measured against its own fp32 export (give --against the fp32 model it stands in for)", source, start)
    data, origin = model_data(source, cfg, ckpt, overrides)
    q = Path(fp32).with_name(Path(fp32).stem + "-int8.onnx")
    note = {"quantization_aware_from": str(start)} if start is not None else {}
    if start is not None and cfg.train.distill:
        note["distilled"] = True  # trained towards the start model's output, not the clean target
    note.update(origin)
    if against is not None:
        note["against"] = str(against)
    quantize_int8(fp32, q, calibration_inputs(data, n_calibration), note=note, percentile=CALIBRATION_PERCENTILE[info.modality])
    delta = val_delta(data, against if against is not None else fp32, q)
    # Record the measured effect in the file just written (no second calibration pass).
    model = onnx.load(str(q))
    prop = next(p for p in model.metadata_props if p.key == "autoenc.quantization")
    prop.value = json.dumps({**json.loads(prop.value), "val": delta})
    blob = model.SerializeToString()
    atomic_write(q, lambda f: f.write(blob))
    return q, delta
