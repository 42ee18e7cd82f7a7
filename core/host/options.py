"""The factory-option contract: which options a component factory receives, and which combinations are legal.

Every command maps its flags to the same standard option names (:data:`STANDARD_OPTIONS`); the core
checks them against what the component registered (:func:`check_options`) *before* its factory runs,
then builds it under :func:`neckkit.loading.weights.seeded_init` with the ``seed`` option, which the
factory never receives (:func:`build`). Each refusal is one :class:`NeckkitError` line naming the
component's kind, name and plugin, e.g.
``codec 'tic' (plugin 'neckkit.plugins.codecs'): --tiny and --random-init exclude each other``.

Rules (:data:`RULES` states them as text, for docs and ``neckkit list-plugins``):

- ``tiny`` + ``random_init``: refused; ``random_init`` + ``weights``: refused;
- ``tiny`` + ``weights``: refused unless the component registered ``tiny_weights=True``;
- ``tiny`` + ``quality``: refused (every quality would be the same random model), except for an image codec;
- ``quality`` not among the registered ``qualities`` (when some are registered): refused;
- ``seed`` without ``tiny`` or ``random_init``: refused;
- no weight source (``weights``, ``quality``, ``tiny``, ``random_init``) for a component that registered
  ``weights_required``: refused with its text, before the factory is imported;
- an option the component did not declare: refused, listing what it accepts (``tiny`` is declared by
  ``tiny=True``, ``seed`` is always accepted). Options declared by a pydantic model are validated and
  converted; only the options given reach the factory.
- a declared option that is not a keyword parameter of the factory (``**kwargs`` takes any): the
  registration fails, naming option and factory; a ``lazy_factory``'s target is checked at its first build.
- a factory raising anything but a :class:`NeckkitError` becomes
  ``codec 'x' (plugin 'p') failed to build: RuntimeError: ...``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from neckkit.errors import NeckkitError, describe_error

if TYPE_CHECKING:
    from neckkit.host.manager import PluginHost
    from neckkit.host.registry import Component, ComponentInfo, ComponentKind

__all__ = [
    "CORE_OPTIONS",
    "DEFAULT_SEED",
    "RULES",
    "STANDARD_OPTIONS",
    "StandardOption",
    "WEIGHT_CHOICES",
    "accepted_options",
    "build",
    "build_component",
    "build_recorded",
    "building",
    "check_component_options",
    "check_options",
    "component_label",
    "option_help",
]

DEFAULT_SEED = 0
# Options that choose where a component's weights come from; without any of them a command that
# defaults to random weights (``bench``) asks for ``random_init``, and a checkpoint carrying its codec's
# state is loaded from that state.
WEIGHT_CHOICES = ("tiny", "random_init", "weights", "quality", "pretrained")


@dataclass(frozen=True)
class StandardOption:
    """One standard factory option: its name, type, meaning, who handles it and the flag commands map to it."""

    name: str
    type: type
    meaning: str
    handled_by: Literal["factory", "core"]
    flag: str  # "{kind}" stands for codec / encoder / mllm


STANDARD_OPTIONS: tuple[StandardOption, ...] = (
    StandardOption("tiny", bool, "tiny widths, random init (tests, quick start); allowed when register(..., tiny=True)",
                   "factory", "--tiny"),
    StandardOption("random_init", bool, "real-size architecture, random weights (declare it in options)",
                   "factory", "--random-init"),
    StandardOption("weights", str, "local file or folder, or hub id, of the weights to load (declare it in options)",
                   "factory", "--{kind}-weights"),
    StandardOption("quality", int, "codec quality level: its pretrained weights, or which level a weights file is "
                   "(declare it in options)", "factory", "--quality"),
    StandardOption("seed", int, f"seed of the random init (default {DEFAULT_SEED}); the core builds every factory "
                   "under seeded_init(seed) and never passes it on", "core", "--{kind}-opt seed=N"),
)
STANDARD_BY_NAME: dict[str, StandardOption] = {option.name: option for option in STANDARD_OPTIONS}
# Options the core consumes itself: accepted from every component, never passed to a factory.
CORE_OPTIONS: frozenset[str] = frozenset(o.name for o in STANDARD_OPTIONS if o.handled_by == "core")

RULES: tuple[str, ...] = (
    "tiny and random_init exclude each other",
    "random_init and weights exclude each other",
    "tiny and weights exclude each other unless the component registered tiny_weights=True",
    "tiny and quality exclude each other (every quality would be the same random model), except for an image codec "
    "(image_codec=True), which has no weights and ignores tiny",
    "quality must be one of the registered qualities, when the component registers some",
    "seed needs tiny or random_init",
    "a component that registered weights_required needs one of weights, quality, tiny or random_init",
    "an option the component did not declare is refused (tiny is declared by tiny=True; seed is always accepted)",
    "every declared option must be a keyword parameter of the factory (checked at registration; a lazy_factory's "
    "target at its first build)",
    "a factory raising anything but NeckkitError fails as '<kind> <name> (plugin <p>) failed to build: <Type>: <msg>'",
)


def component_label(component: Component) -> str:
    """``codec 'tic' (plugin 'neckkit.plugins.codecs')``: how every refusal names a component."""
    return f"{component.kind} {component.name!r} (plugin {component.plugin!r})"


def _flag(name: str, kind: str) -> str:
    standard = STANDARD_BY_NAME.get(name)
    return standard.flag.format(kind=kind) if standard is not None else name


def _given(options: Mapping[str, Any], name: str) -> bool:
    """Whether a standard option is set: a true flag, or any value but ``None``."""
    value = options.get(name)
    return value is not None and value is not False


def _options_model(info: ComponentInfo) -> type[BaseModel] | None:
    return info.options if isinstance(info.options, type) else None


def option_help(info: ComponentInfo) -> dict[str, str]:
    """Declared option -> one-line help, from a dict or from a pydantic model's field descriptions."""
    model = _options_model(info)
    if model is None:
        helps = dict(info.options)  # type: ignore[arg-type]
    else:
        helps = {name: field.description or "" for name, field in model.model_fields.items()}
    if info.tiny and "tiny" not in helps:
        helps["tiny"] = STANDARD_BY_NAME["tiny"].meaning.split(";")[0]
    return dict(sorted(helps.items()))


