"""Typed run configuration, validated once at load.

A YAML file in ``configs/`` is parsed into :class:`RunConfig`, a frozen pydantic model in
which unknown keys are errors. Each library function receives only its own section
(``DataConfig``, ``NoiseConfig``, ``ModelConfig``, ``TrainConfig``, ``EvalConfig``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_serializer, model_validator

from autoenc.runtime.typed_config import ConfigError, Frozen, set_dotted, parse_overrides, read_yaml_mapping, validate  # noqa: F401  (ConfigError, validate: re-exported)

Range = tuple[float, float]


def _as_range(v: Any) -> Any:
    """Accept a scalar as the degenerate range ``(v, v)``."""
    if isinstance(v, (int, float)):
        return (float(v), float(v))
    return v


def _bounded(lo: float, hi: float):
    """A validator: an ordered range inside [lo, hi]."""

    def check(v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range {list(v)} must be [low, high]")
        if v[0] < lo or v[1] > hi:
            raise ValueError(f"range {list(v)} must lie within [{lo:g}, {hi:g}]")
        return v

    return check


class _NoiseBase(Frozen):
    weight: float = Field(1.0, gt=0, description="relative probability within a mixture")


class GaussianNoise(_NoiseBase):
    name: Literal["gaussian"] = "gaussian"
    sigma: Range = Field(description="std on the 0..255 pixel scale; a range makes a blind model")

    _r = field_validator("sigma", mode="before")(_as_range)
    _b = field_validator("sigma")(_bounded(0, 255))


class PoissonNoise(_NoiseBase):
    name: Literal["poisson"] = "poisson"
    peak: Range = Field(description="photon count at full white; lower is noisier")

    _r = field_validator("peak", mode="before")(_as_range)
    _b = field_validator("peak")(_bounded(1e-3, 1e9))


class SpeckleNoise(_NoiseBase):
    name: Literal["speckle"] = "speckle"
    sigma: Range = Field(description="std of the multiplicative gaussian factor (0..1 scale)")

    _r = field_validator("sigma", mode="before")(_as_range)
    _b = field_validator("sigma")(_bounded(0, 10))


class SaltPepperNoise(_NoiseBase):
    name: Literal["salt_pepper"] = "salt_pepper"
    amount: Range = Field(description="fraction of pixels replaced")
    salt_ratio: float = Field(0.5, ge=0, le=1, description="share of replaced pixels set to white")

    _r = field_validator("amount", mode="before")(_as_range)
    _b = field_validator("amount")(_bounded(0, 1))


class JpegNoise(_NoiseBase):
    name: Literal["jpeg"] = "jpeg"
    quality: Range = Field(description="JPEG quality 1..100, drawn uniformly and rounded")

    _r = field_validator("quality", mode="before")(_as_range)
    _b = field_validator("quality")(_bounded(1, 100))


class CameraNoise(_NoiseBase):
    """Real-camera noise (``autoenc.camera``): a measured sensor profile through demosaic,
    colour matrix, gamma and tone curve, then JPEG. Needs RGB (``data.channels: 3``)."""

    name: Literal["camera"] = "camera"
    iso: Range = Field((800.0, 12800.0), description="drawn log-uniformly; each camera uses its measured ISO nearest to it")
    gain: Range = Field((1.0, 1.0), description="digital gain after the sensor (an underexposed shot brightened), drawn log-uniformly")
    makers: list[str] = []  # only these camera makers' profiles (empty: all)
    exclude_makers: list[str] = []  # never these (held out for validation or the benchmark)
    profiles: Path | None = None  # darktable noiseprofiles.json; None: installed or extracted by `make data`
    demosaic: list[Literal["bilinear", "mhc"]] = Field(["bilinear", "mhc"], min_length=1)  # one drawn per sample
    saturation: Range = Field((0.3, 0.8), description="colour-matrix off-diagonal size (see camera.random_ccm)")
    tone: Range = Field((0.0, 1.0), description="S-curve strength after the gamma (0: plain sRGB)")
    jpeg_quality: Range | None = Field((70.0, 95.0), description="JPEG 4:2:0 at a quality drawn from this range; null: no JPEG")

    _r = field_validator("iso", "gain", "saturation", "tone", "jpeg_quality", mode="before")(_as_range)
    _b_iso = field_validator("iso")(_bounded(1, 10_000_000))
    _b_gain = field_validator("gain")(_bounded(1, 64))
    _b_sat = field_validator("saturation")(_bounded(0, 1))
    _b_tone = field_validator("tone")(_bounded(0, 1))

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if v is None else _bounded(1, 100)(v)


class _AudioNoise(_NoiseBase):
    snr_db: Range = Field(description="signal-to-noise ratio in dB, drawn uniformly per sample")

    _r = field_validator("snr_db", mode="before")(_as_range)
    _b = field_validator("snr_db")(_bounded(-60, 100))


class WhiteNoise(_AudioNoise):
    name: Literal["white"] = "white"


class PinkNoise(_AudioNoise):
    name: Literal["pink"] = "pink"


class BrownNoise(_AudioNoise):
    name: Literal["brown"] = "brown"


class HumNoise(_AudioNoise):
    name: Literal["hum"] = "hum"
    mains_hz: list[float] = [50.0, 60.0]  # one is picked per sample
    harmonics: int = Field(6, ge=1)  # partials at k * mains, amplitude 1/k


class MusicNoise(_AudioNoise):
    name: Literal["music"] = "music"  # excerpts of the background-recording bank (data.music_dir)


class EffectsNoise(_AudioNoise):
    name: Literal["effects"] = "effects"  # excerpts of recorded sound effects (data.effects_dir): non-stationary noise


class CrackleNoise(_AudioNoise):
    """An old record or tape: clicks and crackle (sparse decaying impulses), hiss and rumble;
    ``snr_db`` is against their sum."""

    name: Literal["crackle"] = "crackle"
    clicks_per_s: Range = Field((5.0, 200.0), description="impulse rate, drawn log-uniformly")

    _c = field_validator("clicks_per_s", mode="before")(_as_range)


SPEED_STEP = 0.05  # speed perturbation (data.speed, babble talker_speed) is drawn on this grid, so resampling kernels stay short (20 phases)


def _on_speed_grid(value: tuple[float, float]) -> tuple[float, float]:
    """Both ends of a speed range on the :data:`SPEED_STEP` grid (what the resampler plays)."""
    for v in value:
        if abs(v / SPEED_STEP - round(v / SPEED_STEP)) > 1e-6:
            raise ValueError(f"speed {v:g} is not a multiple of {SPEED_STEP:g} (speeds are played on that grid)")
    return value


class BabbleNoise(_AudioNoise):
    """The sum of ``talkers`` other utterances. Each talker may be played at its own speed
    (tempo and pitch, ``talker_speed``, drawn per talker on the speed-perturbation grid) and
    through its own random EQ (``talker_eq_db``), so a few recorded voices make many. Meant for
    the shipped speech model's weakness, babble of voices it never heard (validation +1.3 dB at
    0 dB on babble of training voices, +0.3 on held-out voices); a 10-epoch fine-tune with it
    (configs/speech-talkers.yaml) did not move that."""

    name: Literal["babble"] = "babble"
    talkers: tuple[int, int] = (3, 6)
    talker_speed: Range = Field((1.0, 1.0), description="each talker's speed factor, drawn per talker (1: as recorded)")
    talker_eq_db: float = Field(0.0, ge=0, le=24, description="each talker through random peaking EQ of up to this gain in dB (0: none)")

    _s = field_validator("talker_speed", mode="before")(_as_range)
    _sb = field_validator("talker_speed")(_bounded(0.5, 2.0))
    _sg = field_validator("talker_speed")(_on_speed_grid)

    LATER: ClassVar[tuple[str, ...]] = ("talker_speed", "talker_eq_db")  # added after runs were made (cf. LATER_FIELDS)

    @model_serializer(mode="wrap")
    def _later_fields_only_when_set(self, handler):
        """The talker augmentation came after runs were made: at its defaults it is left out
        of dumps, so their config hashes, validation tags and metadata stay as they were."""
        out = handler(self)
        for key in self.LATER:
            if getattr(self, key) == type(self).model_fields[key].default:
                out.pop(key, None)
        return out


class ClippingNoise(_NoiseBase):
    name: Literal["clipping"] = "clipping"
    level: Range = Field(description="clip at this fraction of the segment's peak (0..1)")

    _r = field_validator("level", mode="before")(_as_range)
    _b = field_validator("level")(_bounded(0, 1))


class GainNoise(_NoiseBase):
    name: Literal["gain"] = "gain"
    gain_db: Range = Field(description="level change in dB applied to the noisy input")

    _r = field_validator("gain_db", mode="before")(_as_range)
    _b = field_validator("gain_db")(_bounded(-60, 20))


NoiseSpec = Annotated[
    Union[
        GaussianNoise, PoissonNoise, SpeckleNoise, SaltPepperNoise, JpegNoise, CameraNoise,
        WhiteNoise, PinkNoise, BrownNoise, HumNoise, MusicNoise, EffectsNoise, CrackleNoise, BabbleNoise, ClippingNoise, GainNoise,
    ],
    Field(discriminator="name"),
]


class NoiseConfig(Frozen):
    """Noise synthesis: one spec of ``mixture`` is drawn per sample (by weight), then ``then``
    specs are applied in order (e.g. JPEG after sensor noise)."""

    mixture: list[NoiseSpec] = Field(min_length=1)
    then: list[NoiseSpec] = []
    clip: bool = True  # images: real files cannot hold values outside 0..1; audio: -1..1
    quantize_bits: int | None = 8  # images are 8-bit files (audio: 16-bit PCM): round like them


class DataConfig(Frozen):
    """Where clean media come from and how they are split and cut into training samples."""

    root: Path | None = None  # folder of clean images/audio; None builds the default corpus
    corpus_dir: Path | None = None  # where the default corpus is written (default: ~/.cache)
    channels: Literal[1, 3] = 1  # images: 1 gray, 3 RGB; audio models are mono (1)
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of files held out, by path hash
    val_files: list[str] = []  # explicit held-out files (relative paths); overrides val_fraction
    val_sources: list[str] = []  # whole sources held out: files whose first folder is one of these (e.g. a package, a speaker)
    patch_size: int = Field(64, ge=16)  # training crop, pixels
    patches_per_epoch: int = Field(4000, ge=1)
    val_crop: int | None = 256  # centre crop of val images (pixels) to bound eval time
    val_smooth: int = Field(0, ge=0)  # images: also validate on this many of the smoothest SMOOTH_VAL_CROP crops of each val image (where int8 rounding shows; the centre crops are mostly texture)
    max_val_images: int | None = None  # also caps val utterances for audio
    dead_leaves: float = Field(0.0, ge=0, lt=1)  # images: share of training patches cut from synthetic dead-leaves images (autoenc.dead_leaves) instead of photos
    smooth: float = Field(0.0, ge=0, lt=1)  # images: share of photo patches taken as the smoothest of SMOOTH_CANDIDATES random crops (sky, blurred backgrounds: where int8 rounding shows)
    # audio only
    sample_rate: int = 16000  # model rate in Hz; training files are resampled to it
    segment_seconds: float = Field(1.0, gt=0)  # training segment length
    level_dbfs: float = -20.0  # noisy segments are scaled to this RMS (models are level-invariant)
    music_dir: Path | None = None  # background recordings for 'music' noise (default: MOH bank)
    effects_dir: Path | None = None  # recorded sound effects for 'effects' noise (default: hedgewars effects bank)
    corpus: str | None = None  # the default corpus when root is unset, one of autoenc.corpus.CORPORA's for the modality (checked by RunConfig): audio voices (many, autoenc.voices) or asterisk (one voice; also None); images None (the photo corpus) or photos-wide (with autoenc.corpus.WIDE_PHOTOS)
    speed: tuple[float, float] = (1.0, 1.0)  # audio: clean segments played at a speed drawn from this range (tempo and pitch together), in steps of 5%
    eq_db: float = Field(0.0, ge=0, le=24)  # audio: three random peaking filters of up to +-eq_db dB colour each clean segment
    max_val_seconds: float | None = 6.0  # crop val utterances to bound eval time


    _speed_grid = field_validator("speed")(_on_speed_grid)

    @model_validator(mode="after")
    def _one_split_rule(self) -> "DataConfig":
        if self.val_files and self.val_sources:
            raise ValueError("give data.val_files or data.val_sources, not both")
        return self


class ModelConfig(Frozen):
    """Registry name and constructor kwargs; channels come from the data section."""

    name: str = "unet_dae"
    kwargs: dict[str, Any] = {}


class TrainConfig(Frozen):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)  # peak learning rate; cosine-decayed to lr * min_lr_ratio
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    warmup_steps: int = Field(50, ge=0)
    loss: Literal["l1", "l2", "charbonnier", "l1+stft", "psnr", "snr+stft"] = "l1"  # l1+stft: waveform L1 + multi-resolution STFT (audio); psnr: mean per-sample log MSE, so low-noise samples weigh as much as high-noise ones; snr+stft: per-segment SNR in dB / 10 + STFT (audio, the same balance)
    ema_decay: float | None = Field(None, gt=0, lt=1)  # keep an exponential moving average of the weights; it is what is evaluated, saved and exported
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    num_threads: int | None = None  # torch intra-op threads; None keeps torch's default
    init_from: Path | None = None  # fine-tune: start from this checkpoint's weights (same model, or one it can adopt); relative to the working directory, like data.root
    quantization_aware: bool = False  # train each conv as its int8 twin will compute (autoenc/qat.py): a short fine-tune from init_from before `autoenc quantize`
    distill: bool = False  # quantization-aware only: train towards the fp32 start model's output (init_from, frozen) instead of the clean target, so the twin keeps to the model it stands in for
    teacher: Path | None = None  # distil: a trained model's checkpoint (.pt: it records its registry name and kwargs; any size, e.g. image-gray for a narrower student) whose output on the same input is the target, frozen; relative to the working directory
    teacher_weight: float = Field(1.0, ge=0, le=1)  # with teacher: the target is clean + teacher_weight * (teacher's output - clean)
    teacher_views: int = Field(1, ge=1, le=8)  # images, with teacher: its output is the mean over this many of the 8 flips/rotations of the input (as `autoenc denoise --ensemble` averages all 8); costs that many teacher runs per step
    trainable: list[str] | None = None  # train only the parameters whose names start with one of these (e.g. [gate.] after adding a spectral gate to a trained model); the rest keep init_from's values. None: all
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the training step's convs and matmuls (forward, backward, a teacher's forward) run in bfloat16 under torch.autocast on the CPU; weights, optimizer, loss, EMA, validation and export stay fp32. Several times faster on CPUs with AMX or AVX-512 BF16, slower on others (benchmarks/train_speed.py)
    loader_workers: int = Field(0, ge=0)  # processes drawing the noisy patches beside the training step (torch DataLoader num_workers; each item depends only on seed, epoch and index, so the batches are the same); 0 draws them between steps
    log_every: int = Field(20, ge=1)  # steps between progress lines

    @model_validator(mode="after")
    def _fine_tunes_need_a_start(self) -> "TrainConfig":
        if self.quantization_aware and self.init_from is None:
            raise ValueError("train.quantization_aware fine-tunes a trained model: give train.init_from (its checkpoint or fp32 .onnx)")
        if self.distill and not self.quantization_aware:
            raise ValueError("train.distill trains the int8 twin towards its fp32 start: it needs train.quantization_aware")
        if self.teacher is not None and self.distill:
            raise ValueError("train.teacher and train.distill both name the target's model: distill uses init_from, teacher another checkpoint; give one")
        if self.teacher is not None and self.teacher.suffix != ".pt":
            raise ValueError(f"train.teacher: {self.teacher} is not a checkpoint (.pt); an exported .onnx does not record the constructor arguments to rebuild it for training")
        if self.teacher_views > 1 and self.teacher is None:
            raise ValueError("train.teacher_views averages a teacher's output over flips/rotations: give train.teacher")
        if self.precision == "bf16" and self.quantization_aware:
            raise ValueError("train.precision bf16 with train.quantization_aware: the int8 simulation needs fp32 arithmetic to match the kernels; train it in fp32")
        if self.trainable is not None and self.init_from is None:
            raise ValueError("train.trainable freezes the rest of a trained model: give train.init_from (its checkpoint or fp32 .onnx)")
        return self


class EvalConfig(Frozen):
    """Validation noise settings; empty means 'the training noise'."""

    noises: list[NoiseSpec] = []


class ExportConfig(Frozen):
    opset: int = 18
    parity_sizes: list[tuple[int, int]] = [(64, 64), (97, 131), (128, 96)]  # images: H, W
    parity_lengths: list[int] = [4000, 12345, 16000]  # audio: samples
    atol: float = 1e-4  # max abs difference on the 0..1 scale
    weights: Literal["fp16", "fp32"] = "fp16"  # how the .onnx stores parameters: fp16 halves the file, same float32 compute (autoenc.weight_storage)


class RunConfig(Frozen):
    name: str
    modality: Literal["image", "audio"] = "image"
    seed: int = 0
    data: DataConfig = DataConfig()
    noise: NoiseConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        _check_model(self.model, self.modality)
        from autoenc.corpus import check_corpus

        check_corpus(self.modality, self.data.corpus)
        from autoenc.noise import AUDIO_NOISES, NOISES  # local: noise synthesis imports torch

        allowed = NOISES if self.modality == "image" else AUDIO_NOISES  # the registries are the truth
        for spec in [*self.noise.mixture, *self.noise.then, *self.eval.noises]:
            if spec.name not in allowed:
                raise ValueError(f"noise {spec.name!r} is not an {self.modality} noise; use one of {sorted(allowed)}")
            if spec.name == "camera" and self.data.channels != 3:
                raise ValueError("camera noise needs RGB images: set data.channels: 3")
        return self

    @property
    def network_channels(self) -> int:
        """Signal channels the network takes: the image's, or 1 for audio (a recording's
        channels are denoised one at a time)."""
        return self.data.channels if self.modality == "image" else 1

    def hash(self) -> str:
        """Stable short hash of the validated config (what a model was trained with)."""
        return _digest(_without_unset_additions(self.model_dump(mode="json", exclude={"train": {"loader_workers"}})))  # how the patches are drawn, not which

    def resume_hash(self) -> str:
        """Hash of what must not change when resuming: everything but the epoch count,
        logging/threads, evaluation and export settings (so a run can be extended)."""
        tree = self.model_dump(mode="json", exclude={"eval": True, "export": True, "train": {"epochs", "log_every", "num_threads", "precision", "loader_workers"}})
        return _digest(_without_unset_additions(tree))


# Fields added to the schema after runs were made, with their defaults: left out of hashes
# while unset, so configs and runs made before they existed keep their hashes (and stay resumable).
# (Noise specs' own later fields, e.g. BabbleNoise.LATER, leave themselves out of dumps at their defaults.)
LATER_FIELDS: dict[str, dict[str, Any]] = {"train": {"init_from": None, "ema_decay": None, "quantization_aware": False, "distill": False, "teacher": None, "teacher_weight": 1.0, "teacher_views": 1, "trainable": None, "precision": "fp32", "loader_workers": 0}, "data": {"val_sources": [], "effects_dir": None, "corpus": None, "speed": [1.0, 1.0], "eq_db": 0.0, "dead_leaves": 0.0, "smooth": 0.0, "val_smooth": 0}, "export": {"weights": "fp16"}}  # as model_dump(mode="json") writes them


def _without_unset_additions(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` without the :data:`LATER_FIELDS` that hold their defaults."""
    tree = dict(tree)
    for section, fields in LATER_FIELDS.items():
        if section in tree:
            tree[section] = {k: v for k, v in tree[section].items() if not (k in fields and v == fields[k])}
    return tree


