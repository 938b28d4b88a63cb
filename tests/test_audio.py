"""Audio: format-preserving streaming I/O, noises, the 1-D model, export, chunked inference,
bad input, mixed folders."""

import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from autoenc.runtime.audio_infer import OnnxAudioDenoiser
from autoenc.runtime.audio_io import probe_audio
from autoenc.config import DataConfig, NoiseConfig
from autoenc.data import other_talkers, val_segments
from autoenc.runtime.jobs import JobSettings, denoise_dir
from autoenc.runtime.media import MediaError
from autoenc.metrics import si_sdr
from autoenc.models import get_model
from autoenc.noise import AUDIO_NOISES, _excerpt, mix_at_snr, pair_generator, synthesize_audio, uniform
from conftest import REPO, output_files, photo, tone

FORMATS = [
    ("wav", "WAV", "PCM_16", 16000, 1),
    ("wav", "WAV", "PCM_24", 44100, 2),
    ("wav", "WAV", "PCM_32", 8000, 1),
    ("wav", "WAV", "FLOAT", 22050, 2),
    ("wav", "WAV", "DOUBLE", 16000, 1),
    ("flac", "FLAC", "PCM_16", 48000, 1),
    ("ogg", "OGG", "VORBIS", 44100, 2),
    ("mp3", "MP3", "MPEG_LAYER_III", 44100, 1),
]


@pytest.mark.parametrize("ext,fmt,subtype,rate,channels", FORMATS, ids=[f"{f[2]}-{f[3]}-{f[4]}ch" for f in FORMATS])
def test_denoise_file_keeps_format_subtype_rate_channels_frames(tmp_path, audio_model, ext, fmt, subtype, rate, channels):
    src = tmp_path / f"in.{ext}"
    sf.write(src, tone(1.3, rate, channels), rate, format=fmt, subtype=subtype)
    den = OnnxAudioDenoiser(audio_model)
    seconds = den.denoise_file(src, tmp_path / f"out.{ext}")
    a, b = sf.info(str(src)), sf.info(str(tmp_path / f"out.{ext}"))
    assert (b.format, b.subtype, b.samplerate, b.channels) == (a.format, a.subtype, a.samplerate, a.channels)
    assert b.frames == a.frames
    assert abs(seconds - a.frames / rate) < 1e-9
    x, _ = sf.read(src, always_2d=True)
    y, _ = sf.read(tmp_path / f"out.{ext}", always_2d=True)
    assert not np.allclose(x, y, atol=1e-3)  # the model did something
    assert np.corrcoef(x[:, 0], y[:, 0])[0, 1] > 0.5  # ... without scrambling time alignment


def test_chunked_equals_whole_file_at_model_rate(audio_model):
    x = tone(3.0, 16000, 2, seed=1)
    whole = OnnxAudioDenoiser(audio_model, chunk_seconds=60).denoise(x)
    small = OnnxAudioDenoiser(audio_model, chunk_seconds=0.2)
    assert small.window < len(x) // 4  # really chunked, many windows
    chunked = small.denoise(x)
    assert chunked.shape == x.shape
    np.testing.assert_allclose(chunked, whole, atol=2e-5)
    assert not np.allclose(whole, x, atol=1e-3)


