"""Model registry: ``register_model(name)`` / ``list_models()`` / ``get_model(name, **kw)``."""

from __future__ import annotations

from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Any]] = {}


def register_model(name: str, *, modality: str) -> Callable[[type], type]:
    """Class decorator adding a model class to the registry under ``name``."""

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = {"cls": cls, "modality": modality}
        cls.registry_name = name
        cls.modality = modality
        return cls

    return deco


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def model_modality(name: str) -> str:
    return _REGISTRY[name]["modality"]


def model_class(name: str) -> type:
    """The class registered under ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {list_models()}")
    return _REGISTRY[name]["cls"]


def get_model(name: str, **kwargs: Any):
    """Instantiate registered model ``name`` with constructor ``kwargs``."""
    return model_class(name)(**kwargs)
