"""What an exported model says about itself (ONNX ``metadata_props``), torch-free.

Export writes these keys; inference reads them to refuse a model of the wrong modality or
an incompatible format version before any file is touched.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass
from typing import Any

from autoenc import READ_FORMATS
from autoenc.runtime.noise_level import PROFILE_SIZE

PREFIX = "autoenc."


@dataclass(frozen=True)
class ModelInfo:
    modality: str  # "image" | "audio"
    channels: int  # colour (image) or audio channels the network takes
    sample_rate: int  # audio: the rate (Hz) the network runs at; images: 0
    model: str  # registry name
    size_multiple: int  # tile/window origins aligned to this many pixels/samples keep tiling exact
    receptive_radius: int  # pixels/samples of context that influence one output value
    noise: Any  # the training noise config (JSON)
    config_hash: str
    metrics: Any  # validation metrics (JSON)
    version: str  # autoenc version that exported it
    format_version: int
    noise_level_input: bool = False  # images: the input has one more plane, the estimated noise level (autoenc.runtime.noise_level)
    prefilter: Any = None  # audio: the settings of the Wiener front end the input passes first (autoenc.runtime.prefilter), or None
    raw_plane: bool = False  # audio with a prefilter: the network takes the unfiltered input too, as planes after the filtered ones
    noise_profile: bool = False  # images with a noise-level plane: the input also carries the noise profile's planes after it (autoenc.runtime.noise_level.noise_profile)
    trained_on: Any = None  # the sha256 prefixes of every file any stage or teacher trained on (autoenc.runtime.trained_on), or None (made before it was recorded)
    config: Any = None  # the run config of the model's last training stage (JSON, as its checkpoint keeps it; it hashes to config_hash: `autoenc models --config NAME` writes it out), or None (exported before it was kept)
    level_calibration: Any = None  # images with a noise-level plane: [level, gain] knots (0..1 scale) the estimate is scaled by before the model is told it, or such knots by kind of noise {"white": ..., "blotchy": ...} (autoenc.runtime.noise_level.calibrated_level), or None

    @property
    def conditioning_planes(self) -> int:
        """Planes the input carries after the image's: the noise level, then any noise profile."""
        return int(self.noise_level_input) + PROFILE_SIZE * int(self.noise_profile)

    def to_props(self) -> dict[str, str]:
        """Flatten to the string->string map ONNX ``metadata_props`` holds."""
        out = {}
        for key, value in self.__dict__.items():
            out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelInfo":
        """Parse ``metadata_props``; raises ValueError naming what is missing or incompatible."""
        if PREFIX + "format_version" not in props:
            raise ValueError("not an autoenc model (no autoenc.* metadata)")
        fv = int(props[PREFIX + "format_version"])
        if fv not in READ_FORMATS:
            raise ValueError(f"model format version {fv} is not supported (this autoenc reads {', '.join(map(str, READ_FORMATS))})")
        fields: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            raw = props.get(PREFIX + name)
            if raw is None and cls.__dataclass_fields__[name].default is not MISSING:
                continue  # added after format 1 was fixed: older models keep the default
            if raw is None:
                raise ValueError(f"model metadata lacks {PREFIX + name}")
            fields[name] = raw if name in ("modality", "model", "config_hash", "version") else json.loads(raw)
        return cls(**fields)
