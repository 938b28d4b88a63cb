"""int8 on CPUs whose fused kernels saturate: the uint8-weights rewrite computes the same graph,
stays fused, and is what a load falls back to when the fused kernels disagree."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from autoenc.runtime.int8_kernels import INT8_AGREEMENT_DB, int8_agreement_db, int8_session, probe_input, uint8_weights
from autoenc.runtime.session import PRETRAINED_DIR, OnnxModel, model_info
from conftest import runtime_ops


def _session(blob: bytes, fused: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["image-gray-fast-int8", "photo-int8", "speech-int8"])
def test_uint8_weights_dequantize_to_the_same_numbers_and_stay_fused(name, tmp_path):
    blob = (PRETRAINED_DIR / f"{name}.onnx").read_bytes()
    widened = uint8_weights(blob)
    model = onnx.load_from_string(widened)
    inits = {t.name: t for t in model.graph.initializer}
    dq_inputs = [i for n in model.graph.node if n.op_type == "DequantizeLinear" for i in n.input[:3:2] if i in inits]
    assert dq_inputs and not any(inits[i].data_type == onnx.TensorProto.INT8 for i in dq_inputs)
    assert sum(inits[i].data_type == onnx.TensorProto.UINT8 for i in dq_inputs) > 10
    info = model_info(name)
    x = probe_input(info)
    feed = lambda s: s.run(None, {s.get_inputs()[0].name: x})[0]  # noqa: E731
    np.testing.assert_array_equal(feed(_session(widened, fused=False)), feed(_session(blob, fused=False)))  # the same graph, number for number
    assert int8_agreement_db(_session(widened), _session(blob, fused=False), info) >= INT8_AGREEMENT_DB  # uint8 x uint8 cannot saturate
    (tmp_path / "w.onnx").write_bytes(widened)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ops = runtime_ops(tmp_path / "w.onnx", tmp_path / "a")
    assert ops["QLinearConv"] > 0 and ops["QLinearConv"] == runtime_ops(PRETRAINED_DIR / f"{name}.onnx", tmp_path / "b")["QLinearConv"]


def test_a_load_whose_fused_kernels_disagree_runs_the_uint8_weights_and_without_them_unfused(caplog):
    """The fused session here computes something else, as saturating kernels do (one conv's
    weight scale doubled), so the selection must not depend on this CPU having VNNI."""
    name = "image-gray-fast-int8"
    blob = (PRETRAINED_DIR / f"{name}.onnx").read_bytes()
    info = model_info(name)
    wrong = onnx.load_from_string(blob)
    scale = next(t for t in wrong.graph.initializer if t.name.endswith(".weight_scale"))
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, scale.name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session, how = int8_session(blob, opts, _session(wrong.SerializeToString()), info, name)
    assert how == "fused, uint8 weights" and name in caplog.text and "uint8" in caplog.text
    reference = _session(blob, fused=False)
    assert int8_agreement_db(session, reference, info) >= INT8_AGREEMENT_DB
    session, how = int8_session(blob, opts, _session(wrong.SerializeToString()), info, name, least_db=float("inf"))
    assert how == "unfused" and int8_agreement_db(session, reference, info) == float("inf")


def test_loaded_int8_models_say_how_they_run_and_fp32_models_do_not():
    assert OnnxModel("image-gray-fast-int8", threads=1).int8_kernels in ("fused", "fused, uint8 weights")  # never the slow unfused graph here
    assert OnnxModel("image-gray-fast", threads=1).int8_kernels is None
    assert OnnxModel("image-gray-fast-int8", threads=1, check_int8=False).int8_kernels is None
