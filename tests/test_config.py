from pathlib import Path

import pytest

from autoenc.config import ConfigError, load

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "schedule.yaml"), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load(path)
    assert cfg.name
    assert len(cfg.hash()) == 16


@pytest.mark.parametrize("path", sorted((REPO / "configs/calibration").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_calibration_settings_validate_against_the_config_they_name(path):
    """Each calibration settings file validates, and applied to configs/photo-context.yaml (the
    config photo-hq's calibration names) gives a valid run config with its noises and files."""
    from autoenc.config import load_calibration_settings

    settings = load_calibration_settings(path)
    cfg = settings.applied(load(REPO / "configs/photo-context.yaml"), str(path))
    assert len(cfg.eval.noises) == len(settings.noises)
    assert cfg.data.val_files == (settings.data.val_files if settings.data.val_files is not None else load(REPO / "configs/photo-context.yaml").data.val_files)


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text((REPO / "configs/tiny-image.yaml").read_text().replace("patch_size:", "patch_sise:"))
    with pytest.raises(ConfigError, match=r"data\.patch_sise: unknown key"):
        load(p)


def test_mistyped_value_is_named():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load(REPO / "configs/tiny-image.yaml", ["train.epochs=many"])


def test_unknown_noise_and_model_are_errors():
    with pytest.raises(ConfigError, match="noise.mixture.0"):
        load(REPO / "configs/tiny-image.yaml", ["noise.mixture=[{name: rain, amount: 1}]"])
    with pytest.raises(ConfigError, match="not registered"):
        load(REPO / "configs/tiny-image.yaml", ["model.name=nope"])


def test_overrides_apply_and_change_hash():
    base = load(REPO / "configs/tiny-image.yaml")
    cfg = load(REPO / "configs/tiny-image.yaml", ["train.epochs=7", "noise.mixture=[{name: gaussian, sigma: 10}]"])
    assert cfg.train.epochs == 7
    assert cfg.noise.mixture[0].sigma == (10.0, 10.0)
    assert cfg.hash() != base.hash()
    with pytest.raises(Exception):
        cfg.train.epochs = 3  # frozen


def test_model_kwargs_and_ranges_are_checked_at_load():
    with pytest.raises(ConfigError, match="widht"):
        load(REPO / "configs/tiny-image.yaml", ["model.kwargs={widht: 8}"])
    with pytest.raises(ConfigError, match=r"within \[1, 100\]"):
        load(REPO / "configs/tiny-image.yaml", ["noise.then=[{name: jpeg, quality: [0, 500]}]"])
    with pytest.raises(ConfigError, match="low, high"):
        load(REPO / "configs/tiny-image.yaml", ["noise.mixture=[{name: gaussian, sigma: [50, 5]}]"])
    with pytest.raises(ConfigError, match="not an image noise"):
        load(REPO / "configs/tiny-image.yaml", ["noise.mixture=[{name: white, snr_db: 5}]"])
    with pytest.raises(ConfigError, match="'voices' is an audio corpus"):  # at load, not when training starts
        load(REPO / "configs/tiny-image.yaml", ["data.corpus=voices"])
    with pytest.raises(ConfigError, match="'photos' is no corpus"):
        load(REPO / "configs/tiny-audio.yaml", ["data.corpus=photos"])
    assert load(REPO / "configs/tiny-image.yaml", ["data.corpus=photos-wide"]).data.corpus == "photos-wide"


def test_hashes_of_configs_without_later_fields_are_unchanged_by_them():
    """Runs trained before ``train.init_from`` (and the other LATER_FIELDS: ``train.ema_decay``,
    ``data.val_sources``, the audio corpus and augmentation fields) existed must stay resumable
    and keep their hash: an unset field is left out of both hashes; a set one changes them."""
    import hashlib
    import json

    from autoenc.config import LATER_FIELDS

    cfg = load(REPO / "configs" / "tiny-image.yaml")
    tree = cfg.model_dump(mode="json")
    for section, fields in LATER_FIELDS.items():
        for k in fields:
            del tree[section][k]
    before = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]  # as computed before the field
    assert cfg.hash() == before
    tuned = load(REPO / "configs" / "tiny-image.yaml", ["train.init_from=runs/x/best.pt"])
    assert tuned.hash() != cfg.hash() and tuned.resume_hash() != cfg.resume_hash()
    assert load(REPO / "configs" / "tiny-image.yaml", ["train.ema_decay=0.999"]).hash() != cfg.hash()
    assert load(REPO / "configs" / "tiny-image.yaml", ["data.val_files=[]", "data.val_sources=[a]"]).hash() != cfg.hash()
    assert load(REPO / "configs" / "tiny-image.yaml", ["data.speed=[0.9,1.1]"]).hash() != cfg.hash()
    assert load(REPO / "configs" / "tiny-image.yaml", ["data.corpus=photos-wide"]).hash() != cfg.hash()
