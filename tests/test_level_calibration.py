"""Level calibration: the gain on the estimated noise level a model is told, fitted on its
validation pairs (``autoenc calibrate``), carried in its ONNX metadata and applied at inference
(fp32 and int8 twin alike), and refused for models that are not told a level."""

import json

import numpy as np
import onnx
import pytest

from autoenc.runtime.noise_level import BLOTCHY_RATIO, blotchiness, calibrated_level
from conftest import REPO, make_model_file, photo, photo_sources


def test_calibrated_level_is_the_estimate_times_an_interpolated_gain():
    knots = [[15 / 255, 0.8], [50 / 255, 1.0]]
    assert calibrated_level(0.1, None) == pytest.approx(0.1)
    assert calibrated_level(0.1, []) == pytest.approx(0.1)
    assert calibrated_level(10 / 255, knots) == pytest.approx(0.8 * 10 / 255)  # the end gain below the first knot
    assert calibrated_level(80 / 255, knots) == pytest.approx(80 / 255)  # and above the last
    mid = 32.5 / 255
    assert calibrated_level(mid, knots) == pytest.approx(0.9 * mid)
    per_plane = calibrated_level(np.array([15, 50]) / 255, knots)
    assert per_plane.shape == (2,) and per_plane == pytest.approx([0.8 * 15 / 255, 50 / 255])


def _tiny_told_model(tmp_path, channels: int, *overrides: str):
    """(best checkpoint, run folder with model.onnx) of a tiny model told the noise level,
    trained one short epoch on synthetic photos with source ``b`` held out."""
    from autoenc.config import load
    from autoenc.data import ingest
    from autoenc.export import to_onnx
    from autoenc.train import fit

    root = photo_sources(tmp_path / "photos", 2, channels)
    cfg = load(REPO / "configs/tiny-image.yaml", [f"data.root={root}", f"data.channels={channels}", "data.val_files=[]", "data.val_sources=[b]",
                                                  "data.patches_per_epoch=32", "train.epochs=1", "model.kwargs.noise_level_input=true", *overrides])
    run = tmp_path / "run"
    ingest(root, cfg.data, run / "manifest.csv")
    best = fit(cfg, root, run / "manifest.csv", run)
    to_onnx(best, run / "model.onnx")
    return best, run


