"""Typed YAML configs, torch-free: frozen pydantic models in which a misspelled key is an
error, validated once at load with one readable message per problem (``dotted.key: what``).
Run configs (``autoenc.config``) and schedule configs (``autoenc.runtime.schedule``) share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class Frozen(BaseModel):
    """Base: immutable, and a misspelled key is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the key."""


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[leaf] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings; values are YAML (``3``, ``[1,2]``, ``null``)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML config file whose top level must be a mapping; ConfigError otherwise."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return tree


def validate(model: type[BaseModel], tree: Any, source: str) -> Any:
    """``model.model_validate(tree)``, with pydantic's errors turned into one readable
    :class:`ConfigError` (one ``  dotted.key: message`` line per problem)."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {loc}: {msg}")
        raise ConfigError(f"invalid config {source}:\n" + "\n".join(lines)) from None
