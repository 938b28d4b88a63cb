"""The classical front end of audio models (autoenc.runtime.prefilter): exact streaming, what it
does to noise and to clean input, its settings, and a model that carries it from training
through ONNX metadata to streamed inference."""

import numpy as np
import pytest
import soundfile as sf
import torch

from autoenc.metrics import si_sdr
from autoenc.runtime.prefilter import HOP, N_FFT, WienerPrefilter, WienerStream
from conftest import clean_voice, make_model_file, tone

SR = 16000


def _noisy(seconds: float, snr_db: float, seed: int = 0, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A speech-like tone with pauses (0.2 s in every 0.6 s, as between words) and white noise."""
    clean = tone(seconds, SR, channels, seed=seed).T.astype(np.float64)
    clean *= (np.arange(clean.shape[1]) % int(0.6 * SR)) < int(0.4 * SR)
    noise = np.random.default_rng(seed + 100).standard_normal(clean.shape)
    noise *= np.sqrt((clean**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    return clean.astype(np.float32), (clean + noise).astype(np.float32)


def _streamed(spec: WienerPrefilter, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    stream, parts, i = WienerStream(spec, x.shape[0], SR), [], 0
    for n in sizes:
        parts += list(stream.push(x[:, i : i + n]))
        i += n
    parts += list(stream.push(x[:, i:])) + list(stream.flush())
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("sizes", [[1, 7, 500, 3000, 12345, 100], [N_FFT - 1, 1, HOP, 8000 * 3], [40000]])
@pytest.mark.parametrize("clean_db", [None, -20.0])
def test_chunked_equals_whole_over_several_noise_blocks(sizes, clean_db):
    spec = WienerPrefilter(block_seconds=0.5, clean_db=clean_db)  # 3 s of audio: six noise blocks
    _, x = _noisy(3.0, 5, channels=2)
    x[1] *= np.where(np.arange(x.shape[1]) < SR, 1.0, 0.03)  # channel 2 quieter after 1 s: clean_db (where set) acts on some blocks only
    whole = spec.apply(x, SR)
    assert whole.shape == x.shape and whole.dtype == np.float32
    np.testing.assert_array_equal(_streamed(spec, x, sizes), whole)


@pytest.mark.parametrize("n", [0, 1, 100, N_FFT - 1, N_FFT, N_FFT + 1, 3 * HOP + 5])
def test_output_has_exactly_the_input_length(n):
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    y = WienerPrefilter().apply(x, SR)
    assert y.shape == x.shape and np.isfinite(y).all()


def test_removes_stationary_noise_and_leaves_clean_input_nearly_alone():
    clean, noisy = _noisy(2.0, 5)
    spec = WienerPrefilter()
    assert si_sdr(clean[0], spec.apply(noisy, SR)[0]) > si_sdr(clean[0], noisy[0]) + 5
    assert si_sdr(clean[0], spec.apply(clean, SR)[0]) > 30


def test_clean_db_leaves_a_clean_recording_alone_and_noisy_ones_as_they_were():
    """Clean speech has no pauses of noise, only soft passages (here 40 dB below the loud ones):
    the plain filter takes them for noise and dulls them; with clean_db it sees that the
    quietest frames lie far below the rest and lets the recording through. Noisy input, whose
    floor lies within a few dB of the speech, is filtered exactly as before."""
    clean = clean_voice(3.0, SR, seed=5).T  # (1, n)
    plain, guarded = WienerPrefilter(), WienerPrefilter(clean_db=-30)
    before, after = si_sdr(clean[0], plain.apply(clean, SR)[0]), si_sdr(clean[0], guarded.apply(clean, SR)[0])
    assert after > before + 10 and after > 50, (before, after)
    _, noisy = _noisy(3.0, 5)
    np.testing.assert_array_equal(guarded.apply(noisy, SR), plain.apply(noisy, SR))
    assert guarded.spec()["clean_db"] == -30 and "clean_db" not in plain.spec()  # unset: absent, so older runtimes still read the file
    with pytest.raises(ValueError, match="clean_db must be negative"):
        WienerPrefilter(clean_db=0)


def test_each_block_takes_its_own_noise_floor():
    """Noise that grows 10x after 2 s: with 1 s blocks the later blocks attenuate the louder
    noise; one block spanning the whole file takes its floor from the quiet start and leaves
    much more of it in."""
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((1, 4 * SR)) * np.where(np.arange(4 * SR) < 2 * SR, 0.01, 0.1)
    x = noise.astype(np.float32)
    late = slice(3 * SR, 4 * SR)
    per_block = WienerPrefilter(block_seconds=1.0).apply(x, SR)[:, late]
    one_block = WienerPrefilter(block_seconds=10.0).apply(x, SR)[:, late]
    assert np.std(per_block) < 0.5 * np.std(one_block)
    assert np.std(per_block) < 0.5 * np.std(x[:, late])


def test_settings_are_checked_and_stored_whole():
    assert WienerPrefilter.parse(None) is None
    spec = WienerPrefilter.parse({"name": "wiener", "floor_db": -15})
    assert spec.spec() == {"name": "wiener", "alpha": 0.98, "floor_db": -15, "quantile": 0.05, "block_seconds": 8.0}
    with pytest.raises(ValueError, match="unknown prefilter setting"):
        WienerPrefilter.parse({"name": "wiener", "floor": -15})
    with pytest.raises(ValueError, match="unknown prefilter 'median'"):
        WienerPrefilter.parse({"name": "median"})
    with pytest.raises(ValueError, match="floor_db must be negative"):
        WienerPrefilter.parse({"floor_db": 3})


@pytest.mark.parametrize("raw_plane", [False, True])
def test_a_prefilter_model_runs_it_in_training_export_and_streamed_inference(tmp_path, raw_plane):
    """The network's input is the prefiltered audio (and, for a raw-plane model, the audio
    itself beside it) in torch (training, validation) and in onnxruntime (streamed files,
    where the filter's output lags its input); the ONNX metadata carries every setting and a
    format that an older runtime refuses."""
    from autoenc import PREFILTER_FORMAT, RAW_PLANE_FORMAT
    from autoenc.checkpoint import load_checkpoint
    from autoenc.data import model_input
    from autoenc.runtime.audio_infer import OnnxAudioDenoiser

    spec = {"name": "wiener", "floor_db": -12, "block_seconds": 1.0}
    onnx_path = make_model_file(tmp_path, channels=1, width=8, levels=3, modality="audio", noise_scale=0.2, prefilter=spec, raw_plane=raw_plane)
    den = OnnxAudioDenoiser(onnx_path, chunk_seconds=0.2)
    assert den.info.prefilter == WienerPrefilter(**spec).spec()
    assert (den.info.format_version, den.info.raw_plane) == ((RAW_PLANE_FORMAT, True) if raw_plane else (PREFILTER_FORMAT, False))
    _, noisy = _noisy(3.5, 5, seed=4)
    model, _ = load_checkpoint(tmp_path / "model-c1.pt")
    model.eval()
    x = torch.from_numpy(noisy[None])
    with torch.no_grad():
        seen = model_input(model, x, SR)
        ref = model(seen)[0].numpy()
        plain = model(torch.cat([x, x], dim=1) if raw_plane else x)[0].numpy()
    assert seen.shape[1] == 1 + raw_plane
    if raw_plane:
        np.testing.assert_array_equal(seen[:, 1:], x)  # the raw plane is the input itself
        with torch.no_grad():
            filtered_only = model(torch.cat([seen[:, :1], torch.zeros_like(x)], dim=1))[0].numpy()
        assert not np.allclose(ref, filtered_only, atol=1e-3)  # and the network reads it
    assert not np.allclose(ref, plain, atol=1e-3)  # the prefilter changed what the network saw
    assert den.window < noisy.shape[1] // 4  # the file streams through many windows and noise blocks
    out = den.denoise(noisy.T)
    np.testing.assert_allclose(out.T, ref, atol=2e-4)
    sf.write(tmp_path / "in.wav", noisy.T, SR, subtype="FLOAT")
    den.denoise_file(tmp_path / "in.wav", tmp_path / "out.wav")
    np.testing.assert_allclose(sf.read(tmp_path / "out.wav", dtype="float32")[0], out[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="needs the audio's sample_rate"):
        model_input(model, torch.from_numpy(noisy[None]))


@pytest.mark.parametrize("raw_plane", [False, True])
def test_a_prefilter_model_streams_stereo_files_at_another_rate_exactly(tmp_path, raw_plane):
    """Resampled to the model's rate and back, each channel through its own filter: small
    windows give the file that one window over all of it gives."""
    from autoenc.runtime.audio_infer import OnnxAudioDenoiser

    onnx_path = make_model_file(tmp_path, channels=1, width=8, levels=3, modality="audio", noise_scale=0.2, prefilter={"name": "wiener", "block_seconds": 0.5}, raw_plane=raw_plane)
    _, noisy = _noisy(2.5, 5, seed=6, channels=2)
    src = tmp_path / "in.wav"
    sf.write(src, np.ascontiguousarray(noisy.T), 44100, subtype="FLOAT")  # read as 44.1 kHz audio
    OnnxAudioDenoiser(onnx_path, chunk_seconds=60).denoise_file(src, tmp_path / "whole.wav")
    OnnxAudioDenoiser(onnx_path, chunk_seconds=0.2).denoise_file(src, tmp_path / "chunked.wav")
    a, _ = sf.read(tmp_path / "whole.wav")
    b, _ = sf.read(tmp_path / "chunked.wav")
    assert a.shape == noisy.T.shape
    np.testing.assert_allclose(a, b, atol=1e-4)
    sf.write(tmp_path / "left.wav", np.ascontiguousarray(noisy[0]), 44100, subtype="FLOAT")
    OnnxAudioDenoiser(onnx_path, chunk_seconds=0.2).denoise_file(tmp_path / "left.wav", tmp_path / "left-out.wav")
    np.testing.assert_allclose(sf.read(tmp_path / "left-out.wav")[0], b[:, 0], atol=1e-4)  # each channel on its own


def test_a_raw_plane_model_starts_from_one_without_it_and_needs_a_prefilter(tmp_path):
    """Adopting a trained prefilter model gives the raw plane zero input weights: the new model
    computes exactly what the old one did until training moves them."""
    from autoenc.data import model_input
    from autoenc.models import get_model

    kw = {"width": 8, "levels": 3, "context_dilations": (1, 3), "prefilter": {"name": "wiener", "block_seconds": 0.5}}
    torch.manual_seed(1)
    old = get_model("unet1d_dae", **kw)
    torch.nn.init.normal_(old.tail.weight, std=0.2)
    new = get_model("unet1d_dae", raw_plane=True, **kw)
    new.adopt("unet1d_dae", old.state_dict())
    x = torch.from_numpy(_noisy(1.5, 5, seed=2)[1][None])
    with torch.no_grad():
        a, b = old(model_input(old, x, SR)), new(model_input(new, x, SR))
    assert float(a.abs().mean()) > 0.01
    torch.testing.assert_close(a, b)
    assert new.head[0].weight.shape[1] == 2 and float(new.head[0].weight[:, 1].abs().max()) == 0
    with pytest.raises(ValueError, match="needs a prefilter"):
        get_model("unet1d_dae", width=8, levels=3, raw_plane=True)
