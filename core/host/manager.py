"""Loading plugins and collecting what they register (model: the ``llm`` CLI).

Built-in plugins are modules under ``neckkit.plugins`` registered exactly like third-party
ones, which come from entry points in the group ``neckkit``. Each plugin is loaded and each
of its hooks is called in its own ``try``: a broken plugin is recorded in
:attr:`PluginHost.failed` and never takes the CLI down. That covers a plugin that fails to
import, a hook that raises (an ``ImportError`` inside the hook included), a misspelled hook
name, an invalid ``register`` call, and a component name or alias another plugin already
took: built-ins win, then the plugin loaded first; only the clashing component is dropped.

Environment variables:

- ``NECKKIT_LOAD_PLUGINS``: comma-separated third-party plugins to load (distribution or
  entry-point names); empty loads none. Unset loads all installed.
- ``NECKKIT_DISABLE_PLUGINS``: comma-separated plugins (third-party or built-in) to skip.
- ``NECKKIT_TRACE_PLUGINS``: ``1`` prints every plugin load and hook call to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from neckkit.errors import PluginError, describe_error
from neckkit.host import hookspecs
from neckkit.host.registry import (
    COMPONENT_KINDS,
    KIND_HOOKS,
    Component,
    ComponentKind,
    ComponentRegistry,
    RegisterCallback,
    make_component,
)

if TYPE_CHECKING:
    import typer

ENTRY_POINT_GROUP = hookspecs.PROJECT
# A failed plugin's warning names its first error, cut to this many characters; list-plugins shows every error whole.
WARNING_ERROR_CHARS = 300
# Built-in plugins, registered under their module names exactly like third-party plugins.
# Each package's __init__ registers its components with lazy factories (so listing them never
# imports torch); the components themselves live one per module inside the package.
BUILTIN_PLUGINS: tuple[str, ...] = ("neckkit.plugins.codecs", "neckkit.plugins.encoders", "neckkit.plugins.mllms")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, one of whose hooks raised, or a component of it that was dropped.

    ``kinds`` and ``names`` say what the failure may have kept from being registered, so that
    "unknown encoder 'x'" can name it: every kind for a plugin that did not load, the hook's kind
    for a raising hook (any name), the kind and the names of a dropped clashing component.
    """

    plugin: str
    error: str
    kinds: tuple[ComponentKind, ...] = field(default=COMPONENT_KINDS, compare=False, repr=False)
    names: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def may_provide(self, kind: ComponentKind, name: str) -> bool:
        """Whether the failed plugin could have provided the ``kind`` named ``name``."""
        return kind in self.kinds and (not self.names or name in self.names)


@dataclass(frozen=True)
class PluginRecord:
    """A loaded plugin: its name, version and the hooks it implements."""

    name: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


def installed_entry_points() -> list[metadata.EntryPoint]:
    """Entry points of installed distributions in the ``neckkit`` group."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _names_from_env(env: Mapping[str, str], key: str) -> set[str] | None:
    value = env.get(key)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _hookspec_names() -> tuple[str, ...]:
    """The hooks a plugin can implement (the hookspecs)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return tuple(sorted(name for name, value in vars(hookspecs).items() if hasattr(value, marker)))


def _unknown_hooks_message(pm: pluggy.PluginManager, plugin: object, name: str) -> str | None:
    """``unknown hook 'register_codec' in plugin 'p'; did you mean 'register_codecs'?``, or ``None``."""
    unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or () if caller.spec is None)
    if not unknown:
        return None
    known = _hookspec_names()
    parts = []
    for hook in unknown:
        hint = difflib.get_close_matches(hook, known, n=1)
        suggestion = f"did you mean {hint[0]!r}?" if hint else f"hooks are {', '.join(known)}"
        parts.append(f"unknown hook {hook!r} in plugin {name!r}; {suggestion}")
    return "PluginValidationError: " + "; ".join(parts)


