"""Shipped sweep presets (YAML): ``load_preset(name)``."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from perfscope.errors import NotFoundError


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The parsed preset ``name``; ``InvalidInputError`` naming the known ones otherwise."""
    path = resources.files(__name__) / f"{name}.yaml"
    if not path.is_file():
        raise NotFoundError(f"unknown preset {name!r}: use one of {', '.join(preset_names())}")
    return yaml.safe_load(path.read_text())
