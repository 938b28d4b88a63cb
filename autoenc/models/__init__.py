"""Model registry and the registered models (importing this module imports torch)."""

from autoenc.models.registry import get_model, list_models, model_modality, register_model
from autoenc.models import audio, family, image, opponent, spectral  # noqa: F401  (registers every model)

__all__ = ["get_model", "list_models", "model_modality", "register_model", "build_model"]


def build_model(model_cfg, channels: int):
    """Build the model named in a ``ModelConfig`` for ``channels`` input channels."""
    return get_model(model_cfg.name, channels=channels, **model_cfg.kwargs)
