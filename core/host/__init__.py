"""The plugin host: hook specifications, loading plugins, and the component registry.

- :mod:`neckkit.host.hookspecs`: the hooks (``register_codecs`` ...) and ``hookimpl``;
- :mod:`neckkit.host.manager`: :class:`PluginHost`, which loads built-in and installed plugins;
- :mod:`neckkit.host.registry`: what ``register(name, factory, **info)`` records, by name and alias.

Nothing here imports torch, so listing plugins stays fast.
"""
