"""Manifests, splits and noisy-pair datasets for image and audio training.

``ingest`` lists and validates a folder of clean images or recordings and writes
``manifest.csv`` (relative path, what it is, size in bytes, content hash, split). The split is
by a hash of the relative path, so it is stable when files are added, unless ``val_files``
names the held-out files explicitly or ``val_sources`` holds out whole sources (the first
folder of the relative path: a package, a speaker), which is how quality claims stay honest. ``PatchPairs`` draws random image crops with dihedral
augmentation (torchvision transforms v2); ``SegmentPairs`` draws random audio segments, scaled to one level. Both synthesise noise on the fly; sample ``i`` of epoch ``e`` is a pure function
of (seed, e, i), so any training pair can be reproduced. ``TrainingData`` assembles a run's
training split, noise banks and fixed validation pairs per noise setting.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from autoenc.augment import change_speed, draw_speed, random_eq, speed_source_length
from autoenc.config import DataConfig, NoiseConfig, RunConfig
from autoenc.dead_leaves import bank as dead_leaves_bank
from autoenc.runtime.media import MediaError, load_float, modality_of, read_image
from autoenc.runtime.noise_level import estimate_sigma, noise_profile
from autoenc.noise import pair_generator, synthesize, synthesize_audio

log = logging.getLogger(__name__)
MANIFEST_FIELDS = ["path", "info", "bytes", "sha256", "split"]


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the data root
    info: str  # images: "WxH MODE"; audio: "FRAMES frames @ RATE Hz x CHANNELS"
    bytes: int
    sha256: str
    split: str  # "train" | "val"


def _describe(path: Path, modality: str) -> str:
    """Validate one file by decoding its header (images: fully) and describe it."""
    if modality == "image":
        data = read_image(path)
        h, w, _ = data.planes.shape
        return f"{w}x{h} {data.mode}"
    from autoenc.runtime.audio_io import probe_audio

    a = probe_audio(path)
    return f"{a.frames} frames @ {a.samplerate} Hz x {a.channels}"


def source_of(rel: str) -> str:
    """The source a corpus file comes from: its first folder ('' for a file at the top)."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else ""


def _split_of(rel: str, cfg: DataConfig) -> str:
    if cfg.val_files:
        return "val" if rel in cfg.val_files else "train"
    if cfg.val_sources:
        return "val" if source_of(rel) in cfg.val_sources else "train"
    val_fraction = cfg.val_fraction
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little") / 2**64
    return "val" if h < val_fraction else "train"


def ingest(root: Path, cfg: DataConfig, manifest_path: Path, modality: str = "image") -> list[Entry]:
    """Validate every file of ``modality`` under ``root`` and write the manifest; unreadable
    files are logged and left out. Raises ValueError if either split ends up empty."""
    root = Path(root)
    entries, bad = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and modality_of(p) == modality):
        rel = path.relative_to(root).as_posix()
        try:
            info = _describe(path, modality)
        except (MediaError, OSError) as exc:
            bad.append(f"{rel}: {exc}")
            continue
        raw = path.read_bytes()
        split = _split_of(rel, cfg)
        entries.append(Entry(rel, info, len(raw), hashlib.sha256(raw).hexdigest(), split))
    for line in bad:
        log.warning("ingest: skipped %s", line)
    missing = set(cfg.val_files) - {e.path for e in entries}
    if missing:
        raise ValueError(f"data.val_files not found under {root}: {sorted(missing)}")
    absent = set(cfg.val_sources) - {source_of(e.path) for e in entries}
    if absent:
        raise ValueError(f"data.val_sources: no {modality} files under {root}/{{{','.join(sorted(absent))}}}")
    splits = {e.split for e in entries}
    if splits != {"train", "val"}:
        raise ValueError(f"{root}: need {modality} files in both splits, got {len(entries)} in {sorted(splits) or 'none'}")
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest_path, "w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS)
        writer.writeheader()
        for e in entries:
            writer.writerow(e.__dict__)
    n_val = sum(e.split == "val" for e in entries)
    log.info("ingest: %d %s files (%d train, %d val), %d skipped -> %s", len(entries), modality, len(entries) - n_val, n_val, len(bad), manifest_path)
    return entries


def read_manifest(manifest_path: Path) -> list[Entry]:
    with open(manifest_path, newline="") as f:
        return [Entry(r["path"], r["info"], int(r["bytes"]), r["sha256"], r["split"]) for r in csv.DictReader(f)]


