"""Loading plugins and collecting what they register (model: the ``llm`` CLI).

Built-in plugins are modules under ``neckkit.plugins`` registered exactly like third-party
ones, which come from entry points in the group ``neckkit``. Each plugin is loaded and each
of its hooks is called in its own ``try``: a broken plugin is recorded in
:attr:`PluginHost.failed` and never takes the CLI down.

Environment variables:

- ``NECKKIT_LOAD_PLUGINS``: comma-separated third-party plugins to load (distribution or
  entry-point names); empty loads none. Unset loads all installed.
- ``NECKKIT_DISABLE_PLUGINS``: comma-separated plugins (third-party or built-in) to skip.
- ``NECKKIT_TRACE_PLUGINS``: ``1`` prints every plugin load and hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from neckkit.errors import PluginError
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
# Built-in plugins, registered under their module names exactly like third-party plugins.
# Each package's __init__ registers its components with lazy factories (so listing them never
# imports torch); the components themselves live one per module inside the package.
BUILTIN_PLUGINS: tuple[str, ...] = ("neckkit.plugins.codecs", "neckkit.plugins.encoders", "neckkit.plugins.mllms")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, or one of whose hooks raised."""

    plugin: str
    error: str


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


def _format_error(error: BaseException) -> str:
    text = " ".join(str(error).split())  # one line
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class PluginHost:
    """A pluggy manager for the ``neckkit`` hooks plus the record of broken plugins."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failed: list[PluginFailure] = []
        self._versions: dict[str, str] = {}
        self._builtin: set[str] = set()
        self.trace_enabled = self.env.get("NECKKIT_TRACE_PLUGINS", "") not in ("", "0")

    # -- loading ---------------------------------------------------------------------------
    def trace(self, message: str) -> None:
        if self.trace_enabled:
            print(f"neckkit-trace: {message}", file=sys.stderr)

    def _fail(self, plugin: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else _format_error(error)
        failure = PluginFailure(plugin=plugin, error=text)
        if failure not in self.failed:  # hooks run again on every lookup
            self.failed.append(failure)
        self.trace(f"plugin {plugin!r} failed: {text}")

    def _disabled(self, *names: str) -> bool:
        disabled = _names_from_env(self.env, "NECKKIT_DISABLE_PLUGINS") or set()
        return any(name in disabled for name in names)

    def register(self, plugin: object, name: str, version: str, *, builtin: bool = False) -> bool:
        """Register a plugin object; a hook name with no spec is recorded as a failure."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as error:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, error)
            return False
        self._versions[name] = version
        if builtin:
            self._builtin.add(name)
        self.trace(f"loaded plugin {name!r} {version} hooks={list(self.hook_names(name))}")
        return True

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (tests use this to undo a fixture's registration)."""
        self.pm.unregister(name=name)
        self._versions.pop(name, None)
        self._builtin.discard(name)

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

    def _call_impl(self, impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any]) -> bool:
        """Call one plugin's implementation of a hook; a raise is recorded, not propagated."""
        self.trace(f"calling {impl.plugin_name}.{hook_name}")
        try:
            impl.function(**kwargs)
        except Exception as error:  # a broken hook must not take the CLI down
            self._fail(impl.plugin_name, PluginError(f"{hook_name} raised {_format_error(error)}"))
            return False
        return True

    def _register_callback(self, kind: ComponentKind, plugin_name: str, staged: list[Component]) -> RegisterCallback:
        """The ``register`` a plugin's hook receives: validates each call and stages its component."""

        def register(name: str, factory: Callable[..., Any], **info: Any) -> None:
            staged.append(make_component(kind, plugin_name, name, factory, info))
            self.trace(f"{plugin_name} registered {kind} {name!r}")

        return register

    def components(self, kind: ComponentKind) -> ComponentRegistry:
        """Call the ``register_*`` hook for ``kind`` and return what the plugins registered.

        A plugin whose hook raises (or registers an invalid component) contributes nothing
        of this kind and is recorded in :attr:`failed`; a name claimed by two plugins
        raises :class:`PluginError` naming both.
        """
        hook_name = KIND_HOOKS[kind]
        registered: list[Component] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # registration order
            staged: list[Component] = []
            register = self._register_callback(kind, impl.plugin_name, staged)
            if self._call_impl(impl, hook_name, {"register": register}):
                registered.extend(staged)
        registry = ComponentRegistry(kind)
        for component in registered:
            registry.add(component)
        return registry

    def all_components(self) -> dict[ComponentKind, ComponentRegistry]:
        return {kind: self.components(kind) for kind in COMPONENT_KINDS}

    def add_commands(self, app: typer.Typer) -> None:
        """Let plugins add CLI commands; one that reuses an existing command name is refused."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = len(app.registered_commands)
            existing = {_command_name(info) for info in app.registered_commands}
            if not self._call_impl(impl, "register_commands", {"app": app}):
                del app.registered_commands[before:]
                continue
            added = {_command_name(info) for info in app.registered_commands[before:]}
            clashes = sorted(existing & added)
            if clashes:
                del app.registered_commands[before:]
                self._fail(impl.plugin_name, PluginError(f"command {clashes[0]!r} already exists"))


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



def build_component(host: PluginHost, kind: ComponentKind, name: str, options: Mapping[str, Any]) -> tuple[str, Any]:
    """The component's canonical name and the built object.

    Random initialisation is seeded, so a ``--random-init`` codec used by ``compress`` and by
    ``decompress`` (or a tiny one used by ``train`` and by ``ask``) has the same weights and fingerprint.
    """
    from neckkit.loading.weights import seeded_init

    component = host.components(kind).get(name)
    with seeded_init(0):
        built = component.build(**options)
    return component.name, built