def _blotches(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """White noise of deviation ``sigma`` spread by a 3x3 box (scaled back to ``sigma``)."""
    n = np.pad(rng.normal(0, 1, shape), ((1, 1), (1, 1), (0, 0)), mode="wrap")
    h, w = shape[:2]
    return sigma * sum(n[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 3


def test_knots_by_kind_of_noise_blend_on_the_images_blotchiness():
    """Knots by kind of noise: the white curve's gain for white noise (or no blotchiness given),
    the blotchy curve's for camera-like noise, linear between BLOTCHY_RATIO's ends; and
    blotchiness reads white noise near 1 and noise made blotchy (spread over neighbours, as
    demosaicing and JPEG's chroma subsampling spread it) well above the blotchy end."""
    knots = {"white": [[10 / 255, 0.5], [40 / 255, 1.0]], "blotchy": [[5 / 255, 2.0]]}
    lv = 10 / 255
    lo, hi = BLOTCHY_RATIO
    assert calibrated_level(lv, knots) == pytest.approx(0.5 * lv) and calibrated_level(lv, knots, lo) == pytest.approx(0.5 * lv)
    assert calibrated_level(lv, knots, hi) == pytest.approx(2.0 * lv) and calibrated_level(lv, knots, 3.0) == pytest.approx(2.0 * lv)
    assert calibrated_level(lv, knots, (lo + hi) / 2) == pytest.approx(1.25 * lv)
    assert calibrated_level(lv, {"white": [], "blotchy": [[lv, 2.0]]}, 1.0) == pytest.approx(lv)  # an empty curve: the estimate as it is

    rng = np.random.default_rng(0)
    flat = np.full((256, 256, 3), 0.5)
    white = flat + rng.normal(0, 0.03, flat.shape)
    blotchy = flat + _blotches(rng, flat.shape, 0.03)
    assert abs(blotchiness(white) - 1) < 0.1 and blotchiness(blotchy) > hi
    assert blotchiness(white[..., 0]) == pytest.approx(blotchiness(np.repeat(white[..., :1], 3, axis=2)))  # gray reads as R = G = B
    assert blotchiness(flat) == 1.0  # nothing to read


def test_calibrate_on_camera_settings_fits_knots_by_kind_and_inference_applies_them(tmp_path):
    """``settings`` replaces the run's validation settings for the fit (the config hash still
    the model's); a camera setting puts its knot on the blotchy curve, a Gaussian one on the
    white, and the denoiser tells the model the estimate through the curve the file's own
    blotchiness picks."""
    import yaml

    from autoenc.cli import main
    from autoenc.level_calibration import GAINS, REPORT_KEY
    from autoenc.runtime.infer import OnnxDenoiser
    from autoenc.runtime.metadata import ModelInfo
    from test_camera import write_profiles

    best, run = _tiny_told_model(tmp_path, 3)
    camera = {"name": "camera", "iso": 3200, "gain": 2, "profiles": str(write_profiles(tmp_path / "profiles.json", scale=20)), "demosaic": ["mhc"], "tone": 0.5, "saturation": 0.6, "jpeg_quality": 90}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"noises": [{"name": "gaussian", "sigma": 10}, camera]}))
    assert main(["calibrate", str(best), str(run / "model.onnx"), "--settings", str(tmp_path / "settings.yaml")]) == 0

    props = {p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}
    report = json.loads(props[REPORT_KEY])
    assert report["settings"]["noises"][1]["name"] == "camera" and len(report["before"]) == 2  # fitted on these, not the run's own sigma 25
    start, fitted = report["knots_start"], report["knots_fitted"]
    assert set(start) == set(fitted) == {"white", "blotchy"} and len(start["white"]) == len(start["blotchy"]) == 1
    assert start["white"][0][0] == pytest.approx(10 / 255, rel=0.5) and all(g in GAINS for c in fitted.values() for _, g in c)
    knots = ModelInfo.from_props(props).level_calibration
    assert knots == (fitted if report["kept"] else None)
    forced = {"white": [[0.02, 0.7]], "blotchy": [[0.02, 1.6]]}  # whatever the fit kept: inference follows the file's knots
    from autoenc.level_calibration import _write

    _write(run / "model.onnx", forced, {"test": True})
    now = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None)
    raw = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None, calibrated=False)
    rng = np.random.default_rng(1)
    img = photo(72, 80, 3, seed=3) / 255
    for noise in (rng.normal(0, 12 / 255, img.shape), _blotches(rng, img.shape, 12 / 255)):
        x = np.clip(img + noise, 0, 1).astype(np.float32)
        told = calibrated_level(now.noise_level(x), forced, blotchiness(x))
        assert np.array_equal(now.denoise(x), raw.denoise(x, level=told))
    assert blotchiness(x) > BLOTCHY_RATIO[1]  # the second image went down the blotchy curve


def test_calibrate_on_other_held_out_photos_refuses_any_the_model_trained_on(tmp_path):
    """A settings file's ``data`` fits on other held-out photos than the run's validation split
    (here a source ``c`` added after training), each checked by content against the model's
    training split: a trained-on file (even renamed) is refused, and only validation keys may be set."""
    import shutil

    import yaml

    from autoenc.cli import main
    from autoenc.config import CalibrationSettings, ConfigError, load_calibration_settings
    from autoenc.level_calibration import REPORT_KEY, calibrate
    from PIL import Image

    best, run = _tiny_told_model(tmp_path, 1)
    root = tmp_path / "photos"
    (root / "c").mkdir()
    for i in range(3):
        Image.fromarray(photo(72, 80, 1, seed=40 + i)).save(root / "c" / f"q{i}.png")
    noises = [{"name": "gaussian", "sigma": 10}, {"name": "gaussian", "sigma": 30}]
    with pytest.raises(ValueError, match="trained on: a/p0.png"):
        calibrate(best, run / "model.onnx", settings=CalibrationSettings(noises=noises, data={"val_sources": ["a"]}))
    shutil.copy(root / "a" / "p1.png", root / "c" / "renamed.png")
    with pytest.raises(ValueError, match="c/renamed.png"):
        calibrate(best, run / "model.onnx", settings=CalibrationSettings(noises=noises, data={"val_sources": ["c"]}))
    (root / "c" / "renamed.png").unlink()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"noises": noises, "data": {"patch_size": 32}}))
    with pytest.raises(ConfigError, match=r"data\.patch_size: unknown key"):
        load_calibration_settings(tmp_path / "bad.yaml")

    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"noises": noises, "data": {"val_sources": ["c"]}}))
    assert main(["calibrate", str(best), str(run / "model.onnx"), "--settings", str(tmp_path / "settings.yaml")]) == 0
    report = json.loads({p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}[REPORT_KEY])
    assert report["settings"]["data"] == {"val_sources": ["c"]} and "other held-out files" in report["data"]
    assert set(report["before"]) == {"gaussian-sigma10", "gaussian-sigma30"}
    assert load_calibration_settings(tmp_path / "settings.yaml").applied(_cfg_of(best), "x").data.val_sources == ["c"]


