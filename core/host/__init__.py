"""The plugin host: hook specifications, loading plugins, and the component registry.

- :mod:`neckkit.host.hookspecs`: the hooks (``register_codecs`` ...) and ``hookimpl``;
- :mod:`neckkit.host.manager`: :class:`PluginHost`, which loads built-in and installed plugins;
- :mod:`neckkit.host.registry`: what ``register(name, factory, **info)`` records, by name and alias;
- :mod:`neckkit.host.options`: the factory-option contract, checked before every build;
- :mod:`neckkit.host.factories`: ``lazy_factory``, ``random_weights``, declared options against the factory;
- :mod:`neckkit.host.testing`: ``host_for_tests``, the built-ins plus the plugins a test registers.

Nothing here imports torch, so listing plugins stays fast.
"""