class PluginHost:
    """A pluggy manager for the ``neckkit`` hooks plus the record of broken plugins."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failed: list[PluginFailure] = []
        self._versions: dict[str, str] = {}
        self._builtin: set[str] = set()
        self._load_order: dict[str, int] = {}  # plugin name -> when it was registered
        self._counter = itertools.count()
        # Each kind's registry, built once (hooks run once) until a plugin is added or removed.
        self._registries: dict[ComponentKind, ComponentRegistry] = {}
        self.trace_enabled = self.env.get("NECKKIT_TRACE_PLUGINS", "") not in ("", "0")

    # -- loading ---------------------------------------------------------------------------
    def trace(self, message: str) -> None:
        if self.trace_enabled:
            print(f"neckkit-trace: {message}", file=sys.stderr)

    def _fail(
        self,
        plugin: str,
        error: BaseException | str,
        *,
        kinds: tuple[ComponentKind, ...] = COMPONENT_KINDS,
        names: tuple[str, ...] = (),
    ) -> None:
        text = error if isinstance(error, str) else describe_error(error)
        failure = PluginFailure(plugin=plugin, error=text, kinds=kinds, names=names)
        if failure not in self.failed:  # a plugin registered again fails the same way
            self.failed.append(failure)
        self.trace(f"plugin {plugin!r} failed: {text}")

    def failures_by_plugin(self) -> dict[str, list[str]]:
        """The errors of each failed plugin, in the order they were recorded."""
        errors: dict[str, list[str]] = {}
        for failure in self.failed:
            errors.setdefault(failure.plugin, []).append(failure.error)
        return errors

    def warnings(self) -> list[str]:
        """One short line per failed plugin, as every command but ``list-plugins`` prints them.

        The line names the plugin's first error (at most :data:`WARNING_ERROR_CHARS` characters) and how
        many more it has, so a plugin that fails many ways is still one readable line.
        """
        lines = []
        for plugin, errors in self.failures_by_plugin().items():
            first = textwrap.shorten(errors[0], WARNING_ERROR_CHARS, placeholder=" ...")
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            lines.append(f"Warning: plugin {plugin!r} failed: {first}{more} (see neckkit list-plugins)")
        return lines

    def _disabled(self, *names: str) -> bool:
        disabled = _names_from_env(self.env, "NECKKIT_DISABLE_PLUGINS") or set()
        return any(name in disabled for name in names)

    def register(self, plugin: object, name: str, version: str, *, builtin: bool = False) -> bool:
        """Register a plugin object; a hook name with no spec is recorded as a failure."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as error:
            message = None
            if self.pm.is_registered(plugin):
                message = _unknown_hooks_message(self.pm, plugin, name)
                self.pm.unregister(plugin)
            self._fail(name, message or error)
            return False
        self._versions[name] = version
        self._load_order[name] = next(self._counter)
        if builtin:
            self._builtin.add(name)
        self._registries.clear()
        self.trace(f"loaded plugin {name!r} {version} hooks={list(self.hook_names(name))}")
        return True

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (tests use this to undo a fixture's registration)."""
        self.pm.unregister(name=name)
        self._versions.pop(name, None)
        self._load_order.pop(name, None)
        self._builtin.discard(name)
        self._registries.clear()

    def load_builtins(self, modules: tuple[str, ...] = BUILTIN_PLUGINS) -> None:
        """Import and register the built-in plugin modules."""
        from neckkit import __version__

        for module_name in modules:
            if self._disabled(module_name):
                self.trace(f"skipped disabled plugin {module_name!r}")
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as error:  # a broken plugin must not take the CLI down
                self._fail(module_name, error)
                continue
            self.register(module, module_name, __version__, builtin=True)

    def load_entry_points(self) -> None:
        """Load third-party plugins from the ``neckkit`` entry-point group, each isolated."""
        selected = _names_from_env(self.env, "NECKKIT_LOAD_PLUGINS")
        for entry_point in installed_entry_points():
            dist = entry_point.dist
            dist_name = dist.name if dist is not None else entry_point.name
            version = dist.version if dist is not None else "unknown"
            name = dist_name if entry_point.name == dist_name else f"{dist_name}:{entry_point.name}"
            if self.pm.has_plugin(name):
                continue  # the same distribution seen twice on sys.path
            aliases = (name, dist_name, entry_point.name)
            if selected is not None and not any(alias in selected for alias in aliases):
                self.trace(f"skipped plugin {name!r}: not in NECKKIT_LOAD_PLUGINS")
                continue
            if self._disabled(*aliases):
                self.trace(f"skipped disabled plugin {name!r}")
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken plugin must not take the CLI down
                self._fail(name, error)
                continue
            self.register(plugin, name, version)

    def load(self) -> PluginHost:
        """Load built-in and installed plugins; returns ``self`` for chaining."""
        self.load_builtins()
        self.load_entry_points()
        return self

    # -- what plugins provide ---------------------------------------------------------------
    def hook_names(self, plugin_name: str) -> tuple[str, ...]:
        plugin = self.pm.get_plugin(plugin_name)
        return tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))

    def plugins(self) -> list[PluginRecord]:
        """The loaded plugins, built-ins first, then by name."""
        records = [
            PluginRecord(
                name=name,
                version=self._versions.get(name, "unknown"),
                hooks=self.hook_names(name),
                builtin=name in self._builtin,
            )
            for name, _ in self.pm.list_name_plugin()
        ]
        return sorted(records, key=lambda record: (not record.builtin, record.name))

    def _call_impl(
        self, impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any], kinds: tuple[ComponentKind, ...]
    ) -> bool:
        """Call one plugin's implementation of a hook; a raise is recorded, not propagated."""
        self.trace(f"calling {impl.plugin_name}.{hook_name}")
        try:
            impl.function(**kwargs)
        except Exception as error:  # a broken hook must not take the CLI down
            self._fail(impl.plugin_name, PluginError(f"{hook_name} raised {describe_error(error)}"), kinds=kinds)
            return False
        return True

    def _register_callback(self, kind: ComponentKind, plugin_name: str, staged: list[Component]) -> RegisterCallback:
        """The ``register`` a plugin's hook receives: validates each call and stages its component."""

        def register(name: str, factory: Callable[..., Any], **info: Any) -> None:
            staged.append(make_component(kind, plugin_name, name, factory, info))
            self.trace(f"{plugin_name} registered {kind} {name!r}")

        return register

    def _load_rank(self, plugin_name: str) -> tuple[bool, float]:
        """Who keeps a contested name: built-ins first, then plugins in the order they were loaded."""
        return (plugin_name not in self._builtin, self._load_order.get(plugin_name, float("inf")))

    def _add_component(self, registry: ComponentRegistry, component: Component) -> None:
        """Add ``component`` unless a name or alias of it is taken; then drop it and record why.

        Two built-ins claiming one name is a bug in neckkit itself, and stays an error.
        """
        clash = registry.clash(component)
        if clash is None or component.plugin in self._builtin:
            registry.add(component)  # a clash between built-ins raises, naming both
            return
        claimed, owner = clash
        kind = component.kind
        if owner.plugin == component.plugin:
            reason = f"{kind} name {claimed!r} is registered twice by plugin {component.plugin!r}"
        else:
            who = "built-in plugin" if owner.plugin in self._builtin else "plugin"
            reason = (
                f"{kind} name {claimed!r} of plugin {component.plugin!r} is already registered by {who} "
                f"{owner.plugin!r} ({kind} {owner.name!r})"
            )
        self._fail(
            component.plugin,
            PluginError(
                f"{reason}; {kind} {component.name!r} of plugin {component.plugin!r} was dropped "
                "(rename it, or disable one plugin with NECKKIT_DISABLE_PLUGINS)"
            ),
            kinds=(kind,),
            names=(component.name, *component.info.aliases),
        )

    def _may_have_provided(self, kind: ComponentKind, name: str) -> list[tuple[str, str]]:
        """(plugin, error) of each failed plugin that could have provided the ``kind`` named ``name``."""
        return [(failure.plugin, failure.error) for failure in self.failed if failure.may_provide(kind, name)]

    def components(self, kind: ComponentKind) -> ComponentRegistry:
        """Call the ``register_*`` hook for ``kind`` and return what the plugins registered.

        The hooks run once; the registry is kept until a plugin is registered or unregistered.
        A plugin whose hook raises (or registers an invalid component) contributes nothing
        of this kind and is recorded in :attr:`failed`; so is one whose component claims a name
        or alias already taken (built-ins first, then plugins in load order), and only that
        component is dropped. Looking up an unknown name names the failed plugins that may
        have provided it.
        """
        cached = self._registries.get(kind)
        if cached is not None:
            return cached
        hook_name = KIND_HOOKS[kind]
        impls = sorted(
            getattr(self.pm.hook, hook_name).get_hookimpls(), key=lambda impl: self._load_rank(impl.plugin_name)
        )
        registry = ComponentRegistry(kind, may_have_provided=lambda name: self._may_have_provided(kind, name))
        for impl in impls:
            staged: list[Component] = []
            register = self._register_callback(kind, impl.plugin_name, staged)
            if self._call_impl(impl, hook_name, {"register": register}, (kind,)):
                for component in staged:
                    self._add_component(registry, component)
        self._registries[kind] = registry
        return registry

    def all_components(self) -> dict[ComponentKind, ComponentRegistry]:
        """Every kind's registry; runs every component hook, so their failures are known afterwards."""
        return {kind: self.components(kind) for kind in COMPONENT_KINDS}

    def add_commands(self, app: typer.Typer) -> None:
        """Let plugins add CLI commands; one that reuses an existing command name is refused."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = len(app.registered_commands)
            existing = {_command_name(info) for info in app.registered_commands}
            if not self._call_impl(impl, "register_commands", {"app": app}, ()):
                del app.registered_commands[before:]
                continue
            added = {_command_name(info) for info in app.registered_commands[before:]}
            clashes = sorted(existing & added)
            if clashes:
                del app.registered_commands[before:]
                self._fail(impl.plugin_name, PluginError(f"command {clashes[0]!r} already exists"), kinds=())


def _command_name(info: Any) -> str:
    """The name typer gives a registered command."""
    if info.name:
        return str(info.name)
    return str(info.callback.__name__).lower().replace("_", "-")


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost().load()
    return _host


def set_host(host: PluginHost | None) -> None:
    """Replace the process-wide host (tests; ``None`` reloads on next use)."""
    global _host
    _host = host



# build_component lives with the factory-option contract it applies; re-exported so that
# `from neckkit.host.manager import build_component` (and the old neckkit.plugin_manager) keep working.
from neckkit.host.options import build_component  # noqa: E402, F401
