"""Component registry: what the ``register(name, factory, **info)`` callback records.

Names are validated, aliases resolved, and a name claimed by two plugins is an
error naming both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from neckkit.errors import PluginError, UnknownComponentError

# lazy_factory and random_weights lived here: still importable from this module.
from neckkit.host.factories import lazy_factory, random_weights, signature_problem  # noqa: F401
from neckkit.host.options import option_help

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


Scenario = Literal["d1", "d2", "d3"]
# What a codec registered without ``scenarios`` trains for sure; d3 too when it implements synthesis_modules().
DEFAULT_SCENARIOS: tuple[Scenario, ...] = ("d1", "d2")


class ComponentInfo(BaseModel):
    """What a plugin says about a component besides its factory: the ``**info`` of ``register(name, factory, **info)``.

    Every field is checked when the plugin registers; an unknown field or a wrong value fails that
    plugin (listed under ``failed`` by ``neckkit list-plugins``). The factory-option contract that
    ``tiny``, ``tiny_weights``, ``qualities`` and ``options`` feed is :mod:`neckkit.host.options`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(
        description="Required. One line saying what the component is (architecture, paper, library), shown by "
        "`neckkit list-plugins`."
    )
    aliases: tuple[str, ...] = Field(
        (),
        description="Other names that find the component (same rule as names: lower-case words and hyphens). A name "
        "or alias another plugin already registered is refused.",
    )
    tiny: bool = Field(
        False,
        description="The factory accepts tiny=True: tiny widths with random weights, for tests and the quick start "
        "(`--tiny`). Declares the `tiny` option; no need to list it in `options`.",
    )
    tiny_weights: bool = Field(
        False,
        description="With tiny=True: the tiny architecture can load a weights file trained elsewhere, so tiny=True "
        "together with weights=... is legal (otherwise the core refuses the pair). Requires tiny=True.",
    )
    pretrained: tuple[str, ...] = Field(
        (),
        description="Pretrained tags or hub ids the factory knows (informational: shown by `neckkit list-plugins`), "
        "e.g. ('openai/clip-vit-large-patch14',).",
    )
    qualities: tuple[int, ...] = Field(
        (),
        description="Codec quality levels with known weights. When given, a `quality` option outside them is refused "
        "before the factory runs; `quality` must then be declared in `options`.",
    )
    options: dict[str, str] | type[BaseModel] = Field(
        default_factory=dict,
        description="The factory's keyword options: a dict {name: one-line help}, or a pydantic BaseModel subclass "
        "whose fields (with descriptions) are validated and converted before the factory runs. Standard names: "
        "weights, random_init, quality (declare them when supported); tiny is declared by tiny=True and seed is "
        "handled by the core. Any other option given is refused, listing these.",
    )
    weights_required: str | None = Field(
        None,
        description="When set, options that choose no weights (none of weights, quality, tiny, random_init) are "
        "refused before the factory is even imported, with this text as the reason, e.g. \"needs weights: pass "
        "weights=<file>, or tiny=True\" (name options as name=value: the CLI shows them as its flags). For "
        "components with no default weights, so that the mistake costs no model import.",
    )
    scenarios: tuple[Scenario, ...] | None = Field(
        None,
        description="Codecs only: the training scenarios the codec supports, e.g. ('d1', 'd2', 'd3'); `neckkit train` "
        "refuses another. Default None (not declared): d1 and d2, and d3 when the built codec implements "
        "Codec.synthesis_modules() (d3 freezes its synthesis transform), as for plugins written before this field.",
    )

    image_codec: bool = Field(
        False,
        description="Codecs only: the factory builds an ImageCodec (neckkit.interfaces.image_codec), a traditional "
        "codec with no latent (JPEG, AVIF, VTM...): it serves the Reconstruction path only, so train, bench and the "
        "neck path refuse it; `tiny` is a no-op for it and may come with `quality`. Default False: a learned Codec, "
        "both paths.",
    )

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

    @field_validator("scenarios")
    @classmethod
    def _known_scenarios(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one scenario")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> ComponentInfo:
        declared = self.options.model_fields if isinstance(self.options, type) else self.options
        if self.tiny_weights and not self.tiny:
            raise ValueError("tiny_weights=True needs tiny=True")
        if "tiny" in declared and not self.tiny:
            raise ValueError("options declare 'tiny': register with tiny=True")
        if self.qualities and "quality" not in declared:
            raise ValueError("qualities are given: declare the 'quality' option in options")
        if self.image_codec and (self.scenarios is not None or self.tiny_weights):
            raise ValueError("an image codec has no latent or weights: do not declare scenarios or tiny_weights")
        return self


CodecPath = Literal["reconstruction", "neck"]


def codec_paths(info: ComponentInfo) -> tuple[CodecPath, ...]:
    """The paths a codec serves: ``("reconstruction",)`` for an image codec, else ``("reconstruction", "neck")``."""
    return ("reconstruction",) if info.image_codec else ("reconstruction", "neck")


@dataclass(frozen=True)
class Component:
    """A registered codec, encoder or MLLM."""

    kind: ComponentKind
    name: str
    factory: Callable[..., Any]
    plugin: str
    info: ComponentInfo

    def build(self, **options: Any) -> Any:
        """Build the component under the factory-option contract (:mod:`neckkit.host.options`).

        The options are checked before the factory runs (an undeclared option, or an illegal
        combination, is one error naming the component and its plugin); the factory runs under
        ``seeded_init(seed)`` and never receives ``seed``; any other exception it raises becomes one
        ``<kind> '<name>' (plugin '<plugin>') failed to build: <Type>: <message>`` line.
        """
        from neckkit.host.options import build

        return build(self, options)


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
    problem = signature_problem(factory, option_help(parsed))  # a lazy factory's target: at its first build
    if problem is not None:
        raise PluginError(f"{kind} {name!r}: {problem}")
    return Component(kind=kind, name=name, factory=factory, plugin=plugin, info=parsed)


class ComponentRegistry:
    """All components of one kind, by name and alias.

    ``may_have_provided(name)`` gives ``(plugin, error)`` for each failed plugin that could have
    registered ``name``; an unknown-name error names them.
    """

    def __init__(
        self, kind: ComponentKind, may_have_provided: Callable[[str], list[tuple[str, str]]] | None = None
    ) -> None:
        self.kind = kind
        self._by_name: dict[str, Component] = {}
        self._aliases: dict[str, str] = {}
        self._may_have_provided = may_have_provided

    def clash(self, component: Component) -> tuple[str, Component] | None:
        """The first name or alias of ``component`` already taken, and the component that took it."""
        for claimed in (component.name, *component.info.aliases):
            owner = self._owner(claimed)
            if owner is not None:
                return claimed, owner
        return None

    def add(self, component: Component) -> None:
        """Add a component; a name or alias already taken raises an error naming both plugins."""
        clash = self.clash(component)
        if clash is not None:
            claimed, owner = clash
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
        """Look a component up by name or alias; when unknown, suggest the closest and name failed plugins."""
        component = self._owner(name)
        if component is not None:
            return component
        known = sorted([*self._by_name, *self._aliases])
        hint = difflib.get_close_matches(name, known, n=1)
        message = f"unknown {self.kind} {name!r}"
        if hint:
            message += f"; did you mean {hint[0]!r}?"
        failed = self._may_have_provided(name) if self._may_have_provided is not None else []
        if failed:
            causes = "; ".join(f"plugin {plugin!r} failed ({error}) and may have provided it" for plugin, error in failed)
            message += f" {causes[0].upper()}{causes[1:]}." if hint else f"; {causes}."
        message += f" Available: {', '.join(sorted(self._by_name)) or 'none'} (see `neckkit list-plugins`)"
        raise UnknownComponentError(message)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._owner(name) is not None

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._by_name.values(), key=lambda component: component.name))

    def __len__(self) -> int:
        return len(self._by_name)


RANDOM_INIT_OPTIONS = ("tiny", "random_init", "seed")


def with_weights(options: Mapping[str, Any], weights: str | None, *, tiny_weights: bool = False) -> dict[str, Any]:
    """``options`` with a weights file replacing the random-init options it may name (``None``: unchanged).

    ``tiny_weights``: the component's tiny architecture loads weights, so ``tiny`` is kept (a tiny
    model trained from a file is rebuilt tiny).
    """
    if weights is None:
        return dict(options)
    dropped = {"random_init", "seed"} if tiny_weights else set(RANDOM_INIT_OPTIONS)
    kept = {key: value for key, value in options.items() if key not in dropped}
    return {**kept, "weights": weights}