def test_context_blocks_start_as_the_plain_model_widen_its_reach_and_stream_exactly(tmp_path):
    """unet1d_dae's context blocks: adopted from a trained plain model they compute exactly what
    it did; each adds ``dilation`` bottleneck steps of reach on both sides; a file streamed in
    windows much shorter than the file still equals the whole-file output."""
    from autoenc.export import receptive_radius
    from conftest import make_model_file

    torch.manual_seed(0)
    plain = get_model("unet1d_dae", width=8, levels=3).eval()
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    ctx = get_model("unet1d_dae", width=8, levels=3, context_dilations=[1, 3]).eval()
    ctx.adopt("unet1d_dae", plain.state_dict())
    x = torch.randn(2, 1, 3000)
    with torch.no_grad():
        assert torch.equal(ctx(x), plain(x))
    assert receptive_radius(ctx) == receptive_radius(plain) + 4**3 * (1 + 3)
    for wrong in (get_model("unet1d_dae", width=4, levels=3), get_model("unet1d_dae", width=8, levels=3, context_dilations=[3])):
        with pytest.raises(ValueError, match="cannot start from"):
            ctx.adopt("unet1d_dae", wrong.state_dict())
    with pytest.raises(ValueError, match="context_dilations"):
        get_model("unet1d_dae", context_dilations=[0])

    path = make_model_file(tmp_path, width=8, levels=3, modality="audio", noise_scale=0.2, context_dilations=[1, 3])
    x = tone(4.0, 16000, 1, seed=3)
    whole = OnnxAudioDenoiser(path, chunk_seconds=60).denoise(x)
    small = OnnxAudioDenoiser(path, chunk_seconds=0.2)
    assert small.context >= receptive_radius(ctx) and small.window < len(x) // 3
    np.testing.assert_allclose(small.denoise(x), whole, atol=2e-5)


def test_spectral_gate_starts_as_the_identity_keeps_level_freedom_and_streams_exactly(tmp_path):
    """unet1d_dae's spectral gate: adopted onto a trained model without one it computes what
    that model did (perfect-reconstruction STFT); trained, it changes the output yet stays
    level-free (f(a x) = a f(x)); its reach is declared in the radius, and a file streamed in
    windows much shorter than the file equals the whole-file output."""
    from autoenc.export import receptive_radius
    from conftest import make_model_file

    torch.manual_seed(0)
    base = get_model("unet1d_dae", width=8, levels=3, context_dilations=[1]).eval()
    for p in base.parameters():
        torch.nn.init.normal_(p, std=0.1)
    gated = get_model("unet1d_dae", width=8, levels=3, context_dilations=[1], spectral_gate=True).eval()
    gated.adopt("unet1d_dae", base.state_dict())
    reach = receptive_radius(base)
    x = torch.randn(2, 1, 5000)
    with torch.no_grad():
        torch.testing.assert_close(gated(x), base(x), atol=1e-5, rtol=0)
        torch.nn.init.normal_(gated.gate.out.weight, std=0.3)  # as if trained: the gain moves
        y = gated(x)
        assert (y - base(x)).abs().max() > 0.01
        torch.testing.assert_close(gated.decode(gated.encode(x)), y, atol=1e-6, rtol=0)
        g64 = gated.double()  # in float64: float32 rounding in the log features is not the point
        x64 = x.double()
        x64[:, :, :2500] = 0  # digital silence before the sound: still level-free, and still silent
        for a in (1e-3, 10.0):
            torch.testing.assert_close(g64(a * x64), a * g64(x64), atol=1e-9 * a, rtol=1e-6)
        assert g64(x64)[:, :, : 2500 - reach - 2 * gated.gate.n_fft].abs().max() == 0
        gated.float()
    assert receptive_radius(gated) >= reach + gated.gate.radius
    with pytest.raises(ValueError, match="mono"):
        get_model("unet1d_dae", channels=2, spectral_gate=True)

    path = make_model_file(tmp_path, width=8, levels=3, modality="audio", noise_scale=0.2, spectral_gate=True)
    x = tone(40.0, 16000, 1, seed=3)
    whole = OnnxAudioDenoiser(path, chunk_seconds=600).denoise(x)
    small = OnnxAudioDenoiser(path, chunk_seconds=0.2)
    assert small.context >= small.info.receptive_radius > 7000 and small.window < len(x) // 3
    np.testing.assert_allclose(small.denoise(x), whole, atol=2e-5)


MASK_MODELS = {  # small kwargs of the registered STFT-mask models, and the front ends each is tried behind
    "spectral_dae": ({"n_fft": 128, "hidden": 16, "dilations": [1, 2], "floor_frames": 4}, [None]),
    "band_dae": ({"n_fft": 128, "widths": [4, 6, 8], "dilations": [1, 2], "floor_frames": 4}, [None, {"name": "wiener", "floor_db": -9}]),
}


