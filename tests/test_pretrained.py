"""The shipped models as packaged: each loads, has its card, stays small, denoises, and its
int8 twin runs every conv as an integer kernel and stays close to fp32."""

import json

import numpy as np
import onnx
import pytest

from autoenc.runtime.audio_infer import OnnxAudioDenoiser
from autoenc.runtime.infer import OnnxDenoiser
from autoenc.metrics import psnr, si_sdr
from autoenc.runtime.session import PRETRAINED_DIR, shipped_models
from conftest import clean_voice, runtime_ops

EXPECTED = {"image-gray": ("image", 1), "image-gray-fast": ("image", 1), "image-color": ("image", 3), "image-color-fast": ("image", 3), "photo": ("image", 3), "photo-fast": ("image", 3), "photo-hq": ("image", 3), "speech": ("audio", 1)}
INT8_IMAGE_LOSS_DB = 0.05  # issue 13: an image model's int8 twin loses at most this on its validation pairs (a QAT twin may gain)
INT8_LOSS_EXCEPTIONS_DB: dict[str, float] = {}  # twins outside the rule, loss as measured and stated in the card (photo-hq-int8 was one, at -0.073 dB, until its distilled twin: -0.044)


def test_every_expected_model_is_shipped_with_a_card_and_an_int8_twin():
    listed = {m["name"]: m for m in shipped_models()}
    assert set(listed) == set(EXPECTED) | {f"{n}-int8" for n in EXPECTED}
    for name, (modality, channels) in EXPECTED.items():
        for n in (name, f"{name}-int8"):
            m = listed[n]
            assert (m["modality"], m["channels"]) == (modality, channels)
            assert m["bytes"] < 7e6 and m["card"] == str(PRETRAINED_DIR / f"{name}.md")  # fp16-stored weights: the width-24 models and speech 3.7-3.8 MB, the width-32 photo 6.7 MB
        assert listed[f"{name}-int8"]["trained_on"] == m["trained_on"]  # the twin copies its model's record
        card = (PRETRAINED_DIR / f"{name}.md").read_text()
        for section in ("Training data", "Split", "Noise it was trained on", "Reproduce", "Validation metrics", "Licences"):
            assert section in card, (name, section)
    rec = listed["photo"]["trained_on"]  # photo records what it trained on since 2026-12-05
    assert rec["files"] > 0 and rec["stages"] and all(isinstance(u, str) for u in rec["unknown"]), rec


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_int8_is_integer_at_runtime_and_records_its_effect(name, tmp_path):
    path = PRETRAINED_DIR / f"{name}-int8.onnx"
    convs = {n.name for n in onnx.load(str(PRETRAINED_DIR / f"{name}.onnx")).graph.node if n.op_type == "Conv"}
    note = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["autoenc.quantization"])
    kept = len(convs & set(note["fp32_nodes"]))
    assert kept == {"image-color": 7, "photo-hq": 7, "image-gray": 4, "image-gray-fast": 4, "speech": 3, "photo": 4, "photo-fast": 2}.get(name, 1)  # the noise head (the opponent models image-color and photo-hq: its two convs and the colour map in), the input conv of the twins made since input convs stay fp32, the whole stem of those made since the stem does (image-color and photo-hq: their head and guide convs), and the decoder's last stage of those made since it does (image-gray, image-gray-fast, image-color, photo-hq, photo: two convs; speech: one)
    ops = runtime_ops(path, tmp_path)
    assert ops["Conv"] + ops["FusedConv"] == kept and ops["QLinearConv"] == len(convs) - kept, ops
    val = note["val"]
    if EXPECTED[name][0] == "image":
        assert val["delta_db"] >= -INT8_LOSS_EXCEPTIONS_DB.get(name, INT8_IMAGE_LOSS_DB), val
        return
    # Speech: within 0.2 dB on the noisy held-out settings on average (measured -0.12), and a
    # near-clean input (40 dB SNR) still comes back at >= 38 dB SI-SDR (fp32 40.4, int8 39.7: its
    # input is never rounded to 8 bits; see the card).
    noisy = [t.removesuffix("/fp32") for t in val if t.endswith("/fp32") and "snr_db40" not in t]
    assert sum(val[f"{t}/int8"] - val[f"{t}/fp32"] for t in noisy) / len(noisy) >= -0.2, val
    assert val["white-snr_db40/int8"] >= 38, val


@pytest.mark.parametrize("name", ["image-gray", "image-gray-fast", "image-color", "image-color-fast"])
def test_shipped_image_models_denoise_blind(name, corpus_dir):
    from PIL import Image

    # A crop of chelsea.png (scikit-image: a training source of image-gray, image-gray-fast and
    # image-color, held out from image-color-fast; the held-out benchmark is benchmarks/image_quality.py).
    clean = np.asarray(Image.open(corpus_dir / "scikit-image/chelsea.png").convert("RGB"), np.float32)[100:228, 150:310] / 255
    rng = np.random.default_rng(0)
    for sigma in (10, 40):  # one model, two levels it is not told
        noisy = np.clip(np.round((clean + rng.normal(0, sigma / 255, clean.shape)) * 255), 0, 255) / 255
        for variant in (name, f"{name}-int8"):
            out = OnnxDenoiser(variant, threads=1).denoise(noisy.astype(np.float32))
            assert psnr(clean, out) > psnr(clean, noisy) + 3, (variant, sigma)


