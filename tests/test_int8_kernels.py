"""int8 on CPUs whose fused kernels saturate: a load whose fused kernels disagree with the
model's own graph runs onnxruntime's uint8 x uint8 kernels, or else the graph unfused, and
either computes what the graph says."""

import json

import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import autoenc.runtime.int8_kernels as int8_kernels
from autoenc.runtime.int8_kernels import INT8_AGREEMENT_DB, PRECISE_ENTRY, int8_agreement_db, int8_session
from autoenc.runtime.session import PRETRAINED_DIR, OnnxModel, model_info, session_options

NAME = "image-gray-fast-int8"


def _session(blob: bytes, fused: bool = True, precise: bool = False) -> ort.InferenceSession:
    opts = session_options(1)
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if precise:
        opts.add_session_config_entry(*PRECISE_ENTRY)
    return ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])


def _wrong(blob: bytes) -> ort.InferenceSession:
    """A fused session that computes something else, as saturating kernels do (one conv's weight
    scale doubled), so these tests do not depend on whether this CPU has VNNI."""
    model = onnx.load_from_string(blob)
    scale = next(t for t in model.graph.initializer if t.name.endswith(".weight_scale"))
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, scale.name))
    return _session(model.SerializeToString())


@pytest.mark.parametrize("name", ["image-gray-fast-int8", "photo-fast-int8", "photo-int8", "speech-int8"])
def test_uint8_x_uint8_kernels_compute_the_graph_fused(name, tmp_path):
    blob = (PRETRAINED_DIR / f"{name}.onnx").read_bytes()
    assert int8_agreement_db(_session(blob, precise=True), _session(blob, fused=False), model_info(name)) >= INT8_AGREEMENT_DB
    opts = session_options(1)
    opts.add_session_config_entry(*PRECISE_ENTRY)
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    convs = [n for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node if n.op_type in ("Conv", "FusedConv", "QLinearConv")]
    twin = onnx.load_from_string(blob)
    kept = {n.name for n in twin.graph.node if n.op_type == "Conv"} & set(json.loads({p.key: p.value for p in twin.metadata_props}["autoenc.quantization"])["fp32_nodes"])
    assert kept and sum(n.op_type != "QLinearConv" for n in convs) == len(kept)  # still fused: only the convs the twin keeps fp32 (how many, per shipped model: test_pretrained's one home) are not QLinearConv


@pytest.mark.parametrize("name", ["image-gray-fast-int8", "photo-fast-int8", "photo-int8", "speech-int8"])
def test_twins_with_fp32_input_convs_agree_with_plain_fused_kernels(name):
    """Their input conv, the one whose full-range 8-bit input saturated uint8 x int8 pairs on x86
    without VNNI, is fp32: the plain fused kernels agree with the graph on any x86 CPU."""
    blob = (PRETRAINED_DIR / f"{name}.onnx").read_bytes()
    assert int8_agreement_db(_session(blob), _session(blob, fused=False), model_info(name)) >= INT8_AGREEMENT_DB


def test_a_load_whose_fused_kernels_disagree_runs_uint8_x_uint8_kernels(caplog):
    blob = (PRETRAINED_DIR / f"{NAME}.onnx").read_bytes()
    info = model_info(NAME)
    session, how = int8_session(blob, lambda: session_options(1), _wrong(blob), info, NAME)
    assert how == "fused, uint8 x uint8" and NAME in caplog.text and "uint8 x uint8" in caplog.text
    assert int8_agreement_db(session, _session(blob, fused=False), info) >= INT8_AGREEMENT_DB


def test_where_no_fused_kernels_agree_the_graph_runs_unfused(monkeypatch, caplog):
    """This CPU's own kernels may agree; the check is made to say none do."""
    blob = (PRETRAINED_DIR / f"{NAME}.onnx").read_bytes()
    info = model_info(NAME)
    real = int8_kernels.int8_agreement_db
    monkeypatch.setattr(int8_kernels, "int8_agreement_db", lambda *a: 0.0)
    session, how = int8_session(blob, lambda: session_options(1), _session(blob), info, NAME)
    assert how == "unfused" and "unfused" in caplog.text
    assert real(session, _session(blob, fused=False), info) == float("inf")  # the graph itself, number for number


def test_loaded_int8_models_say_how_they_run_and_fp32_models_do_not():
    assert OnnxModel(NAME, threads=1).int8_kernels in ("fused", "fused, uint8 x uint8")  # never the slow unfused graph here
    assert OnnxModel("image-gray-fast", threads=1).int8_kernels is None
    assert OnnxModel(NAME, threads=1, check_int8=False).int8_kernels is None