def _digest(tree: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


class FashionDataConfig(Frozen):
    """Fashion-MNIST from Debian's dataset-fashion-mnist package (idx files, MIT licence)."""

    root: Path = Path("/usr/share/datasets/fashion-mnist")
    val_size: int = Field(5000, ge=1)  # the last N training images: early stopping, threshold calibration
    normal_classes: list[int] | None = None  # one-class training for anomaly detection (0..9)
    train_limit: int | None = None  # cap on training images (smoke tests)
    test_limit: int | None = None  # cap on test images (smoke tests)


class FamilyEvalConfig(Frozen):
    pca_components: int = Field(32, ge=1)  # the linear baseline: PCA with this many components
    false_positive_rate: float = Field(0.05, gt=0, lt=1)  # anomaly threshold, calibrated on val normals
    defect_size: int = Field(8, ge=1)  # side of the bright square injected as a synthetic defect, pixels


class FamilyConfig(Frozen):
    """A member of the autoencoder family trained on 28x28 Fashion-MNIST."""

    name: str
    modality: Literal["family"] = "family"
    seed: int = 0
    data: FashionDataConfig = FashionDataConfig()
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    eval: FamilyEvalConfig = FamilyEvalConfig()

    @model_validator(mode="after")
    def _check(self) -> "FamilyConfig":
        _check_model(self.model, "family")
        return self

    def hash(self) -> str:
        return _digest(self.model_dump(mode="json"))


def _check_model(model: ModelConfig, modality: str) -> None:
    """The model must be registered, of ``modality``, and accept every kwarg given."""
    import inspect

    from autoenc.models import list_models, model_modality  # local: the registry imports torch
    from autoenc.models.registry import model_class

    if model.name not in list_models():
        raise ValueError(f"model.name {model.name!r} is not registered; known: {list_models()}")
    accepted = set(inspect.signature(model_class(model.name)).parameters) - {"channels"}
    unknown = sorted(set(model.kwargs) - accepted)
    if unknown:
        raise ValueError(f"model.kwargs: unknown key(s) {unknown} for {model.name}; accepted: {sorted(accepted)}")
    if model_modality(model.name) != modality:
        raise ValueError(f"model {model.name!r} is a {model_modality(model.name)} model, config modality is {modality}")


def load(path: str | Path, overrides: list[str] | None = None) -> "RunConfig | FamilyConfig":
    """Load and validate a YAML run config, applying ``key=value`` overrides first
    (``modality: family`` gives a :class:`FamilyConfig`, otherwise a :class:`RunConfig`)."""
    path = Path(path)
    tree = read_yaml_mapping(path)
    for key, value in parse_overrides(overrides or []):
        set_dotted(tree, key, value)
    return from_dict(tree, source=str(path))


def from_dict(tree: dict[str, Any], source: str = "<dict>") -> "RunConfig | FamilyConfig":
    """Validate a config mapping, turning pydantic errors into one readable message."""
    return validate((FamilyConfig if tree.get("modality") == "family" else RunConfig), tree, source)


class CalibrationData(Frozen):
    """Which held-out files a level calibration fits on, instead of the run's validation split
    (each key as in :class:`DataConfig`; unset keys keep the config's). Nothing about training."""

    corpus: str | None = None
    val_files: list[str] | None = None
    val_sources: list[str] | None = None
    max_val_images: int | None = Field(None, ge=1)
    val_crop: int | None = None


class CalibrationSettings(Frozen):
    """An ``autoenc calibrate --settings`` file: the validation noise settings to fit a level
    calibration on (as a config's ``eval.noises``) and, optionally, other held-out files than the
    model's own validation split (``data``, :class:`CalibrationData`; none of them may be a file
    the model trained on, which calibrate checks)."""

    noises: list[NoiseSpec] = Field(min_length=1)
    data: CalibrationData = CalibrationData()

    @property
    def other_files(self) -> bool:
        """Whether these settings name other held-out files than the run's validation split."""
        return bool(self.data.model_fields_set)

    def applied(self, cfg: RunConfig, source: str) -> RunConfig:
        """``cfg`` with these validation noise settings and held-out files (a split rule given
        here replaces the config's: ``val_files`` drops its ``val_sources`` and the reverse)."""
        tree = cfg.model_dump(mode="json")
        given = self.data.model_dump(mode="json", exclude_unset=True)
        split = {k: given.pop(k) or [] for k in ("val_files", "val_sources") if k in given}
        data = {**tree["data"], **({"val_files": [], "val_sources": [], **split} if split else {}), **given}
        noises = [spec.model_dump(mode="json") for spec in self.noises]
        return from_dict({**tree, "data": data, "eval": {**tree["eval"], "noises": noises}}, source=f"{source} with the calibration's settings")


def load_calibration_settings(path: str | Path) -> CalibrationSettings:
    """Read and validate an ``autoenc calibrate --settings`` YAML file."""
    return validate(CalibrationSettings, read_yaml_mapping(Path(path)), str(path))
