"""ONNX export: one file, dynamic shapes, self-describing metadata, parity enforced."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autoenc import FORMAT_VERSION, __version__
from autoenc.config import ExportConfig, from_dict
from autoenc.export import ExportError, as_stored, parity_check, receptive_radius, to_onnx
from autoenc.runtime.metadata import ModelInfo
from autoenc.models import get_model
from autoenc.checkpoint import load_checkpoint


def test_single_file_with_metadata_and_dynamic_axes(gray_model):
    proto = onnx.load(str(gray_model))
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    assert list(gray_model.parent.iterdir()) == sorted(gray_model.parent.iterdir())  # no stray files
    assert not [p for p in gray_model.parent.iterdir() if p.suffix == ".data"]
    props = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_props(props)
    assert info.modality == "image" and info.channels == 1 and info.model == "unet_dae"
    assert info.version == __version__ and info.format_version == FORMAT_VERSION
    assert info.noise["mixture"][0]["name"] == "gaussian"
    assert len(info.config_hash) == 16 and info.metrics == {"test": True}
    assert from_dict(info.config).hash() == info.config_hash  # the model carries the config it was trained with
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]


@pytest.mark.parametrize("shape", [(1, 1, 97, 131), (3, 1, 64, 40), (1, 1, 9, 11)])
def test_onnxruntime_matches_torch(gray_model, shape):
    model, _ = load_checkpoint(gray_model.with_suffix(".pt"))
    model = as_stored(model, ExportConfig().weights)
    x = torch.rand(*shape)
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(str(gray_model)).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert not np.allclose(ref, x.numpy(), atol=1e-3)  # the model is not the identity


def test_weights_are_stored_fp16_and_run_as_fp32(gray_model, tmp_path):
    """The default export stores parameters as float16 (about half the bytes) behind casts that
    onnxruntime folds at load, so it runs the float32 graph; its outputs equal the float32-stored
    export of the same weights rounded to float16, and the weights read back by name."""
    from conftest import runtime_ops

    from autoenc.config import from_dict
    from autoenc.checkpoint import read_checkpoint, save_checkpoint
    from autoenc.weight_storage import FP16_SUFFIX, as_fp32

    ckpt = read_checkpoint(gray_model.with_suffix(".pt"))
    plain = {**ckpt, "config": from_dict(ckpt["config"]).model_dump(mode="json") | {"export": {"weights": "fp32"}}}
    save_checkpoint(tmp_path / "plain.pt", plain)
    to_onnx(tmp_path / "plain.pt", tmp_path / "plain.onnx", metrics={})
    half, full = onnx.load(str(gray_model)), onnx.load(str(tmp_path / "plain.onnx"))
    assert any(t.name.endswith(FP16_SUFFIX) and t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    assert not any(t.name.endswith(FP16_SUFFIX) for t in full.graph.initializer)
    payload = lambda m: sum(t.ByteSize() for t in m.graph.initializer)  # noqa: E731
    assert payload(half) < 0.55 * payload(full) and gray_model.stat().st_size < (tmp_path / "plain.onnx").stat().st_size
    assert runtime_ops(gray_model, tmp_path)["Cast"] == 0  # folded into float32 constants
    x = torch.rand(2, 1, 67, 45).numpy()
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    rounded = as_fp32(half)
    onnx.save(rounded, str(tmp_path / "rounded.onnx"))
    np.testing.assert_allclose(run(gray_model), run(tmp_path / "rounded.onnx"), atol=1e-6)
    assert 0 < np.abs(run(gray_model) - run(tmp_path / "plain.onnx")).max() < 1e-3  # only the rounding
    from autoenc.checkpoint import start_from

    again = get_model("unet_dae", channels=1, width=8, levels=2)
    start_from(again, "unet_dae", gray_model)  # train.init_from reads the rounded weights by name
    assert all(torch.equal(v, ckpt["state"][k].half().float()) for k, v in again.state_dict().items())


def test_parity_mismatch_is_an_error(gray_model):
    other = get_model("unet_dae", channels=1, width=8, levels=2).eval()
    torch.nn.init.normal_(other.tail.weight, std=0.5)
    with pytest.raises(ExportError, match="mismatch"):
        parity_check(other, gray_model.read_bytes(), ExportConfig())


def test_receptive_radius_matches_architecture():
    r2 = receptive_radius(get_model("unet_dae", channels=1, width=4, levels=2))
    r3 = receptive_radius(get_model("unet_dae", channels=1, width=4, levels=3))
    assert 10 < r2 < r3 < 200
    a3 = receptive_radius(get_model("unet1d_dae", width=4, levels=3))
    a4 = receptive_radius(get_model("unet1d_dae", width=4, levels=4))
    assert 100 < a3 < a4 < 10000


def test_colour_plane_model_exports_and_denoises(tmp_path):
    """plane_unet_dae (per-plane U-Net + colour guide) exports with parity and runs tiled."""
    from autoenc.runtime.infer import OnnxDenoiser
    from conftest import make_model_file, photo

    path = make_model_file(tmp_path, channels=3, name="plane_unet_dae")
    den = OnnxDenoiser(path, threads=1, tile=64)
    assert den.info.model == "plane_unet_dae" and den.info.channels == 3
    rgb = photo(150, 170, channels=3)
    out = den.denoise(rgb, max_value=255)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
    whole = OnnxDenoiser(path, threads=1, tile=4096).denoise(rgb, max_value=255)
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1  # tiling is exact up to rounding
