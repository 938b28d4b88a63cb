"""The many-voices corpus, its noise banks and speech augmentation, on tiny fake packages."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone


def _ogg(path, seconds: float, rate: int = 22050, lead: float = 0.0, channels: int = 1, seed: int = 0) -> None:
    """A speech-like OGG clip with ``lead`` seconds of digital silence first."""
    x = tone(seconds, rate, channels, seed=seed)
    x = np.concatenate([np.zeros((int(lead * rate), channels), np.float32), x])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, format="OGG", subtype="VORBIS")


@pytest.fixture()
def packages(tmp_path, monkeypatch):
    """Unpacked fake Debian packages under $AUTOENC_CACHE/debian, as `make data` leaves them."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUTOENC_CACHE", str(cache))
    deb = cache / "debian"
    for lang, pkg in [("cs", "fillets-ng-data-cs"), ("nl", "fillets-ng-data-nl")]:
        base = deb / pkg / "usr/share/games/fillets-ng/sound"
        _ogg(base / f"city/{lang}/vit-m-hlava.ogg", 1.0, lead=0.5)
        _ogg(base / f"city/{lang}/vit-v-proc.ogg", 1.0, seed=1)
        _ogg(base / f"city/{lang}/vit-hs-klid1.ogg", 1.0, seed=2)
        _ogg(base / f"gems/{lang}/vit-m-hlava.ogg", 1.0, seed=3)  # the same name in another level
        _ogg(base / f"gems/{lang}/zz-m-short.ogg", 0.1, seed=4)  # too short to keep
        (base / f"gems/{lang}/zz-v-empty.ogg").write_bytes(b"")  # broken: left out, not fatal
    hw = deb / "hedgewars-data/usr/share/games/hedgewars/Data/Sounds"
    _ogg(hw / "voices/Pirate/Ahoy.ogg", 0.6, rate=44100, channels=2)
    _ogg(hw / "voices/Robot/Beep.ogg", 0.6, rate=44100, seed=5)
    for k in range(5):
        _ogg(hw / f"explosion{k}.ogg", 0.5, rate=44100, seed=10 + k)
    kl = deb / "klettres-data/usr/share/klettres"
    for lang in ["fr", "nl"]:
        _ogg(kl / f"{lang}/alpha/a-1.ogg", 0.8, rate=44100, seed=20)
        _ogg(kl / f"{lang}/syllab/a-1.ogg", 0.8, rate=44100, seed=21)
    return cache


def test_voice_corpus_is_split_by_source_with_licences(packages):
    from autoenc.voices import RATE, build_benchmark_voices, build_effects_bank, build_voice_corpus

    train = build_voice_corpus(include_asterisk=False)
    bench = build_benchmark_voices()
    effects = build_effects_bank()
    sources = lambda root: sorted(d.name for d in root.iterdir() if d.is_dir())
    assert sources(train) == ["fillets-cs-m", "fillets-cs-minor", "fillets-cs-v", "hedgewars-Pirate", "hedgewars-Robot", "klettres-fr"]
    assert sources(bench) == ["fillets-nl-m", "fillets-nl-minor", "fillets-nl-v", "klettres-nl"]  # Dutch only, never in training
    files = sorted(p.relative_to(train).as_posix() for p in train.rglob("*.wav"))
    assert "fillets-cs-m/zz-m-short.wav" not in files and "fillets-cs-v/zz-v-empty.wav" not in files
    assert {"klettres-fr/alpha-a-1.wav", "klettres-fr/syllab-a-1.wav"} <= set(files)
    rows = list(csv.DictReader(open(train / "SOURCES.csv")))
    assert sorted(r["file"] for r in rows) == files  # one row per file, the duplicate name once
    assert {r["package"]: r["licence"] for r in rows} == {"fillets-ng-data-cs": "GPL-2", "hedgewars-data": "GFDL-1.3", "klettres-data": "GPL-2+"}
    for f in train.rglob("*.wav"):
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    # The 0.5 s of leading silence is trimmed (50 ms margin kept); levels are normalised.
    x, _ = sf.read(str(train / "fillets-cs-m/vit-m-hlava.wav"))
    assert abs(len(x) / RATE - 1.05) < 0.06 and abs(np.abs(x).max() - 0.89) < 0.01
    assert len(list(effects.glob("*.wav"))) == 5
    # Idempotent: a second build rewrites nothing.
    stamp = (train / "fillets-cs-v/vit-v-proc.wav").stat().st_mtime_ns
    build_voice_corpus(include_asterisk=False)
    assert (train / "fillets-cs-v/vit-v-proc.wav").stat().st_mtime_ns == stamp


