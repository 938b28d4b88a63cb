"""int8 QDQ quantization: every conv runs as an integer QLinearConv in onnxruntime (not fp32
between Q/DQ pairs), the output stays close to fp32, and the metadata is carried over."""

import collections
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from autoenc.metadata import ModelInfo
from autoenc.quantize import quantize_int8
from conftest import make_model_file


def runtime_ops(path, tmp_path) -> collections.Counter:
    """Op types of the graph onnxruntime actually runs (after its QDQ fusions)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_int8_convs_are_integer_at_runtime(tmp_path, modality):
    fp32 = make_model_file(tmp_path, modality=modality)
    shape = (1, 1, 64, 64) if modality == "image" else (1, 1, 4096)
    rng = np.random.default_rng(0)
    smooth = lambda: np.cumsum(rng.random(shape, dtype=np.float32), axis=-1) / shape[-1]  # noqa: E731
    quantize_int8(fp32, tmp_path / "q.onnx", [smooth() for _ in range(8)], {"note": "test"})

    n_convs = sum(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)
    ops = runtime_ops(tmp_path / "q.onnx", tmp_path)
    assert ops["Conv"] == 0 and ops["QLinearConv"] == n_convs, ops

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert ModelInfo.from_props(props).modality == modality
    assert json.loads(props["autoenc.quantization"])["note"] == "test"

    x = smooth()
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    a, b = run(fp32), run(tmp_path / "q.onnx")
    assert np.abs(a - b).max() < 0.05 and np.abs(a - b).mean() < 0.01