def accepted_options(info: ComponentInfo) -> list[str]:
    """The option names a factory accepts: the declared ones, ``tiny`` when ``tiny=True``, and ``seed``."""
    return sorted({*option_help(info), *CORE_OPTIONS})


def _refuse(component: Component, reason: str) -> NeckkitError:
    return NeckkitError(f"{component_label(component)}: {reason}")


def _check_combinations(component: Component, options: Mapping[str, Any]) -> None:
    info, kind = component.info, component.kind
    tiny, random_init = _given(options, "tiny"), _given(options, "random_init")
    weights, quality, seed = (_given(options, name) for name in ("weights", "quality", "seed"))
    if tiny and random_init:
        raise _refuse(component, "--tiny and --random-init exclude each other")
    if random_init and weights:
        raise _refuse(component, f"--random-init and {_flag('weights', kind)} exclude each other")
    if tiny and weights and not info.tiny_weights:
        raise _refuse(
            component,
            f"--tiny and {_flag('weights', kind)} exclude each other (its tiny architecture loads no weights)",
        )
    if tiny and quality and not info.image_codec:  # an image codec has no weights: its tiny is a no-op
        raise _refuse(
            component, "--tiny and --quality exclude each other (a tiny model is the same random model at every quality)"
        )
    if quality and info.qualities and options["quality"] not in info.qualities:
        known = ", ".join(str(q) for q in info.qualities)
        raise _refuse(component, f"no quality {options['quality']!r} (qualities with known weights: {known})")
    if seed and not (tiny or random_init):
        raise _refuse(component, "seed seeds a random init: pass it with --tiny or --random-init")
    if info.weights_required and not any(_given(options, name) for name in WEIGHT_CHOICES):
        error = _refuse(component, info.weights_required)
        error.component = component  # the text names options (weights=<file>): the CLI shows its flags
        raise error