@pytest.mark.parametrize("name", MASK_MODELS)
def test_mask_model_starts_as_the_identity_is_level_free_keeps_its_reach_and_streams_exactly(tmp_path, name):
    """The STFT-mask models (spectral_dae: a gain for all bins at once; band_dae: a U-Net over
    the spectrogram): untrained they pass their input through (perfect reconstruction); trained,
    they change the output yet stay level-free; input beyond the declared reach changes nothing;
    they are mono only and adopt no other model's weights; a file streamed in windows much
    shorter than the file equals the whole-file output, also behind the Wiener front end, whose
    settings the ONNX metadata carries."""
    from conftest import make_model_file

    kw, front_ends = MASK_MODELS[name]
    torch.manual_seed(0)
    model = get_model(name, **kw).eval()
    x = torch.randn(2, 1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, atol=1e-5, rtol=0)
        torch.nn.init.normal_(model.gate.out.weight, std=0.3)
        for b in model.gate.blocks:
            torch.nn.init.normal_(b.mix.weight, std=0.3)
        y = model(x)
        assert (y - x).abs().max() > 0.01
        far = model.gate.radius + 200  # the output's first 1000 samples ignore input from 1000 + far on
        x2 = x.clone()
        x2[..., far + 1000 :] = torch.randn_like(x2[..., far + 1000 :])
        torch.testing.assert_close(model(x2)[..., :1000], y[..., :1000], atol=1e-6, rtol=0)
        m64, x64 = model.double(), x.double()
        for a in (1e-3, 10.0):
            torch.testing.assert_close(m64(a * x64), a * m64(x64), atol=1e-9 * a, rtol=1e-6)
    with pytest.raises(ValueError, match="mono"):
        get_model(name, channels=2)
    with pytest.raises(ValueError, match=name):
        model.adopt("unet1d_dae", get_model("unet1d_dae", width=8, levels=3).state_dict())

    for prefilter in front_ends:
        path = make_model_file(tmp_path, width=None, levels=None, modality="audio", name=name, noise_scale=0.2, **kw, **({"prefilter": prefilter} if prefilter else {}))
        x = tone(20.0, 16000, 1, seed=3)
        whole_runner = OnnxAudioDenoiser(path, chunk_seconds=600)
        assert (whole_runner.info.prefilter is not None) == (prefilter is not None)
        whole = whole_runner.denoise(x)
        small = OnnxAudioDenoiser(path, chunk_seconds=0.1)
        assert small.context >= small.info.receptive_radius >= model.gate.radius and small.window < len(x) // 3
        assert np.abs(whole - x).max() > 1e-3  # it does something
        np.testing.assert_allclose(small.denoise(x), whole, atol=2e-5)


def test_chunked_equals_whole_file_with_resampling(tmp_path, audio_model):
    src = tmp_path / "in.wav"
    sf.write(src, tone(2.5, 44100, 1, seed=2), 44100, subtype="FLOAT")
    OnnxAudioDenoiser(audio_model, chunk_seconds=60).denoise_file(src, tmp_path / "whole.wav")
    OnnxAudioDenoiser(audio_model, chunk_seconds=0.2).denoise_file(src, tmp_path / "chunked.wav")
    a, _ = sf.read(tmp_path / "whole.wav")
    b, _ = sf.read(tmp_path / "chunked.wav")
    np.testing.assert_allclose(a, b, atol=1e-4)


