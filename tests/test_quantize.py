"""int8 QDQ quantization: every conv but the residual noise head, the input stem and the
decoder's last stage runs as an integer QLinearConv in onnxruntime (not fp32 between Q/DQ pairs), the output
stays close to fp32, and the metadata is carried over."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from autoenc.runtime.metadata import ModelInfo
from autoenc.quantize import fixed_maps, input_convs, int8_twin, output_tail, quantize_int8, residual_head
from conftest import REPO, make_model_file, photo_sources, runtime_ops


@pytest.mark.parametrize("modality,name,channels,extra", [("image", "unet_dae", 1, {}), ("image", "plane_unet_dae", 3, {}), ("image", "opponent_unet_dae", 3, {}), ("image", "opponent_unet_dae", 3, {"plane_mixing": True}), ("audio", "unet1d_dae", 1, {})])
def test_int8_convs_are_integer_at_runtime(tmp_path, modality, name, channels, extra):
    fp32 = make_model_file(tmp_path, modality=modality, name=name, channels=channels, **extra)
    shape = (1, channels, 64, 64) if modality == "image" else (1, 1, 4096)
    rng = np.random.default_rng(0)
    smooth = lambda: np.cumsum(rng.random(shape, dtype=np.float32), axis=-1) / shape[-1]  # noqa: E731
    quantize_int8(fp32, tmp_path / "q.onnx", [smooth() for _ in range(8)], {"note": "test"})

    graph = onnx.load(str(fp32)).graph
    convs = {n.name for n in graph.node if n.op_type == "Conv"}
    plain = onnx.load(str(fp32))
    kept = residual_head(plain) + [n for n in fixed_maps(plain) if n not in residual_head(plain)]
    first = input_convs(plain, kept)
    stem_convs = [n for n in first if n in convs]
    # the stem: the input conv; plane's and opponent's also their guide conv (opponent's read its colour map's planes)
    assert set(stem_convs) <= convs - set(kept) and len(stem_convs) == (2 if name in ("plane_unet_dae", "opponent_unet_dae") else 1)
    kept += first  # 16-bit audio never goes through uint8, no conv saturates 16-bit pairs on a full-range 8-bit input, no colour plane is rounded again
    tail = output_tail(plain, residual_head(plain), first)
    tail_convs = [n for n in tail if n in convs]
    # the last decoder stage: its convs from the join with the stem's skip (a Concat; unet1d_dae's skips are summed)
    assert len(tail_convs) == (1 if name == "unet1d_dae" else 2) and [n.op_type for n in graph.node if n.name == tail[-1]] == ["Add" if name == "unet1d_dae" else "Concat"]
    kept += tail
    kept_convs = [n for n in kept if n in convs]
    head = {"opponent_unet_dae": 3, "plane_unet_dae": 1}.get(name, 1) + len(stem_convs) + len(tail_convs)  # noise head (opponent: one more conv back to RGB, and its colour map in) + the stem's and the tail's convs
    assert len(kept_convs) == head and any(n.op_type == "Sub" for n in graph.node if n.name in kept)  # the noise head and x - noise
    q = onnx.load(str(tmp_path / "q.onnx")).graph
    q_inputs = {i for n in q.node if n.op_type == "QuantizeLinear" for i in n.input}
    assert "input" not in q_inputs
    joins = [n for n in q.node if n.name in first and n.op_type in ("Concat", "Add")]
    guided = name in ("plane_unet_dae", "opponent_unet_dae")
    assert sum(n.op_type == "Add" for n in joins) == guided  # head + guide (and any Concat gathering the planes it reads)
    producer = {o: n for n in q.node for o in n.output}
    for n in joins:  # the stem's joins take fp32 operands, not 8-bit rounded ones
        assert all(producer[i].op_type != "DequantizeLinear" for i in n.input if i in producer), n.name
    join = next(n for n in q.node if n.name == tail[-1])  # the tail's join reads the stem's skip unrounded
    assert any(producer[i].op_type != "DequantizeLinear" for i in join.input if i in producer), [producer[i].op_type for i in join.input if i in producer]
    ops = runtime_ops(tmp_path / "q.onnx", tmp_path)
    assert ops["Conv"] + ops["FusedConv"] == head and ops["QLinearConv"] == len(convs) - head, ops

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert ModelInfo.from_props(props).modality == modality
    note = json.loads(props["autoenc.quantization"])
    assert note["note"] == "test" and note["fp32_nodes"] == kept

    x = smooth()
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    a, b = run(fp32), run(tmp_path / "q.onnx")
    assert np.abs(a - b).max() < 0.05 and np.abs(a - b).mean() < 0.01


def test_int8_gated_speech_model_keeps_its_spectral_gate_arithmetic_fp32(tmp_path):
    """unet1d_dae with a spectral gate: its STFT, inverse, log features and gain products stay
    fp32 (a spectrum in 8 bits loses its quiet bins), its learned gain convs and the U-Net are
    integer QLinearConvs, the U-Net's residual head (now inside the graph) and the last stage
    before it stay fp32, and the
    twin stays close to fp32 on a tone in noise."""
    from autoenc.quantize import gate_nodes
    from autoenc.weight_storage import as_fp32

    fp32 = make_model_file(tmp_path, width=8, levels=3, modality="audio", noise_scale=0.05, spectral_gate=True)
    rng = np.random.default_rng(0)
    sound = lambda: (0.3 * np.sin(np.arange(16000) / rng.uniform(3, 9)) + rng.normal(0, 0.05, 16000)).astype(np.float32)[None, None]  # noqa: E731
    quantize_int8(fp32, tmp_path / "q.onnx", [sound() for _ in range(8)], percentile=99.999)
    plain = as_fp32(onnx.load(str(fp32)))
    convs = {n.name for n in plain.graph.node if n.op_type == "Conv"}
    gate, head = gate_nodes(plain), residual_head(plain)
    gate_convs = [n for n in gate if n in convs]
    assert len(gate_convs) == 2 and set(gate_convs) == set(fixed_maps(plain))  # analysis and synthesis: the learned gain convs are not kept
    assert any(n.op_type == "Sub" for n in plain.graph.node if n.name in head) and len([n for n in head if n in convs]) == 1
    note = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}["autoenc.quantization"])
    assert set(gate) <= set(note["fp32_nodes"]) and "spectral gate" in note["scheme"]
    ops = runtime_ops(tmp_path / "q.onnx", tmp_path)
    tail = output_tail(plain, head, input_convs(plain, list(dict.fromkeys(head + gate))))
    assert len([n for n in tail if n in convs]) == 1 and set(tail) <= set(note["fp32_nodes"])
    fp32_convs = 2 + 1 + 1 + 1  # analysis, synthesis, the noise head, the input conv, the decoder's last conv (from its skip Add)
    assert ops["Conv"] + ops["FusedConv"] == fp32_convs and ops["QLinearConv"] == len(convs) - fp32_convs, ops
    x = sound()
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    a, b = run(fp32), run(tmp_path / "q.onnx")
    assert 10 * np.log10((a**2).sum() / ((a - b) ** 2).sum()) > 30  # dB
    for n in plain.graph.node:  # an exporter that no longer names the gate's nodes
        del n.metadata_props[:]
    with pytest.raises(ValueError, match="refusing"):
        gate_nodes(plain)


def test_int8_band_model_keeps_its_transforms_fp32_and_quantises_its_unet(tmp_path):
    """band_dae (a U-Net over the spectrogram): its STFT and inverse stay fp32 convs, every
    learned conv of its U-Net runs as an integer QLinearConv, and the twin stays close to fp32."""
    from autoenc.quantize import gate_nodes
    from autoenc.weight_storage import as_fp32

    fp32 = make_model_file(tmp_path, width=None, levels=None, modality="audio", name="band_dae", noise_scale=0.2, n_fft=128, widths=[4, 6, 8], dilations=[1, 2], floor_frames=4)
    rng = np.random.default_rng(0)
    sound = lambda: (0.3 * np.sin(np.arange(16000) / rng.uniform(3, 9)) + rng.normal(0, 0.05, 16000)).astype(np.float32)[None, None]  # noqa: E731
    quantize_int8(fp32, tmp_path / "q.onnx", [sound() for _ in range(8)], percentile=99.999)
    plain = as_fp32(onnx.load(str(fp32)))
    convs = {n.name for n in plain.graph.node if n.op_type == "Conv"}
    gate_convs = [n for n in gate_nodes(plain) if n in convs]
    assert len(gate_convs) == 2 and set(gate_convs) == set(fixed_maps(plain))  # analysis and synthesis
    ops = runtime_ops(tmp_path / "q.onnx", tmp_path)
    assert ops["Conv"] + ops["FusedConv"] == 2 and ops["QLinearConv"] == len(convs) - 2, ops
    x = sound()
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    a, b = run(fp32), run(tmp_path / "q.onnx")
    assert np.abs(a - x).max() > 1e-3 and 10 * np.log10((a**2).sum() / ((a - b) ** 2).sum()) > 30  # dB


def test_int8_twin_from_the_training_config_matches_the_checkpoint_route(tmp_path):
    """A shipped model whose run folder is gone is quantised from its training config: the data
    is ingested again, so the twin and its measured change are those the checkpoint gives; a
    config the model was not made with is refused."""
    import yaml

    from autoenc.config import load
    from autoenc.data import ingest
    from autoenc.export import to_onnx
    from autoenc.train import fit

    root = photo_sources(tmp_path / "photos", 3, 1)
    cfg = load(REPO / "configs/tiny-image.yaml", ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=32", "train.epochs=1", f"data.root={root}"])
    run = tmp_path / "run"
    ingest(root, cfg.data, run / "manifest.csv")
    to_onnx(fit(cfg, root, run / "manifest.csv", run), run / "model.onnx")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "seed": cfg.seed + 1}))  # trained with --set seed=...
    assert load(config).hash() != cfg.hash() == load(config, [f"seed={cfg.seed}"]).hash()

    q, by_checkpoint = int8_twin(run / "best.pt", run / "model.onnx", n_calibration=4)
    first = q.read_bytes()
    with pytest.raises(ValueError, match="was not made from"):
        int8_twin(config, run / "model.onnx", n_calibration=4)  # without the override
    with pytest.raises(ValueError, match="overrides a training config"):
        int8_twin(run / "best.pt", run / "model.onnx", n_calibration=4, overrides=[f"seed={cfg.seed}"])
    q, by_config = int8_twin(config, run / "model.onnx", n_calibration=4, overrides=[f"seed={cfg.seed}"])
    again = onnx.load(str(q))
    assert by_config == by_checkpoint and again.graph == onnx.load_from_string(first).graph  # same calibration, same int8 graph
    assert json.loads({p.key: p.value for p in again.metadata_props}["autoenc.quantization"])["data"] == f"ingested again from {config} --set seed={cfg.seed}"


def _tail_graph(skip_from_stem: bool) -> onnx.ModelProto:
    """input -> stem conv -> relu -> conv -> relu -> Concat(that, stem's relu or itself again) ->
    conv -> relu -> head conv; output = input - head."""
    from onnx import TensorProto, helper, numpy_helper

    w = lambda name, cin: numpy_helper.from_array(np.full((1, cin, 3, 3), 0.1, np.float32), name)  # noqa: E731
    conv = lambda name, x, cin: helper.make_node("Conv", [x, f"{name}.weight"], [name], name=name, pads=[1, 1, 1, 1])  # noqa: E731
    nodes = [conv("stem", "input", 1), helper.make_node("Relu", ["stem"], ["stem_r"], name="stem_relu"),
             conv("mid", "stem_r", 1), helper.make_node("Relu", ["mid"], ["mid_r"], name="mid_relu"),
             helper.make_node("Concat", ["mid_r", "stem_r" if skip_from_stem else "mid_r"], ["cat"], name="cat", axis=1),
             conv("last", "cat", 2), helper.make_node("Relu", ["last"], ["last_r"], name="last_relu"),
             conv("head", "last_r", 1), helper.make_node("Sub", ["input", "head"], ["output"], name="sub")]
    io = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 8, 8])  # noqa: E731
    graph = helper.make_graph(nodes, "g", [io("input")], [io("output")], [w("stem.weight", 1), w("mid.weight", 1), w("last.weight", 2), w("head.weight", 1)])
    return helper.make_model(graph)


def test_output_tail_is_the_stage_from_the_stems_skip_and_nothing_without_one():
    for skip, expected in ((True, ["last", "cat"]), (False, [])):
        model = _tail_graph(skip)
        head = residual_head(model)
        assert head == ["sub", "head"]
        assert output_tail(model, head, input_convs(model, head)) == expected