def load_split(root: Path, entries: list[Entry], split: str, channels: int) -> list[torch.Tensor]:
    """Load the images of one split as (C, H, W) float tensors on the 0..1 scale."""
    return [torch.from_numpy(load_float(Path(root) / e.path, channels).transpose(2, 0, 1).copy()) for e in entries if e.split == split]


SMOOTH_CANDIDATES = 8  # crops drawn for each data.smooth patch; the smoothest is kept


def roughness(x: torch.Tensor) -> float:
    """The mean absolute difference between vertically neighbouring pixels of ``x`` (C, H, W)
    plus that between horizontal neighbours (0..2 on the 0..1 pixel scale): low for sky, walls
    and blurred backgrounds."""
    return float((x[:, 1:] - x[:, :-1]).abs().mean() + (x[:, :, 1:] - x[:, :, :-1]).abs().mean())


SMOOTH_VAL_CROP = 96  # pixels: the side of the data.val_smooth crops


def smoothest_crops(image: torch.Tensor, n: int, size: int = SMOOTH_VAL_CROP) -> list[torch.Tensor]:
    """The ``n`` smoothest (:func:`roughness`) ``size`` crops of ``image`` (C, H, W) that do not
    overlap, from a grid of stride ``size // 2``; fewer where the image holds fewer."""
    h, w = image.shape[1:]
    grid = sorted((roughness(image[:, y : y + size, x : x + size]), y, x) for y in range(0, h - size + 1, size // 2) for x in range(0, w - size + 1, size // 2))
    taken: list[tuple[int, int]] = []
    for _, y, x in grid:
        if len(taken) == n:
            break
        if all(abs(y - ty) >= size or abs(x - tx) >= size for ty, tx in taken):
            taken.append((y, x))
    return [image[:, y : y + size, x : x + size] for y, x in taken]


class PatchPairs(Dataset):
    """``(noisy, clean)`` patch pairs; item ``i`` depends only on (seed, epoch, i). With
    ``data.dead_leaves`` > 0 that share of the patches is cut from the ``synthetic`` images
    (chosen uniformly), the rest from the photos; of those, a ``data.smooth`` share is the
    smoothest of :data:`SMOOTH_CANDIDATES` random crops (:func:`roughness`)."""

    def __init__(self, images: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, epoch: int = 0, synthetic: list[torch.Tensor] = ()) -> None:
        p = data.patch_size
        self.images = [im for im in images if min(im.shape[1:]) >= p]
        if not self.images:
            raise ValueError(f"no training image is at least {p}x{p} pixels")
        self.synthetic = [im for im in synthetic if min(im.shape[1:]) >= p]
        if data.dead_leaves > 0 and not self.synthetic:
            raise ValueError(f"data.dead_leaves is {data.dead_leaves} but no synthetic image of at least {p}x{p} pixels was given")
        area = torch.tensor([float(im.shape[1] * im.shape[2]) for im in self.images], dtype=torch.float64)
        self.weights = area / area.sum()  # bigger photos give proportionally more patches
        self.data, self.noise, self.seed, self.epoch = data, noise, seed, epoch

    def __len__(self) -> int:
        return self.data.patches_per_epoch

    def _crop(self, images: list[torch.Tensor], weights: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
        """A random ``patch_size`` crop of one of ``images``, drawn by ``weights`` (the photos: by
        area) or uniformly (None)."""
        p = self.data.patch_size
        if weights is not None:
            im = images[int(torch.multinomial(weights, 1, generator=g).item())]
        else:
            im = images[int(torch.randint(0, len(images), (), generator=g))]
        top = int(torch.randint(0, im.shape[1] - p + 1, (), generator=g))
        left = int(torch.randint(0, im.shape[2] - p + 1, (), generator=g))
        return TF.crop(im, top, left, p, p)

    def clean_patch(self, g: torch.Generator) -> torch.Tensor:
        """One clean training patch (C, patch_size, patch_size), randomly rotated and flipped;
        every draw from ``g`` (patches of configs without ``data.smooth`` draw as before it existed)."""
        if self.data.dead_leaves > 0 and float(torch.rand((), generator=g)) < self.data.dead_leaves:
            x = self._crop(self.synthetic, None, g)
        elif self.data.smooth > 0 and float(torch.rand((), generator=g)) < self.data.smooth:
            x = min((self._crop(self.images, self.weights, g) for _ in range(SMOOTH_CANDIDATES)), key=roughness)
        else:
            x = self._crop(self.images, self.weights, g)
        k, flip = int(torch.randint(0, 4, (), generator=g)), bool(torch.rand((), generator=g) < 0.5)
        if flip:
            x = TF.horizontal_flip(x)
        if k:
            x = TF.rotate(x, 90.0 * k, interpolation=InterpolationMode.NEAREST, expand=True)
        return x.contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = pair_generator(self.seed, "train", self.epoch, i)
        clean = self.clean_patch(g)
        noisy, _ = synthesize(clean, self.noise, g)
        return noisy, clean


def with_noise_level(noisy: torch.Tensor, profile: bool = False) -> torch.Tensor:
    """A batch (N, C, H, W) of noisy images with one more plane per image holding its estimated
    noise level (:func:`estimate_sigma`, the estimator inference uses): the input of a model
    built with ``noise_level_input``; with ``profile``, six more holding its
    :func:`noise_profile` (a model built with ``noise_profile``)."""
    images = [x.permute(1, 2, 0).numpy() for x in noisy]
    cond = [[estimate_sigma(x), *(noise_profile(x) if profile else ())] for x in images]
    planes = torch.tensor(cond, dtype=noisy.dtype).view(len(cond), -1, 1, 1).expand(-1, -1, *noisy.shape[2:])
    return torch.cat([noisy, planes], dim=1)


def prefiltered(noisy: torch.Tensor, prefilter, sample_rate: int) -> torch.Tensor:
    """A batch (N, C, T) of noisy audio through the model's classical front end (the same
    numpy code inference runs, :mod:`autoenc.runtime.prefilter`), each item on its own."""
    return torch.stack([torch.from_numpy(prefilter.apply(x.numpy(), sample_rate)) for x in noisy]).to(noisy.dtype)


def model_input(model: torch.nn.Module, noisy: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
    """What ``model`` takes for a batch of ``noisy`` inputs: the batch itself, with its
    noise-level plane for a model that takes one, or through its prefilter for an audio model
    that has one, followed by the unfiltered planes for a model that also takes those
    (``sample_rate``: the audio's rate, Hz)."""
    if getattr(model, "noise_level_input", False):
        return with_noise_level(noisy, getattr(model, "noise_profile", False))
    if getattr(model, "prefilter", None) is not None:
        if sample_rate is None:
            raise ValueError("model_input: a model with a prefilter needs the audio's sample_rate")
        filtered = prefiltered(noisy, model.prefilter, sample_rate)
        return torch.cat([filtered, noisy], dim=1) if getattr(model, "raw_plane", False) else filtered
    return noisy


MODEL_INPUT_ATTRS = ("noise_level_input", "noise_profile", "prefilter", "raw_plane")  # what model_input reads of a model


def same_model_input(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether :func:`model_input` gives models ``a`` and ``b`` the same input for one batch."""
    return all(getattr(a, k, None) == getattr(b, k, None) for k in MODEL_INPUT_ATTRS)


def centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    return TF.center_crop(x, [min(size, h), min(size, w)])


def val_pairs(images: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, tag: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed noisy/clean validation pairs (centre crops of ``images``, which the caller capped
    at ``data.max_val_images``); ``tag`` names the noise setting."""
    out = []
    for j, im in enumerate(images):
        clean = centre_crop(im, data.val_crop)
        noisy, _ = synthesize(clean, noise, pair_generator(seed, "val", tag, j))
        out.append((noisy, clean))
    return out


def load_clips(root: Path, entries: list[Entry], split: str, sample_rate: int) -> list[torch.Tensor]:
    """Load one split's recordings as mono 1-D float tensors at ``sample_rate`` (torchaudio
    resampling), each peak-normalised to 0.9."""
    return [load_clip(Path(root) / e.path, sample_rate) for e in entries if e.split == split]


def load_clip(path: Path, sample_rate: int) -> torch.Tensor:
    import torchaudio.functional as AF

    from autoenc.runtime.audio_io import read_audio

    samples, rate = read_audio(path)
    x = torch.from_numpy(samples.mean(axis=1))
    if rate != sample_rate:
        x = AF.resample(x, rate, sample_rate)
    return 0.9 * x / x.abs().max().clamp(min=1e-6)


class SegmentPairs(Dataset):
    """``(noisy, clean)`` audio segment pairs (1, T); item ``i`` depends only on (seed, epoch, i)."""

    def __init__(self, clips: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, epoch: int, banks: dict[str, list[torch.Tensor]]) -> None:
        if not clips:
            raise ValueError("no training recordings")
        self.clips = clips
        lengths = torch.tensor([float(len(c)) for c in clips], dtype=torch.float64)
        self.weights = lengths / lengths.sum()
        self.n = int(round(data.segment_seconds * data.sample_rate))
        self.data, self.noise, self.seed, self.epoch, self.banks = data, noise, seed, epoch, banks

    def __len__(self) -> int:
        return self.data.patches_per_epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = pair_generator(self.seed, "train", self.epoch, i)
        clip = self.clips[int(torch.multinomial(self.weights, 1, generator=g).item())]
        d = self.data
        speed = draw_speed(*d.speed, g)
        need = speed_source_length(self.n, speed)
        if len(clip) < need:
            clip = torch.nn.functional.pad(clip, (0, need - len(clip)))
        start = int(torch.randint(0, len(clip) - need + 1, (), generator=g))
        clean = change_speed(clip[start : start + need], speed, self.n)
        clean = random_eq(clean, d.eq_db, d.sample_rate, g)
        clean = clean[None] * (0.5 / clean.abs().max().clamp(min=1e-6)) if d.eq_db or speed != 1.0 else clean[None] * 0.5
        noisy, _ = synthesize_audio(clean, self.noise, g, sample_rate=d.sample_rate, banks=self.banks)
        # One training level: the bias-free audio models are exactly gain-invariant.
        scale = 10 ** (d.level_dbfs / 20) / noisy.pow(2).mean().sqrt().clamp(min=1e-6)
        return noisy * scale, clean * scale


def other_talkers(clips: list[torch.Tensor], sources: list[str], j: int) -> list[torch.Tensor]:
    """Babble talkers for held-out clip ``j``: the clips of the other sources (other speakers:
    a source is one voice or one group of voices), or, in a split of one source, its other clips."""
    others = [c for c, s in zip(clips, sources) if s != sources[j]]
    return others or [c for i, c in enumerate(clips) if i != j]


def val_segments(clips: list[torch.Tensor], data: DataConfig, noise: NoiseConfig, seed: int, tag: str, banks: dict[str, list[torch.Tensor]], sources: list[str] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed noisy/clean validation pairs (1, T): the first ``max_val_seconds`` of
    ``max_val_images`` clips spread evenly over the split (so every held-out source is in it).
    With ``sources`` (one per clip), each clip's babble is spoken by the split's other voices
    (:func:`other_talkers`) instead of ``banks['speech']`` (kept for a split of one clip)."""
    k = data.max_val_images
    picked = [j * len(clips) // k for j in range(k)] if k and k < len(clips) else list(range(len(clips)))
    limit = int(data.max_val_seconds * data.sample_rate) if data.max_val_seconds else None
    out = []
    for j, i in enumerate(picked):
        clean = clips[i][:limit][None] * (0.5 / 0.9)  # -6 dBFS peak: a typical recording level
        voices = other_talkers(clips, sources, i) if sources is not None else []
        own = {**banks, "speech": voices} if voices else banks  # a split of one clip: the bank's voices
        noisy, _ = synthesize_audio(clean, noise, pair_generator(seed, "val", tag, j), sample_rate=data.sample_rate, banks=own)
        out.append((noisy, clean))
    return out


VALIDATION_VERSION = {"image": 1, "audio": 2}  # per modality, raised when validation pairs change
# meaning (a resumed run's best score from before is not comparable): audio 2 = babble spoken by
# other held-out voices (2026-12-03; before, by the training voices)


def noise_settings(cfg: RunConfig) -> dict[str, NoiseConfig]:
    """Validation noise settings by tag: each ``eval.noises`` spec, or the training noise."""
    if not cfg.eval.noises:
        return {"train-noise": cfg.noise}
    out = {}
    for spec in cfg.eval.noises:
        # Range-valued parameters name the setting (sigma15, iso6400-gain2-...).
        drawn = {k: v for k, v in spec.model_dump(exclude={"name", "weight"}).items() if isinstance(v, tuple) and len(v) == 2 and all(isinstance(e, (int, float)) for e in v)}
        params = "-".join(f"{k}{v[0]:g}" if v[0] == v[1] else f"{k}{v[0]:g}..{v[1]:g}" for k, v in drawn.items())
        tag = f"{spec.name}-{params}"
        if tag in out:
            raise ValueError(f"eval.noises: two settings are both named {tag!r} (they differ only in fixed parameters); give their ranges different values")
        out[tag] = cfg.noise.model_copy(update={"mixture": [spec]})
    return out


class TrainingData:
    """The training split as a per-epoch dataset, plus fixed validation pairs per noise setting."""

    def __init__(self, cfg: RunConfig, data_root: Path, entries: list[Entry]) -> None:
        self.cfg = cfg
        settings = noise_settings(cfg)
        d = cfg.data
        if cfg.modality == "image":
            self.train = load_split(data_root, entries, "train", d.channels)
            val = load_split(data_root, entries, "val", d.channels)
            val = val[: d.max_val_images] if d.max_val_images else val
            if d.val_smooth:
                val += [c for im in val for c in smoothest_crops(im, d.val_smooth)]
            self.val = {tag: val_pairs(val, d, noise, cfg.seed, tag) for tag, noise in settings.items()}
            self.banks: dict = {}
            self.synthetic = dead_leaves_bank(d.channels, cfg.seed) if d.dead_leaves > 0 else []
            return
        self.train = load_clips(data_root, entries, "train", d.sample_rate)
        val = load_clips(data_root, entries, "val", d.sample_rate)
        train_banks, held_banks = noise_banks(cfg, d.sample_rate)
        self.banks = {"speech": self.train, **train_banks}
        # Validation babble is spoken by other held-out voices, as users' is by voices the model
        # never heard (until 2026-12-03 it was drawn from the training voices: the shipped speech
        # model gained +1.3 dB at 0 dB on that babble, +0.3 on held-out voices' babble).
        sources = [source_of(e.path) for e in entries if e.split == "val"]
        val_banks = {"speech": self.train, **held_banks}  # the training voices only for a split of one clip
        self.val = {tag: val_segments(val, d, noise, cfg.seed, tag, val_banks, sources) for tag, noise in settings.items()}

    def dataset(self, epoch: int, media_only: bool = False):
        """Epoch ``epoch``'s training pairs. ``media_only``: images cut from the training photos
        only, without the ``data.dead_leaves`` share of synthetic images (what users' files look
        like: int8 calibration wants those ranges, not the synthetic images' full-contrast edges)."""
        c = self.cfg
        if c.modality == "image":
            if media_only and c.data.dead_leaves > 0:
                return PatchPairs(self.train, c.data.model_copy(update={"dead_leaves": 0.0}), c.noise, c.seed, epoch)
            return PatchPairs(self.train, c.data, c.noise, c.seed, epoch, self.synthetic)
        return SegmentPairs(self.train, c.data, c.noise, c.seed, epoch, self.banks)


BANK_NOISES = ("music", "effects")  # noises drawn from recorded banks, each split by file


def _bank_root(cfg: RunConfig, kind: str) -> Path:
    if kind == "music":
        from autoenc.corpus import build_music_bank

        return Path(cfg.data.music_dir) if cfg.data.music_dir else build_music_bank()
    from autoenc.voices import build_effects_bank

    return Path(cfg.data.effects_dir) if cfg.data.effects_dir else build_effects_bank()


def noise_banks(cfg: RunConfig, sample_rate: int) -> tuple[dict[str, list[torch.Tensor]], dict[str, list[torch.Tensor]]]:
    """The recorded noise banks the config's noises use, (training, held-out): each bank's
    files sorted, every 5th held out for validation and benchmarks."""
    names = {s.name for s in [*cfg.noise.mixture, *cfg.noise.then, *cfg.eval.noises]}
    train: dict[str, list[torch.Tensor]] = {}
    held: dict[str, list[torch.Tensor]] = {}
    for kind in BANK_NOISES:
        if kind not in names:
            continue
        root = _bank_root(cfg, kind)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
        if len(files) < 2:
            raise ValueError(f"{kind} noise needs at least 2 recordings in {root} (one is held out for validation)")
        clips = [load_clip(f, sample_rate) for f in files]
        train[kind] = [c for i, c in enumerate(clips) if i % 5 != 4]
        held[kind] = [c for i, c in enumerate(clips) if i % 5 == 4]
    return train, held