def _wav_header_with_format_tag(tag: int) -> bytes:
    data = b"\x00\x01" * 800
    fmt = struct.pack("<HHIIHH", tag, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data


def test_bad_audio_is_reported_and_good_files_written(tmp_path, audio_model, gray_model):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "good.wav", tone(0.8), 16000)
    sf.write(src / "sub" / "good.flac", tone(0.5, 48000, 2), 48000)
    sf.write(src / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    sf.write(src / "click.wav", tone(0.01), 16000)
    bad = tone(0.5)
    bad[100] = np.nan
    bad[200] = np.inf
    sf.write(src / "nan.wav", bad, 16000, subtype="FLOAT")
    (src / "codec.wav").write_bytes(_wav_header_with_format_tag(0x1234))
    sf.write(tmp_path / "full.flac", tone(2.0), 16000)
    full = (tmp_path / "full.flac").read_bytes()
    (src / "truncated.flac").write_bytes(full[: len(full) // 3])
    sf.write(tmp_path / "full.wav", tone(1.0), 16000)
    (src / "truncated.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:12000])
    sf.write(src / "extensible.wav", tone(0.5, 16000, 3), 16000, format="WAVEX", subtype="PCM_24")
    (src / "zero.mp3").write_bytes(b"")
    Image.fromarray(photo(40, 40, 3)).save(src / "picture.png")
    report = denoise_dir([audio_model], src, tmp_path / "out")
    by = {r.path: r for r in report.results}
    assert by["good.wav"].status == "written" and by["sub/good.flac"].status == "written"
    assert "zero-length" in by["empty.wav"].reason
    assert "shorter than" in by["click.wav"].reason
    assert "NaN" in by["nan.wav"].reason
    assert by["codec.wav"].status == "failed" and "decode" in by["codec.wav"].reason
    assert by["zero.mp3"].status == "failed" and "decode" in by["zero.mp3"].reason
    assert by["picture.png"].status == "skipped" and "no image model" in by["picture.png"].reason
    assert by["truncated.flac"].status == "failed", by["truncated.flac"]
    assert by["truncated.wav"].status == "failed" and "truncated" in by["truncated.wav"].reason
    assert by["extensible.wav"].status == "written"
    written = output_files(tmp_path / "out")
    assert written == sorted(r.path for r in report.results if r.status == "written")
    assert not list((tmp_path / "out").rglob("*.autoenc-tmp"))
    # With both models, the same folder's image is denoised too.
    both = denoise_dir([audio_model, gray_model], src, tmp_path / "out2", JobSettings())
    assert {r.path: r.status for r in both.results}["picture.png"] == "written"


def test_probe_limits(tmp_path):
    sf.write(tmp_path / "a.wav", tone(0.5), 16000)
    assert probe_audio(tmp_path / "a.wav").frames == 8000
    with pytest.raises(MediaError, match="over the"):
        probe_audio(tmp_path / "a.wav", max_seconds=0.1)
    sf.write(tmp_path / "b.flac", tone(0.5), 16000)
    (tmp_path / "b.wav").write_bytes((tmp_path / "b.flac").read_bytes())
    with pytest.raises(MediaError, match="content is FLAC"):
        probe_audio(tmp_path / "b.wav")


AUDIO_SPECS = {
    "white": {"name": "white", "snr_db": [0, 10]},
    "pink": {"name": "pink", "snr_db": [0, 10]},
    "brown": {"name": "brown", "snr_db": [0, 10]},
    "hum": {"name": "hum", "snr_db": [0, 10]},
    "music": {"name": "music", "snr_db": [0, 10]},
    "babble": {"name": "babble", "snr_db": [0, 10]},
    "effects": {"name": "effects", "snr_db": [0, 10]},
    "crackle": {"name": "crackle", "snr_db": [0, 10]},
    "clipping": {"name": "clipping", "level": [0.2, 0.5]},
    "gain": {"name": "gain", "gain_db": [-20, 6]},
}


@pytest.mark.parametrize("name", sorted(AUDIO_SPECS))
def test_audio_noise_reproducible_by_seed(name):
    assert set(AUDIO_NOISES) == set(AUDIO_SPECS)
    cfg = NoiseConfig(mixture=[AUDIO_SPECS[name]], quantize_bits=16)
    x = torch.from_numpy(tone(0.5)[:, 0])[None]
    banks = {"music": [torch.from_numpy(tone(2.0, seed=5)[:, 0])], "effects": [torch.from_numpy(tone(0.3, seed=11)[:, 0])], "speech": [torch.from_numpy(tone(1.0, seed=s)[:, 0]) for s in range(6, 10)]}
    a, pa = synthesize_audio(x, cfg, pair_generator(0, 1, 2), sample_rate=16000, banks=banks)
    b, pb = synthesize_audio(x, cfg, pair_generator(0, 1, 2), sample_rate=16000, banks=banks)
    c, _ = synthesize_audio(x, cfg, pair_generator(0, 1, 3), sample_rate=16000, banks=banks)
    assert torch.equal(a, b) and pa == pb and not torch.equal(a, c) and not torch.equal(a, x)
    assert a.abs().max() <= 1


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
def test_snr_is_what_was_asked(snr):
    x = torch.from_numpy(tone(1.0)[:, 0])[None]
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = mix_at_snr(x, n, snr)
    measured = 10 * torch.log10((x**2).sum() / ((y - x) ** 2).sum())
    assert abs(measured.item() - snr) < 0.01


def test_hum_sits_at_mains_frequency():
    cfg = NoiseConfig(mixture=[{"name": "hum", "snr_db": 0, "mains_hz": [50.0], "harmonics": 3}], quantize_bits=None, clip=False)
    x = torch.zeros(1, 16000)
    x[0, ::400] = 0.5  # clicks: flat spectrum reference signal
    y, _ = synthesize_audio(x, cfg, pair_generator(0, 0), sample_rate=16000, banks={})
    spec = np.abs(np.fft.rfft((y - x)[0].numpy()))
    assert spec.argmax() == 50  # 1 Hz bins over 1 s


def test_babble_talkers_can_each_be_sped_up_or_down_and_equalised():
    """talker_speed plays each talker at its own speed (pitch with it): a 1 kHz voice at speed
    0.8 sits at 800 Hz; at the defaults the spec dumps as before (hashes, tags, metadata)."""
    t = torch.arange(16000) / 16000
    bank = {"speech": [0.5 * torch.sin(2 * torch.pi * 1000.0 * t)]}
    x = torch.zeros(1, 16000)
    x[0, ::400] = 0.5  # clicks: a flat reference spectrum
    peak = lambda cfg: int(np.abs(np.fft.rfft((synthesize_audio(x, cfg, pair_generator(0, 0), sample_rate=16000, banks=bank)[0] - x)[0].numpy())).argmax())  # noqa: E731
    plain = NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talkers": [1, 1]}], quantize_bits=None, clip=False)
    slow = NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talkers": [1, 1], "talker_speed": [0.8, 0.8]}], quantize_bits=None, clip=False)
    assert peak(plain) == 1000 and peak(slow) == 800
    eq = NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talkers": [1, 1], "talker_eq_db": 12}], quantize_bits=None, clip=False)
    a, b = (synthesize_audio(x, c, pair_generator(0, 0), sample_rate=16000, banks=bank)[0] for c in (plain, eq))
    assert not torch.allclose(a, b)
    dumped = plain.model_dump(mode="json")["mixture"][0]
    assert not {"talker_speed", "talker_eq_db"} & set(dumped) and slow.model_dump(mode="json")["mixture"][0]["talker_speed"] == [0.8, 0.8]
    # at the defaults, exactly the babble of before: a plain sum of excerpts, drawn in the same order
    three = NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talkers": [3, 3]}], quantize_bits=None, clip=False)
    g = pair_generator(0, 0)
    torch.multinomial(torch.ones(1, dtype=torch.float64), 1, generator=g)  # synthesize_audio's pick of the mixture member
    uniform(0.0, 0.0, g)  # its draw of snr_db
    assert int(torch.randint(3, 4, (), generator=g)) == 3
    old = mix_at_snr(x, sum(_excerpt(bank["speech"], 16000, g) for _ in range(3)).expand_as(x), 0.0)
    assert torch.equal(synthesize_audio(x, three, pair_generator(0, 0), sample_rate=16000, banks=bank)[0], old)
    with pytest.raises(ValueError, match="multiple of 0.05"):
        NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talker_speed": [0.93, 1.1]}])


def test_a_held_out_split_of_one_clip_still_gets_babble(tmp_path):
    """The report's picture validates on one held-out clip (evaluate.before_after): with no
    other held-out voice its babble comes from the training voices, not an empty bank."""
    from autoenc.data import TrainingData, ingest, read_manifest
    from autoenc.config import load

    for source, n in (("held", 1), ("train", 3)):
        (tmp_path / source).mkdir()
        for i in range(n):
            sf.write(tmp_path / source / f"{i}.wav", tone(1.0, seed=10 * n + i), 16000)
    cfg = load(REPO / "configs/tiny-audio.yaml", [f"data.root={tmp_path}", "data.val_sources=[held]", "eval.noises=[{name: babble, snr_db: 0}]"])
    ingest(tmp_path, cfg.data, tmp_path / "manifest.csv", modality="audio")
    data = TrainingData(cfg, tmp_path, read_manifest(tmp_path / "manifest.csv"))
    (noisy, clean), = data.val["babble-snr_db0-talkers3..6"]
    assert not torch.equal(noisy, clean)


def test_other_talkers_are_other_sources_or_else_other_clips():
    clips = [torch.full((10,), float(i)) for i in range(4)]
    picked = other_talkers(clips, ["a", "a", "b", "c"], 0)
    assert [int(c[0]) for c in picked] == [2, 3]  # never its own voice's clips
    assert [int(c[0]) for c in other_talkers(clips, ["a"] * 4, 1)] == [0, 2, 3]  # one source: its other clips


def test_validation_babble_is_spoken_by_the_other_held_out_voices():
    """A held-out clip's babble comes from held-out clips of other sources, not from the
    bank (the training voices) nor its own source: every source here is one pure tone."""
    sr, t = 16000, torch.arange(16000) / 16000
    tone_of = {"a": 440.0, "b": 1000.0, "train": 2500.0}
    clips = [0.5 * torch.sin(2 * torch.pi * tone_of[s] * t + k) for k, s in enumerate(["a", "a", "b"])]
    noise = NoiseConfig(mixture=[{"name": "babble", "snr_db": 0, "talkers": [2, 2]}], quantize_bits=None, clip=False)
    data = DataConfig(sample_rate=sr, max_val_images=None, max_val_seconds=None)
    bank = {"speech": [0.5 * torch.sin(2 * torch.pi * tone_of["train"] * t)]}
    pairs = val_segments(clips, data, noise, 0, "v", bank, sources=["a", "a", "b"])
    peak_hz = [int(np.abs(np.fft.rfft((noisy - clean)[0].numpy())).argmax()) for noisy, clean in pairs]  # 1 Hz bins over 1 s
    assert peak_hz == [1000, 1000, 440]
    old = val_segments(clips, data, noise, 0, "v", bank)  # without sources: the bank's voices
    assert [int(np.abs(np.fft.rfft((n - c)[0].numpy())).argmax()) for n, c in old] == [2500] * 3
    # every other noise is drawn exactly as before, also when only some clips are picked
    white = NoiseConfig(mixture=[{"name": "white", "snr_db": 5}], quantize_bits=16)
    some = DataConfig(sample_rate=sr, max_val_images=2, max_val_seconds=None)
    for (a, _), (b, _) in zip(val_segments(clips, some, white, 0, "w", bank, sources=["a", "a", "b"]), val_segments(clips, some, white, 0, "w", bank)):
        assert torch.equal(a, b)
    picked = val_segments(clips, some, noise, 0, "v", bank, sources=["a", "a", "b"])  # clips 0 and 1, both of source a
    assert [int(np.abs(np.fft.rfft((n - c)[0].numpy())).argmax()) for n, c in picked] == [1000, 1000]
    alone = val_segments(clips[:1], data, noise, 0, "v", bank, sources=["a"])  # a split of one clip: the bank's voices
    assert int(np.abs(np.fft.rfft((alone[0][0] - alone[0][1])[0].numpy())).argmax()) == 2500


@pytest.mark.parametrize("n", [256, 1600, 12345])
def test_audio_model_shapes_identity_and_learning(n):
    torch.manual_seed(0)
    m = get_model("unet1d_dae", width=8, levels=3)
    x = torch.randn(2, 1, n) * 0.3
    codes = m.encode(x)
    assert codes[-1].shape[1] == 64 and m.decode(codes).shape == x.shape
    assert torch.allclose(m(x), x)
    if n == 1600:
        clean = torch.from_numpy(tone(0.1)[:1600, 0])[None, None].repeat(4, 1, 1)
        noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        losses = []
        for _ in range(40):
            loss = torch.nn.functional.l1_loss(m(noisy), clean)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0]


def test_si_sdr_properties():
    x = tone(1.0)[:, 0]
    assert si_sdr(x, 0.5 * x) > 100  # scale-invariant
    noisy = x + 0.1 * np.random.default_rng(0).standard_normal(len(x))
    assert si_sdr(x, noisy) < si_sdr(x, x + 0.01 * np.random.default_rng(0).standard_normal(len(x)))


def test_held_out_folder_of_one_file_takes_babble_from_training_voices(tmp_path):
    """A held-out split of one file has no other held-out voice to build babble from: the
    training voices speak it (as validation does), and without them the error says why."""
    from autoenc.config import from_dict
    from autoenc.heldout import make_noisy_audio_folder

    rng = np.random.default_rng(0)
    for rel in ["val/one.wav", "train/a.wav", "train/b.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        voice = tone(1.0, 16000) if rel.startswith("val") else (0.1 * rng.standard_normal((16000, 1))).astype(np.float32)  # other "voices": unlike the target
        sf.write(tmp_path / rel, voice, 16000)
    cfg = from_dict({"name": "t", "modality": "audio", "noise": {"mixture": [{"name": "white", "snr_db": 5}]}, "model": {"name": "unet1d_dae"},
                     "eval": {"noises": [{"name": "babble", "snr_db": 5, "talkers": [2, 2]}]}})
    clean_dir, noisy_dir = make_noisy_audio_folder(cfg, tmp_path, ["val/one.wav"], tmp_path / "out", train_files=["train/a.wav", "train/b.wav"])
    (noisy,) = sorted(noisy_dir.glob("*.wav"))
    c, _ = sf.read(clean_dir / noisy.name)
    n, _ = sf.read(noisy)
    assert si_sdr(c, n) == pytest.approx(5, abs=0.5)  # babble mixed in at its SNR
    with pytest.raises(ValueError, match="babble needs other voices"):
        make_noisy_audio_folder(cfg, tmp_path, ["val/one.wav"], tmp_path / "out2")


def test_held_out_babble_fallback_takes_voices_evenly_through_the_training_split(tmp_path, monkeypatch):
    """A manifest lists a source's files together: the fallback talkers are spread through the
    list rather than its first files (here only every second file exists: reading any other fails)."""
    from autoenc import heldout
    from autoenc.config import from_dict

    monkeypatch.setattr(heldout, "TRAIN_TALKERS", 2)
    rng = np.random.default_rng(1)
    for rel in ["val/one.wav", "train/a.wav", "train/c.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / rel, tone(1.0, 16000) if rel.startswith("val") else (0.1 * rng.standard_normal((16000, 1))).astype(np.float32), 16000)
    cfg = from_dict({"name": "t", "modality": "audio", "noise": {"mixture": [{"name": "white", "snr_db": 5}]}, "model": {"name": "unet1d_dae"},
                     "eval": {"noises": [{"name": "babble", "snr_db": 5, "talkers": [2, 2]}]}})
    _, noisy_dir = heldout.make_noisy_audio_folder(cfg, tmp_path, ["val/one.wav"], tmp_path / "out", train_files=["train/a.wav", "train/b.wav", "train/c.wav", "train/d.wav"])
    assert len(list(noisy_dir.glob("*.wav"))) == 1