@pytest.mark.parametrize("name", ["speech", "speech-int8"])
def test_shipped_speech_model_keeps_a_clean_recording_and_removes_hiss(name):
    """Issue 12: a clean recording comes back essentially unchanged (>= 30 dB SI-SDR against
    itself), here a voiced harmonic glide with soft passages 40 dB down (what the front end's
    clean_db is for), and white noise at 5 dB SNR loses most of its power."""
    clean = clean_voice(3.0)
    model = OnnxAudioDenoiser(name, threads=1)
    assert si_sdr(clean[:, 0], model.denoise(clean)[:, 0]) >= 30
    noise = np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    noisy = clean + noise * np.sqrt((clean**2).mean() / (noise**2).mean() / 10 ** 0.5)
    assert si_sdr(clean[:, 0], model.denoise(noisy)[:, 0]) > si_sdr(clean[:, 0], noisy[:, 0]) + 6


def test_shipped_photo_model_cleans_camera_noise_and_keeps_clean_photos(corpus_dir):
    """On a photo of a source it never saw in training (scikit-learn, its validation source),
    through the simulated camera with Fujifilm profiles (never trained on): clearly better than
    the noisy file, fp32 and int8; the clean photo comes back close (this one is a small JPEG
    with its own blocking, which the model partly removes: 36 dB; the benchmark's clean photos
    average 41 dB)."""
    import os

    import torch
    from PIL import Image

    from autoenc.camera import profiles_path
    from autoenc.config import NoiseConfig
    from autoenc.noise import pair_generator, synthesize

    try:
        profiles_path()
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("darktable's noise profiles are not unpacked here (make data)")
    clean = np.asarray(Image.open(corpus_dir / "scikit-learn/flower.png").convert("RGB"), np.float32)[100:356, 200:456] / 255
    spec = {"name": "camera", "makers": ["Fujifilm"], "iso": 25600, "gain": 8, "demosaic": ["mhc"], "tone": 0.5, "saturation": 0.6, "jpeg_quality": 90}
    noisy = synthesize(torch.from_numpy(clean.transpose(2, 0, 1).copy()), NoiseConfig(mixture=[spec]), pair_generator(0, "test"))[0].permute(1, 2, 0).numpy()
    for variant in ("photo", "photo-int8", "photo-fast", "photo-fast-int8", "photo-hq", "photo-hq-int8"):
        den = OnnxDenoiser(variant, threads=1)
        assert psnr(clean, den.denoise(noisy)) > psnr(clean, noisy) + 1.5, variant
        assert psnr(clean, np.round(den.denoise(clean) * 255) / 255) >= 34, variant


def test_shipped_photo_hq_is_told_more_for_camera_noise_and_less_for_fine_white_grain():
    """photo-hq and its twin carry one level calibration by kind of noise (README, Use): a
    photo with strong blotchy noise (as demosaicing leaves it) is told more than the estimate, a
    photo with white grain of about the same estimate less, and the denoiser applies exactly that."""
    from autoenc.runtime.noise_level import BLOTCHY_RATIO, blotchiness, calibrated_level
    from conftest import photo

    fp32, int8 = OnnxDenoiser("photo-hq", threads=1), OnnxDenoiser("photo-hq-int8", threads=1)
    knots = fp32.level_knots
    assert isinstance(knots, dict) and set(knots) == {"white", "blotchy"} and int8.level_knots == knots
    rng = np.random.default_rng(0)
    img = photo(128, 128, 3, seed=1) / 255
    n = np.pad(rng.normal(0, 1, img.shape), ((1, 1), (1, 1), (0, 0)), mode="wrap")
    blotches = sum(n[dy : dy + 128, dx : dx + 128] for dy in range(3) for dx in range(3)) / 3  # spread as demosaicing spreads it
    camera = np.clip(img + 40 / 255 * blotches, 0, 1).astype(np.float32)  # strong: read above the blotchy curve's last knot
    est = float(fp32.noise_level(camera).mean())
    white = np.clip(img + rng.normal(0, est, img.shape), 0, 1).astype(np.float32)  # white grain the estimator reads alike
    assert est >= knots["blotchy"][-1][0] and blotchiness(camera) >= BLOTCHY_RATIO[1] and blotchiness(white) <= BLOTCHY_RATIO[0]
    assert calibrated_level(est, knots, blotchiness(camera)) > 1.5 * est
    assert calibrated_level(fp32.noise_level(white).mean(), knots, blotchiness(white)) < 0.8 * fp32.noise_level(white).mean()
    raw = OnnxDenoiser("photo-hq", threads=1, calibrated=False)
    assert np.array_equal(fp32.denoise(camera), raw.denoise(camera, level=calibrated_level(fp32.noise_level(camera), knots, blotchiness(camera))))


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_int8_as_loaded_computes_what_its_graph_says_on_this_cpu(name):
    """x86 CPUs without VNNI saturate onnxruntime's fused uint8 x int8 kernels (on the AVX2-only
    EPYC here, image-gray-fast-int8 came out 7 dB below fp32); a loaded int8 model must agree
    with its own unfused Q/DQ graph, by running fused where the kernels agree and unfused where not."""
    import onnxruntime as ort

    from autoenc.runtime.int8_kernels import INT8_AGREEMENT_DB, int8_agreement_db
    from autoenc.runtime.session import OnnxModel

    model = OnnxModel(f"{name}-int8")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(str(model.path), opts, providers=["CPUExecutionProvider"])
    assert int8_agreement_db(model.session, reference, model.info) >= INT8_AGREEMENT_DB
