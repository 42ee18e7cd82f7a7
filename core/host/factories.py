"""Component factories: lazy ones, and whether a factory's signature takes the options its component declares.

A declared option the factory cannot take would otherwise surface only when built, as a bare
``TypeError``. :func:`signature_problem` names the option and the factory; the registry asks it when a
plugin registers, and the build asks it again for :class:`LazyFactory` factories, whose target is
imported only then.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from neckkit.errors import NeckkitError, PluginError

__all__ = ["LazyFactory", "lazy_factory", "random_weights", "signature_problem"]


class LazyFactory:
    """A factory that imports ``"package.module:function"`` only when called; ``bound`` keywords go first."""

    def __init__(self, target: str, bound: dict[str, Any]) -> None:
        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise PluginError(f"lazy factory target {target!r} must look like 'package.module:function'")
        self.target, self.bound = target, bound
        self.__name__ = self.__qualname__ = f"lazy({target})"

    def resolve(self) -> Callable[..., Any]:
        """The target itself (imports its module)."""
        module_name, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]

    def __call__(self, **options: Any) -> Any:
        return self.resolve()(**self.bound, **options)

    def __repr__(self) -> str:
        return self.__name__


def lazy_factory(target: str, **bound: Any) -> Callable[..., Any]:
    """A factory that imports ``"package.module:function"`` only when called.

    Plugins register these so that listing components never imports torch or model code;
    ``bound`` keywords are passed before the caller's options.
    """
    return LazyFactory(target, bound)


def _describe(factory: Callable[..., Any], label: str | None, signature: inspect.Signature) -> str:
    """``package.module:function(a, b)``: where the factory is and the names it takes."""
    if label is None:
        name = getattr(factory, "__qualname__", None) or type(factory).__name__
        if "<locals>" in name:
            name = getattr(factory, "__name__", name)
        module = getattr(factory, "__module__", None)
        label = f"{module}:{name}" if module else name
    return f"{label}({', '.join(signature.parameters)})"


def signature_problem(factory: Callable[..., Any], declared: Iterable[str], resolve: bool = False) -> str | None:
    """Why ``factory`` cannot take every ``declared`` option as a keyword, or None when it can (or cannot be told).

    A factory with ``**kwargs`` takes anything. A :class:`LazyFactory` is judged by its target, which is
    imported only with ``resolve`` (else None); its ``bound`` keywords cannot be passed again.
    """
    bound: dict[str, Any] = {}
    if isinstance(factory, LazyFactory):
        if not resolve:
            return None
        bound, label, factory = factory.bound, factory.target, factory.resolve()
    else:
        label = None
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and C callables: nothing to compare
        return None
    parameters = signature.parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keywords = {
        parameter.name
        for parameter in parameters
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    described = _describe(factory, label, signature)
    for option in sorted(declared):
        what = "tiny=True declares option 'tiny', which" if option == "tiny" else f"declared option {option!r}"
        if option in bound:
            return f"{what} is already bound by lazy_factory({label!r}, {option}=...)"
        if option not in keywords:
            return (
                f"{what} is not a keyword parameter of its factory {described}; add the parameter (or **options) "
                "or stop declaring the option"
            )
    return None


def random_weights(
    weights: str | None,
    tiny: bool,
    random_init: bool,
    *,
    tiny_weights: bool | None = None,
    component: str | None = None,
) -> bool:
    """Whether a factory draws random weights: ``tiny`` or ``random_init``, with no ``weights`` to load.

    The core's rules, for factories called directly too: tiny + random_init and random_init + weights
    are refused; tiny + weights is refused unless ``tiny_weights`` (then the weights load into the tiny
    architecture: False). Inside a core build ``tiny_weights`` defaults to the registration's and
    messages name the component; called directly, pass them (else the calling function is named).
    """
    from neckkit.host.options import building, component_label

    current = building()
    if tiny_weights is None:
        tiny_weights = current.info.tiny_weights if current is not None else False
    if component is not None:
        who = component
    elif current is not None:
        who = component_label(current)
    else:
        who = f"{sys._getframe(1).f_code.co_qualname}()"
    if tiny and random_init:
        raise NeckkitError(f"{who}: tiny and random_init exclude each other")
    if random_init and weights is not None:
        raise NeckkitError(f"{who}: random_init and weights exclude each other")
    if tiny and weights is not None and not tiny_weights:
        raise NeckkitError(
            f"{who}: tiny and weights exclude each other (its tiny architecture loads no weights; one that does "
            "registers tiny_weights=True)"
        )
    return (tiny or random_init) and weights is None