def test_missing_package_says_how_to_get_it(tmp_path, monkeypatch):
    from autoenc.corpus import CorpusMissing
    from autoenc.voices import build_voice_corpus

    monkeypatch.setenv("AUTOENC_CACHE", str(tmp_path))
    if any(__import__("pathlib").Path("/usr/share/games/fillets-ng/sound").glob("*/cs")):
        pytest.skip("fillets-ng-data-cs is installed system-wide here")
    with pytest.raises(CorpusMissing, match="fillets-ng-data-cs.*make data"):
        build_voice_corpus(include_asterisk=False)


def test_effects_and_crackle_noise_hit_their_snr_and_silence_adds_nothing():
    from autoenc.noise import AUDIO_NOISES, mix_at_snr, pair_generator

    x = torch.from_numpy(tone(1.0)[:, 0])[None]
    bank = [torch.cat([torch.zeros(16000), torch.from_numpy(tone(0.5, seed=3)[:, 0])])]  # a silent second first
    for name, kw in [("effects", {"banks": {"effects": bank}}), ("crackle", {"clicks_per_s": (5.0, 200.0)})]:
        y = AUDIO_NOISES[name](x, snr_db=5.0, generator=pair_generator(0, name), sample_rate=16000, **kw)
        assert abs(10 * math.log10(float((x**2).sum() / ((y - x) ** 2).sum())) - 5.0) < 0.01, name
    assert torch.equal(mix_at_snr(x, torch.zeros_like(x), 0.0), x)  # no NaN from a silent excerpt


def test_speed_perturbation_and_eq_are_seeded_and_do_what_they_say():
    from autoenc.augment import SPEED_STEP, change_speed, draw_speed, random_eq, speed_source_length
    from autoenc.noise import pair_generator

    speeds = {draw_speed(0.85, 1.15, pair_generator(0, i)) for i in range(200)}
    assert min(speeds) == pytest.approx(0.85) and max(speeds) == pytest.approx(1.15)
    assert all(abs(s / SPEED_STEP - round(s / SPEED_STEP)) < 1e-9 for s in speeds)
    rate, n = 16000, 8000
    t = np.arange(speed_source_length(n, 1.1)) / rate
    x = torch.from_numpy(np.sin(2 * np.pi * 400 * t).astype(np.float32))
    y = change_speed(x, 1.1, n)
    assert y.shape == (n,)
    assert abs(np.abs(np.fft.rfft(y.numpy())).argmax() * rate / n - 440) <= 2  # pitch up by the speed
    a = random_eq(x[:n], 6.0, rate, pair_generator(1, 2))
    assert torch.equal(a, random_eq(x[:n], 6.0, rate, pair_generator(1, 2)))
    assert not torch.allclose(a, x[:n], atol=1e-3) and torch.equal(random_eq(x[:n], 0.0, rate, pair_generator(1, 2)), x[:n])


def test_snr_loss_weighs_each_segment_by_its_own_ratio():
    from autoenc.losses import snr_loss

    ref = torch.randn(2, 1, 4000)
    est = ref + torch.stack([0.1 * torch.randn(1, 4000), 0.001 * torch.randn(1, 4000)])
    assert snr_loss(est, ref).item() == pytest.approx((-20.0 - 49.6) / 2, abs=0.3)  # 20 dB, and 60 dB capped near 50
    assert snr_loss(ref, ref).item() == pytest.approx(-50.0, abs=1e-3)
    assert snr_loss(2 * ref, ref).item() == pytest.approx(0.0, abs=0.01)  # a gain error is an error


def test_training_can_start_from_an_exported_model(tmp_path):
    from conftest import make_model_file

    from autoenc.checkpoint import start_from
    from autoenc.models import get_model

    onnx_path = make_model_file(tmp_path, width=8, levels=3, modality="audio", noise_scale=0.2)
    fresh = get_model("unet1d_dae", channels=1, width=8, levels=3)
    origin = start_from(fresh, "unet1d_dae", onnx_path)
    assert origin["model"] == "unet1d_dae" and origin["path"] == str(onnx_path)
    import onnxruntime as ort

    x = tone(0.5)[:, 0][None, None]
    sess = ort.InferenceSession(str(onnx_path))
    with torch.no_grad():
        ours = fresh.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {sess.get_inputs()[0].name: x})[0] - ours).max() < 1e-4
    with pytest.raises(ValueError, match="cannot start from"):
        start_from(get_model("unet1d_dae", channels=1, width=16, levels=3), "unet1d_dae", onnx_path)
