"""Base for every neckkit config: strict pydantic models read from YAML or TOML files.

Precedence: model defaults (the paper's values, see :mod:`neckkit.config.paper`) < config file
< command-line overrides (``key.sub=value``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from neckkit.errors import ConfigError
from neckkit.host.registry import describe_validation_error

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
ConfigT = TypeVar("ConfigT", bound="NeckkitConfig")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``; values are read as YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.lr=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _NUMBER.match(value):  # YAML 1.1 reads "1e-3" as a string
        value = float(value)
    return key.strip().split("."), value


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _apply_overrides(data: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any]) -> None:
    """Merge ``key.sub=value`` strings, or a ``{"key.sub": value}`` mapping, into ``data``."""
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in items:
        _merge(data, key.split(".") if isinstance(key, str) else list(key), value)


class NeckkitConfig(BaseModel):
    """Strict config model: unknown keys are errors, assignments are validated, and no float may be
    inf or NaN (``lr: inf`` would train to NaN)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @classmethod
    def validate_data(cls: type[ConfigT], data: Mapping[str, Any], source: str = "config") -> ConfigT:
        """Build from plain data; errors become one :class:`ConfigError` line naming the field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            raise ConfigError(f"{source}: {describe_validation_error(error)}") from None

    @classmethod
    def read_file(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Plain data from a ``.yaml``/``.yml``/``.toml``/``.json`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
        suffix = path.suffix.lower()
        try:
            if suffix == ".toml":
                data = tomllib.loads(text)
            elif suffix in (".yaml", ".yml"):
                data = yaml.safe_load(text) or {}
            elif suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"config file {path}: use a .yaml, .yml, .toml or .json file")
        except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {first_line}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        return data

    @classmethod
    def load(
        cls: type[ConfigT],
        path: str | os.PathLike[str] | None = None,
        overrides: Iterable[str] | Mapping[str, Any] = (),
    ) -> ConfigT:
        """Defaults, then the file at ``path`` (if any), then ``overrides``."""
        data: dict[str, Any] = cls.read_file(path) if path is not None else {}
        _apply_overrides(data, overrides)
        source = f"config file {path}" if path is not None else "config"
        return cls.validate_data(data, source=source)

    def with_overrides(self: ConfigT, overrides: Iterable[str] | Mapping[str, Any]) -> ConfigT:
        """A copy with ``key.sub=value`` overrides applied and validated."""
        data = self.model_dump(mode="json")
        _apply_overrides(data, overrides)
        return type(self).validate_data(data, source="override")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the resolved config as YAML (or JSON by suffix), atomically."""
        path = Path(path)
        data = self.model_dump(mode="json")
        if path.suffix.lower() == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            text = yaml.safe_dump(data, sort_keys=False)
        from neckkit.files import atomic_path

        with atomic_path(path) as temporary:  # readable by others as a plain open() would leave it
            temporary.write_text(text, encoding="utf-8")
        return path
