"""Component registry: what the ``register(name, factory, **info)`` callback records.

Names are validated, aliases resolved, and a name claimed by two plugins is an
error naming both.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from neckkit.errors import NeckkitError, PluginError, UnknownComponentError

ComponentKind = Literal["codec", "encoder", "mllm"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("codec", "encoder", "mllm")
# Hook that registers each kind, and the plural used in listings.
KIND_HOOKS: dict[ComponentKind, str] = {
    "codec": "register_codecs",
    "encoder": "register_encoders",
    "mllm": "register_mllms",
}
KIND_PLURALS: dict[ComponentKind, str] = {"codec": "codecs", "encoder": "encoders", "mllm": "mllms"}

# Lower-case words joined by hyphens; dots allowed inside version-like parts (llava-1.5).
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


class RegisterCallback(Protocol):
    """The callback every component hook receives."""

    def __call__(self, name: str, factory: Callable[..., Any], **info: Any) -> None: ...


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid component name, else raise :class:`PluginError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(
            f"invalid component name {name!r}: use lower-case letters, digits and hyphens "
            "(dots inside version numbers), e.g. 'clip-l' or 'llava-1.5'"
        )
    return name


class ComponentInfo(BaseModel):
    """What a plugin says about a component besides its factory (``**info``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    aliases: tuple[str, ...] = ()
    tiny: bool = False  # the factory accepts ``tiny=True`` (random-init, tiny widths)
    pretrained: tuple[str, ...] = ()  # pretrained tags or hub ids the factory knows
    qualities: tuple[int, ...] = ()  # codec quality levels with known weights
    options: dict[str, str] = {}  # factory keyword -> one-line help

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = value.strip()
        if not value or "\n" in value:
            raise ValueError("must be one non-empty line")
        return value

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for alias in value:
            check_name(alias)
        return value


@dataclass(frozen=True)
class Component:
    """A registered codec, encoder or MLLM."""

    kind: ComponentKind
    name: str
    factory: Callable[..., Any]
    plugin: str
    info: ComponentInfo

    def build(self, **options: Any) -> Any:
        """Build the component with the factory's keyword options.

        An option the factory does not take is one error naming the options it documents.
        """
        try:
            return self.factory(**options)
        except TypeError as error:
            if "unexpected keyword argument" not in str(error):
                raise
            unknown = str(error).rsplit("argument", 1)[-1].strip(" '\"")
            accepted = ", ".join(sorted(self.info.options)) or "none documented"
            raise NeckkitError(f"{self.kind} {self.name!r} does not accept option {unknown!r} (accepts: {accepted})") from None


def lazy_factory(target: str, **bound: Any) -> Callable[..., Any]:
    """A factory that imports ``"package.module:function"`` only when called.

    Plugins register these so that listing components never imports torch or model code;
    ``bound`` keywords are passed before the caller's options.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"lazy factory target {target!r} must look like 'package.module:function'")

    def factory(**options: Any) -> Any:
        function = getattr(importlib.import_module(module_name), attribute)
        return function(**bound, **options)

    factory.__qualname__ = factory.__name__ = f"lazy({target})"
    return factory


def describe_validation_error(error: ValidationError) -> str:
    """One line from a pydantic error: ``field: message; field: message``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def make_component(
    kind: ComponentKind, plugin: str, name: str, factory: Callable[..., Any], info: dict[str, Any]
) -> Component:
    """Validate one ``register`` call and return its record."""
    check_name(name)
    if not callable(factory):
        raise PluginError(f"{kind} {name!r}: factory must be callable, got {type(factory).__name__}")
    try:
        parsed = ComponentInfo(**info)
    except ValidationError as error:
        raise PluginError(f"{kind} {name!r}: {describe_validation_error(error)}") from None
    return Component(kind=kind, name=name, factory=factory, plugin=plugin, info=parsed)


class ComponentRegistry:
    """All components of one kind, by name and alias."""

    def __init__(self, kind: ComponentKind) -> None:
        self.kind = kind
        self._by_name: dict[str, Component] = {}
        self._aliases: dict[str, str] = {}

    def add(self, component: Component) -> None:
        """Add a component; a name or alias already taken raises an error naming both plugins."""
        for claimed in (component.name, *component.info.aliases):
            owner = self._owner(claimed)
            if owner is not None:
                raise PluginError(
                    f"{self.kind} name {claimed!r} is registered by both plugin {owner.plugin!r} "
                    f"and plugin {component.plugin!r}; disable one with NECKKIT_DISABLE_PLUGINS"
                )
        self._by_name[component.name] = component
        for alias in component.info.aliases:
            self._aliases[alias] = component.name

    def _owner(self, name: str) -> Component | None:
        canonical = self._aliases.get(name, name)
        return self._by_name.get(canonical)

    def get(self, name: str) -> Component:
        """Look a component up by name or alias, with a suggestion when it is unknown."""
        component = self._owner(name)
        if component is not None:
            return component
        known = sorted([*self._by_name, *self._aliases])
        hint = difflib.get_close_matches(name, known, n=1)
        message = f"unknown {self.kind} {name!r}"
        if hint:
            message += f"; did you mean {hint[0]!r}?"
        message += f" Available: {', '.join(sorted(self._by_name)) or 'none'} (see `neckkit list-plugins`)"
        raise UnknownComponentError(message)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._owner(name) is not None

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._by_name.values(), key=lambda component: component.name))

    def __len__(self) -> int:
        return len(self._by_name)


RANDOM_INIT_OPTIONS = ("tiny", "random_init", "seed")


def random_weights(weights: str | None, tiny: bool, random_init: bool) -> bool:
    """Whether a factory builds seeded random weights (tiny or random_init); refuses a weights source as well."""
    if (tiny or random_init) and weights is not None:
        raise NeckkitError("pass either weights or tiny/random_init, not both")
    return tiny or random_init


def with_weights(options: Mapping[str, Any], weights: str | None) -> dict[str, Any]:
    """``options`` with a weights file replacing the random-init options it may name (``None``: unchanged)."""
    if weights is None:
        return dict(options)
    kept = {key: value for key, value in options.items() if key not in RANDOM_INIT_OPTIONS}
    return {**kept, "weights": weights}