def check_options(component: Component, options: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Check ``options`` against the contract before the factory runs.

    Returns the options the factory receives (validated and converted when the component declared a
    pydantic model; standard options left unset, ``None`` or ``False``, are dropped) and the seed of the
    random init. Raises one :class:`NeckkitError` line naming the component and its plugin.
    """
    info = component.info
    given = {
        key: value for key, value in options.items() if not (key in STANDARD_BY_NAME and not _given(options, key))
    }
    accepted = accepted_options(info)
    unknown = sorted(key for key in given if key not in accepted)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(repr(key) for key in unknown)
        raise NeckkitError(
            f"{component_label(component)} does not accept option{plural} {names} (accepts: {', '.join(accepted)})"
        )
    seed = given.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _refuse(component, f"seed must be an integer, got {seed!r}")
    _check_combinations(component, {**given, "seed": seed})
    model = _options_model(info)
    if model is not None:
        passed_through = {key: given.pop(key) for key in list(given) if key not in model.model_fields}  # tiny
        try:
            validated = model(**given)
        except ValidationError as error:
            raise _refuse(component, f"invalid options: {_describe(error)}") from None
        given = {name: getattr(validated, name) for name in validated.model_fields_set} | passed_through
    return given, DEFAULT_SEED if seed is None else seed


def _describe(error: ValidationError) -> str:
    from neckkit.host.registry import describe_validation_error

    return describe_validation_error(error)


_BUILDING: ContextVar[Component | None] = ContextVar("neckkit_building", default=None)


def building() -> Component | None:
    """The component whose factory is running in this context (``None`` outside a core build)."""
    return _BUILDING.get()


def build(component: Component, options: Mapping[str, Any]) -> Any:
    """Check ``options``, then run the factory under ``seeded_init(seed)``; one-line errors name the component.

    A lazy factory's target is compared with the declared options first (registration could not import it).
    """
    from neckkit.host.factories import signature_problem
    from neckkit.host.placeholders import record
    from neckkit.loading.weights import seeded_init

    factory_options, seed = check_options(component, options)
    if not component.info.image_codec:  # an image codec's tiny is a no-op: it has no random weights
        record(component.kind, component.name, options)
    token = _BUILDING.set(component)
    try:
        problem = signature_problem(component.factory, option_help(component.info), resolve=True)
        if problem is not None:
            raise _refuse(component, problem)
        with seeded_init(seed):
            built = _call_factory(component, factory_options)
        _check_image_codec(component, built)
        return built
    except NeckkitError:
        raise
    except Exception as error:  # a plugin's bug or an unhonoured option: say whose
        raise NeckkitError(f"{component_label(component)} failed to build: {describe_error(error)}") from error
    finally:
        _BUILDING.reset(token)


def _check_image_codec(component: Component, built: Any) -> None:
    """Refuse a codec whose factory built the other kind than it registered (``image_codec``)."""
    if component.kind != "codec":
        return
    image_codecs = sys.modules.get("neckkit.interfaces.image_codec")  # not imported: nothing built is one
    is_image = image_codecs is not None and isinstance(built, image_codecs.ImageCodec)
    if is_image != component.info.image_codec:
        registered = "an image codec (image_codec=True)" if component.info.image_codec else "a learned codec"
        got = "an ImageCodec" if is_image else type(built).__name__
        raise _refuse(component, f"registered as {registered}, but its factory built {got}")


def _call_factory(component: Component, options: Mapping[str, Any]) -> Any:
    """What the factory returns; a :class:`NeckkitError` it raises records the component, so that the CLI
    can name the factory's options by their flags (``tiny=True`` -> ``--tiny``)."""
    try:
        return component.factory(**options)
    except NeckkitError as error:
        if error.component is None:
            error.component = component
        raise


def check_component_options(host: PluginHost, kind: ComponentKind, name: str, options: Mapping[str, Any]) -> None:
    """Refuse illegal ``options`` for a registered component without building it (fail before slow work)."""
    check_options(host.components(kind).get(name), options)


def build_component(
    host: PluginHost,
    kind: ComponentKind,
    name: str,
    options: Mapping[str, Any],
    *,
    weights: str | None = None,
) -> tuple[str, Any]:
    """The component's canonical name and the object its factory built under the contract.

    Random initialisation is seeded (``seed``, default 0), so a ``--random-init`` codec used by
    ``compress`` and by ``decompress`` (or a tiny one used by ``train`` and by ``ask``) has the same
    weights and fingerprint. ``weights`` (a file or hub id) replaces the random-init options in
    ``options``, as when rebuilding a component recorded in a checkpoint or ``.nk`` header; ``tiny``
    stays when the component registered ``tiny_weights``.
    """
    from neckkit.host.registry import with_weights

    component = host.components(kind).get(name)
    if weights is not None:
        options = with_weights(options, weights, tiny_weights=component.info.tiny_weights)
    return component.name, component.build(**options)


def build_recorded(
    host: PluginHost,
    kind: ComponentKind,
    name: str,
    options: Mapping[str, Any],
    source: str,
    *,
    weights: str | None = None,
) -> tuple[str, Any]:
    """:func:`build_component` for a component a file names (``source``: a ``.nk`` header, a neck's
    ``meta.json``): its recorded options may not name a weights path, and nothing is downloaded for it
    (:mod:`neckkit.loading.downloads`)."""
    from neckkit.loading.downloads import building_from_record, record_options

    with building_from_record(source):
        return build_component(host, kind, name, record_options(options, source, kind), weights=weights)
