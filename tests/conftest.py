"""Shared fixtures: an isolated Prefect home and test harness, tiny models, small media."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Prefect reads its settings at import: isolate it before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="autoenc-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def output_files(root: Path) -> list[str]:
    """Relative paths of the files a job wrote under ``root`` (its ``.autoenc`` state folder excluded)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".autoenc" not in p.relative_to(root).parts)


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # No flow-run heartbeats in tests: saves about a second per flow run.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` on a free 127.0.0.1 port (schedules fire on it), started
    once per session and stopped by PID; yields its API URL."""
    from pipelines.local_server import LocalServer

    server = LocalServer(tmp_path_factory.mktemp("prefect-server"), host="127.0.0.1", port=0, startup_timeout=120, ui=False)
    url = server.start()
    yield url
    server.stop()
    assert server.proc.poll() is not None


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """The default photo corpus, built once per session into a temp folder."""
    from autoenc.corpus import build_photo_corpus

    return build_photo_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_config(**data):
    from autoenc.config import load

    cfg = load(REPO / "configs" / "tiny-image.yaml")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=data)}) if data else cfg


def make_model_file(out_dir: Path, channels: int = 1, width: int | None = 8, levels: int | None = 2, seed: int = 0, noise_scale: float = 0.05, modality: str = "image", name: str | None = None, **extra) -> Path:
    """Export an untrained (random, non-identity) model to ``out_dir/model-c{channels}.onnx``;
    ``extra`` are more constructor kwargs (e.g. ``noise_level_input=True``); ``width`` or
    ``levels`` None: not passed (a model without them, e.g. spectral_dae)."""
    import torch

    from autoenc.config import from_dict
    from autoenc.export import to_onnx
    from autoenc.models import get_model
    from autoenc.models.audio import _Context
    from autoenc.checkpoint import pack, save_checkpoint

    torch.manual_seed(seed)
    name = name or ("unet_dae" if modality == "image" else "unet1d_dae")
    kwargs = {**{k: v for k, v in (("width", width), ("levels", levels)) if v is not None}, **extra}
    model = get_model(name, channels=channels, **kwargs)
    # Make it do something: a non-zero noise head (and colour guide, for the colour models; and
    # the mixers of any audio context blocks, which start at zero).
    heads = [model.net.tail, model.guide] if hasattr(model, "guide") else [model.tail] if hasattr(model, "tail") else []
    heads += [m.mix for m in model.modules() if isinstance(m, _Context)]
    heads += [m.conv for m in model.mix] if getattr(model, "plane_mixing", False) else []  # opponent_unet_dae's cross-plane convs
    if getattr(model, "gate", None) is not None:  # and a spectral gate's gain head and mixers
        heads += [model.gate.out, *(b.mix for b in model.gate.blocks)]
    for head in heads:
        torch.nn.init.normal_(head.weight, std=noise_scale)
    noise = {"name": "gaussian", "sigma": 25} if modality == "image" else {"name": "white", "snr_db": 5}
    cfg = from_dict({
        "name": "test", "modality": modality, "data": {"channels": channels},
        "noise": {"mixture": [noise]},
        "model": {"name": name, "kwargs": kwargs},
    })
    ckpt = out_dir / f"model-c{channels}.pt"
    save_checkpoint(ckpt, pack(model, {"channels": channels, **kwargs}, cfg, epoch=0, step=0, history=[]))
    out = out_dir / f"model-c{channels}.onnx"
    to_onnx(ckpt, out, metrics={"test": True})
    return out


@pytest.fixture(scope="session")
def gray_model(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("gray-model"), channels=1)


@pytest.fixture(scope="session")
def color_model(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("color-model"), channels=3)


@pytest.fixture(scope="session")
def audio_model(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("audio-model"), channels=1, width=8, levels=3, modality="audio", noise_scale=0.2)


def speech_corpus_or_skip(tmp_path_factory=None) -> Path:
    """The Asterisk speech corpus; a skip with the install hint where it is missing, except in
    CI (CI=true), where `make test` installs it and a missing corpus is a failure."""
    from autoenc.corpus import CorpusMissing, build_speech_corpus

    try:
        return build_speech_corpus()
    except CorpusMissing as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))


def tone(seconds: float = 1.0, rate: int = 16000, channels: int = 1, seed: int = 0, hiss: float = 0.01) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic tone with syllable-rate amplitude
    modulation plus a little noise (std ``hiss``), float32 (frames, channels) in -1..1."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    out = [0.3 * voice * (1 - 0.2 * c) + hiss * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(out, axis=1).astype(np.float32)


def clean_voice(seconds: float = 3.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A clean recording as the speech front end meets one: :func:`tone` without hiss, every
    fourth 0.25 s passage 40 dB down (soft ends of words, no pauses of noise); float32 (frames, 1)."""
    x = tone(seconds, rate, 1, seed=seed, hiss=0.0)
    return (x * np.where((np.arange(len(x)) // (rate // 4)) % 4 == 3, 0.01, 1.0)[:, None]).astype(np.float32)

def train_steps(model, batch, objective, steps: int, lr: float, per_epoch: int = 5) -> list[float]:
    """Train ``model`` with the library's loop (train_one_epoch) on one repeated ``batch`` for
    ``steps`` steps at a constant learning rate; returns the mean loss of each group of
    ``per_epoch`` steps."""
    import torch

    from autoenc.config import TrainConfig
    from autoenc.train import train_one_epoch

    cfg = TrainConfig(lr=lr, warmup_steps=0, min_lr_ratio=1.0, grad_clip=None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return [train_one_epoch(model, [batch] * per_epoch, opt, objective, cfg, e * per_epoch, steps, e)[0] for e in range(steps // per_epoch)]


def photo(h: int = 96, w: int = 128, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth synthetic uint8 'photo' with edges and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 0.2 * ((xx // 24 + yy // 24) % 2)
    planes = [np.clip(base * (0.8 + 0.1 * c) + 0.03 * rng.standard_normal((h, w)), 0, 1) for c in range(channels)]
    arr = (np.stack(planes, axis=2) * 255).round().astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def photo_sources(root: Path, per_source: int, channels: int) -> Path:
    """``root`` with two photo sources, ``a`` and ``b`` (``per_source`` synthetic 72x80 photos
    each; hold ``b`` out with ``data.val_sources=[b]``); returns ``root``."""
    from PIL import Image

    for src in ("a", "b"):
        (root / src).mkdir(parents=True)
        for i in range(per_source):
            Image.fromarray(photo(72, 80, channels, seed=i + 10 * (src == "b"))).save(root / src / f"p{i}.png")
    return root


def runtime_ops(path: Path, tmp_path: Path):
    """Op types of the graph onnxruntime actually runs (after its QDQ fusions)."""
    import collections

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
