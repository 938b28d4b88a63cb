"""Loading an autoenc ONNX model: one onnxruntime session plus the model's self-description.

Torch-free. A model that is missing, corrupt, from an incompatible format version or of the
wrong modality is refused here, before any input file is touched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autoenc.runtime import trained_on
from autoenc.runtime.int8_kernels import Int8Kernels, int8_session
from autoenc.runtime.metadata import ModelInfo

PRETRAINED_DIR = Path(__file__).parent.parent / "pretrained"  # autoenc/pretrained


class ModelError(Exception):
    """A model that cannot be used (missing, corrupt, wrong modality, incompatible)."""


def resolve_model(model: str | Path) -> Path:
    """Return the ``.onnx`` path for a file path or a shipped model name."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{model}.onnx"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in PRETRAINED_DIR.glob("*.onnx")) if PRETRAINED_DIR.is_dir() else []
    raise ModelError(f"model not found: {model} (not a file; shipped models: {names or 'none'})")


def shipped_models() -> list[dict]:
    """The models shipped in the package: name, modality, registry model, whether it takes a
    noise level (so accepts ``--strength``), its audio prefilter (or None) and whether the network
    also takes the unfiltered input, file size (bytes), validation metrics, what it trained on
    (:func:`autoenc.runtime.trained_on.summary`: counts and stages, not the digests) and model
    card path, sorted by name."""
    out = []
    for path in sorted(PRETRAINED_DIR.glob("*.onnx")) if PRETRAINED_DIR.is_dir() else []:
        info = model_info(path)
        card = path.with_name(path.stem.removesuffix("-int8") + ".md")  # an int8 file shares its fp32 model's card
        out.append({
            "name": path.stem, "modality": info.modality, "channels": info.channels, "model": info.model, "noise_level_input": info.noise_level_input,
            "prefilter": info.prefilter, "raw_plane": info.raw_plane, "bytes": path.stat().st_size, "use_for": _use_for(card), "metrics": info.metrics,
            "trained_on": trained_on.summary(info.trained_on), "card": str(card) if card.is_file() else None, "path": str(path),
        })
    return out


def _use_for(card: Path) -> str:
    """The card's "Use for" line: which media the model is for (its one home is the card)."""
    if card.is_file():
        for line in card.read_text().splitlines():
            if line.startswith("- **Use for:** "):
                return line.removeprefix("- **Use for:** ").rstrip(".")
    return ""


def model_info(model: str | Path) -> ModelInfo:
    """Read a model's metadata without keeping a session (used to route files by modality)."""
    return OnnxModel(model, threads=1, check_int8=False).info


def session_options(threads: int, mem_pattern: bool = True) -> ort.SessionOptions:
    """onnxruntime options for one model session: ``threads`` intra-op threads, one inter-op,
    warnings and errors only; ``mem_pattern`` see :class:`OnnxModel`."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_mem_pattern = mem_pattern
    return opts


class OnnxModel:
    """One onnxruntime session and the model's :class:`ModelInfo`.

    Args:
        model: path to an autoenc ``.onnx`` file, or a shipped model name.
        threads: onnxruntime intra-op threads.
        modality: what the caller will feed it; None accepts any, another modality is refused.
        mem_pattern: let onnxruntime plan memory for repeated input shapes. Image tiles vary in
            shape; without the pattern their peak memory was 0.6-0.7x (image-gray, 792 px
            tiles of a 4000x3000 photo: 0.99 GB against 1.60 GB) at the same speed.
        check_int8: for an int8 model, check on a probe that this CPU's fused integer kernels
            compute what the model's Q/DQ graph says, and run it the fastest way that does
            (:func:`autoenc.runtime.int8_kernels.int8_session`; ``int8_kernels`` says which).
            x86 CPUs without VNNI multiply uint8 by int8 in 16-bit pairs that saturate: on an
            AVX2-only EPYC image-gray-fast-int8 came out 7 dB below its fp32 model (26.5 against
            33.8 dB on a sigma 25 photo crop); with uint8 x uint8 kernels it computes its graph.
    """

    def __init__(self, model: str | Path, *, threads: int = 2, modality: str | None = None, mem_pattern: bool = True, check_int8: bool = True) -> None:
        self.path = resolve_model(model)
        options = lambda: session_options(threads, mem_pattern)  # noqa: E731
        try:
            blob = self.path.read_bytes()  # hashed and loaded from the same bytes: see identity
            self.sha256 = hashlib.sha256(blob).hexdigest()
            self.session = ort.InferenceSession(blob, options(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load model {self.path}: {type(exc).__name__}: {str(exc)[:300]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_props(meta)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"model {self.path}: {exc}") from None
        if modality is not None and self.info.modality != modality:
            raise ModelError(f"model {self.path} is a {self.info.modality} model; this job needs {modality}")
        self.input_name = self.session.get_inputs()[0].name
        self.int8_kernels: Int8Kernels | None = None  # for an int8 model checked at load: how it runs (see int8_session)
        if check_int8 and "autoenc.quantization" in meta:
            self.session, self.int8_kernels = int8_session(blob, options, self.session, self.info, self.path.name)

    @property
    def identity(self) -> str:
        """``<registry name>:<first 16 hex of the sha256>`` of the bytes this session was built
        from (the ledger's model identity): what made an output, even if the file has since
        been replaced on disk."""
        return f"{self.info.model}:{self.sha256[:16]}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a float32 batch (N, C, ...) on the model's scale."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
