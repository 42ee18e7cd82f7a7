"""A plugin host for a plugin's own tests: the built-ins plus the plugins under test, nothing from the environment."""

from __future__ import annotations

from neckkit.errors import PluginError
from neckkit.host.manager import PluginHost

__all__ = ["host_for_tests"]


def host_for_tests(*plugins: object, builtins: bool = True) -> PluginHost:
    """A :class:`PluginHost` with neckkit's built-in plugins and ``plugins`` registered as entry points would be.

    No installed entry point is loaded and no ``NECKKIT_*`` variable is read, so the result does not
    depend on the machine. Each plugin (a module or object with ``@hookimpl`` functions) is registered
    under its ``__name__``. Every component hook runs at once, and any failure (an import, a hook that
    raises, an invalid ``register`` call, a name clash) is a :class:`PluginError` here, not a listed
    failure a test could miss. ``builtins=False``: the plugins alone.
    """
    host = PluginHost(env={"NECKKIT_LOAD_PLUGINS": ""})  # no entry points; the built-ins with load()
    if builtins:
        host.load()
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        host.register(plugin, name, "test")
    host.all_components()
    if host.failed:
        raise PluginError("; ".join(f"plugin {failure.plugin!r} failed: {failure.error}" for failure in host.failed))
    return host