def _cfg_of(checkpoint):
    from autoenc.checkpoint import read_checkpoint
    from autoenc.config import from_dict

    return from_dict(read_checkpoint(checkpoint)["config"])


def test_a_model_without_calibration_reads_as_before_and_keeps_it_through_props(tmp_path):
    from autoenc.runtime.metadata import PREFIX, ModelInfo

    path = make_model_file(tmp_path, channels=1, noise_level_input=True)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ModelInfo.from_props(props).level_calibration is None
    old = {k: v for k, v in props.items() if k != PREFIX + "level_calibration"}  # a file exported before the field existed
    assert ModelInfo.from_props(old).level_calibration is None
    info = ModelInfo.from_props({**props, PREFIX + "level_calibration": json.dumps([[0.05, 0.9]])})
    assert ModelInfo.from_props(info.to_props()).level_calibration == [[0.05, 0.9]]


def test_calibrate_fits_writes_and_inference_applies_it(tmp_path):
    from autoenc.level_calibration import GAINS, REPORT_KEY, calibrate
    from autoenc.quantize import int8_twin
    from autoenc.runtime.infer import OnnxDenoiser
    from autoenc.runtime.metadata import ModelInfo

    best, run = _tiny_told_model(tmp_path, 1, "eval.noises=[{name: gaussian, sigma: 10}, {name: gaussian, sigma: 40}, {name: poisson, peak: 30}]")
    int8_twin(best, run / "model.onnx", 4)
    plain = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None)
    img = np.clip(photo(72, 80, 1, seed=3)[..., None] / 255 + np.random.default_rng(0).normal(0, 20 / 255, (72, 80, 1)), 0, 1).astype(np.float32)
    before = plain.denoise(img)

    knots, report = calibrate(best, run / "model.onnx", also=[run / "model-int8.onnx"])
    assert set(report["by_gain"]) == {"gaussian-sigma10", "gaussian-sigma40"}  # Poisson has no one level: checked, not fitted
    assert set(report["before"]) == set(report["after"]) == {"gaussian-sigma10", "gaussian-sigma40", "poisson-peak30"}
    start, fitted = report["knots_start"], report["knots_fitted"]
    assert len(start) == 2 and start[0][0] < start[1][0] and start[0][0] == pytest.approx(10 / 255, rel=0.3)
    for (level, gain), tag in zip(start, ("gaussian-sigma10", "gaussian-sigma40")):  # each setting's own best gain to start
        scores = report["by_gain"][tag]
        assert gain in GAINS and scores[f"{gain:g}"] == max(scores.values())
    assert [k[0] for k in fitted] == [k[0] for k in start] and all(g in GAINS for _, g in fitted)
    mean = lambda d: np.mean(list(d.values()))  # noqa: E731
    assert mean(report["after"]) >= report["start_score"] - 1e-9  # the ascent never loses what the start had
    assert report["kept"] == (mean(report["after"]) > mean(report["before"])) and (knots == fitted if report["kept"] else knots is None)

    for path in (run / "model.onnx", run / "model-int8.onnx"):
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert ModelInfo.from_props(props).level_calibration == knots and json.loads(props[REPORT_KEY])["fitted_on"] == str(run / "model.onnx")
        assert "autoenc.quantization" in props or path.name == "model.onnx"  # the twin keeps its own keys
    now = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None)
    uncalibrated = OnnxDenoiser(run / "model.onnx", tile=4096, memory_mb=None, calibrated=False)
    est = now.noise_level(img)
    assert np.array_equal(now.denoise(img), uncalibrated.denoise(img, level=calibrated_level(est, knots)))
    assert np.array_equal(uncalibrated.denoise(img), before)  # the network itself is untouched
    assert now.identity != plain.identity  # outputs may differ: a new identity for the ledger

    # A calibration written into the twin alone is what the twin applies.
    forced = [[0.02, 0.7], [0.2, 1.2]]
    from autoenc.level_calibration import _write

    _write(run / "model-int8.onnx", forced, {"test": True})
    q = OnnxDenoiser(run / "model-int8.onnx", tile=4096, memory_mb=None)
    q_plain = OnnxDenoiser(run / "model-int8.onnx", tile=4096, memory_mb=None, calibrated=False)
    assert np.array_equal(q.denoise(img), q_plain.denoise(img, level=calibrated_level(est, forced)))
    assert not np.array_equal(q.denoise(img), q_plain.denoise(img))


def test_calibrate_refuses_blind_models_mismatched_twins_and_foreign_sources(tmp_path, capsys):
    from autoenc.cli import main
    from autoenc.level_calibration import calibrate

    for d in ("blind", "told"):
        (tmp_path / d).mkdir()
    blind = make_model_file(tmp_path / "blind", channels=1)
    with pytest.raises(ValueError, match="noise_level_input"):
        calibrate(blind.with_suffix(".pt"), blind)
    told = make_model_file(tmp_path / "told", channels=1, noise_level_input=True)
    with pytest.raises(ValueError, match="other input planes"):
        calibrate(told.with_suffix(".pt"), told, also=[blind])
    with pytest.raises(ValueError, match="not made from"):
        calibrate(REPO / "configs/tiny-image.yaml", told)
    before = blind.read_bytes()
    assert main(["calibrate", str(blind.with_suffix(".pt")), str(blind)]) == 1
    assert "noise_level_input" in capsys.readouterr().err and blind.read_bytes() == before  # one line, nothing written
    assert main(["calibrate", str(told.with_suffix(".pt")), str(told), "--also", str(tmp_path / "missing.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_models_record_what_every_stage_trained_on_and_calibration_refuses_an_earlier_stages_file(tmp_path):
    """A second stage (train.init_from the first) records the first stage's training files
    beside its own, in its checkpoint and its ONNX metadata; a held-out photo with the content
    of a file only the first stage trained on is refused; a start that carries no record is
    named as unknown."""
    import shutil

    from autoenc.checkpoint import read_checkpoint
    from autoenc.config import CalibrationSettings, load
    from autoenc.data import ingest, read_manifest
    from autoenc.export import to_onnx
    from autoenc.level_calibration import calibrate
    from autoenc.runtime import trained_on
    from autoenc.runtime.session import model_info
    from autoenc.train import fit
    from PIL import Image

    first, run1 = _tiny_told_model(tmp_path, 1)
    root = tmp_path / "second"
    for src, seeds in (("x", (60, 61)), ("y", (70,))):
        (root / src).mkdir(parents=True)
        for s in seeds:
            Image.fromarray(photo(72, 80, 1, seed=s)).save(root / src / f"s{s}.png")
    run = tmp_path / "run2"
    cfg = load(REPO / "configs/tiny-image.yaml", [f"data.root={root}", "data.val_files=[]", "data.val_sources=[y]", "data.patches_per_epoch=32",
                                                  "train.epochs=1", "model.kwargs.noise_level_input=true", f"train.init_from={first}"])
    ingest(root, cfg.data, run / "manifest.csv")
    best = fit(cfg, root, run / "manifest.csv", run)
    to_onnx(best, run / "model.onnx")
    rec = read_checkpoint(best)["trained_on"]
    own = {e.sha256[: trained_on.DIGEST_CHARS] for m in (run1, run) for e in read_manifest(m / "manifest.csv") if e.split == "train"}
    assert set(rec["sha256"]) == own and len(own) == 4 and rec["unknown"] == []  # a/p0, a/p1 of the first stage; x/s60, x/s61
    assert rec["stages"] == [read_checkpoint(first)["config_hash"], cfg.hash()]
    assert model_info(run / "model.onnx").trained_on == rec

    (root / "z").mkdir()
    shutil.copy(tmp_path / "photos" / "a" / "p1.png", root / "z" / "earlier.png")  # only the first stage trained on it
    Image.fromarray(photo(72, 80, 1, seed=80)).save(root / "z" / "new.png")
    settings = CalibrationSettings(noises=[{"name": "gaussian", "sigma": 10}, {"name": "gaussian", "sigma": 30}], data={"val_sources": ["z"]})
    with pytest.raises(ValueError, match="1 of the held-out files .*z/earlier.png"):
        calibrate(best, run / "model.onnx", settings=settings)
    (root / "z" / "earlier.png").unlink()
    _, report = calibrate(best, run / "model.onnx", settings=settings)
    assert "every stage and teacher recorded" in report["data"]

    from autoenc.checkpoint import trained_on_of
    from autoenc.runtime.session import PRETRAINED_DIR

    assert trained_on_of(run / "model.onnx") == rec and trained_on_of(PRETRAINED_DIR / "photo-fast.onnx") is None  # shipped before records
    unknown = trained_on.record(["ab" * 32], "h3", {"old.onnx": None, str(best): rec})
    assert trained_on.record([], "h4", {"new.pt": unknown, "old.onnx": None})["unknown"] == ["old.onnx"]  # once, though two stages lack it
    assert unknown["unknown"] == ["old.onnx"] and unknown["stages"] == [*rec["stages"], "h3"] and "not recorded: what old.onnx trained on" in trained_on.describe(unknown)
    assert trained_on.seen(None, {"f": "ab"}) == [] and "records no training files" in trained_on.describe(None)
