"""Built-in plugins, registered exactly like third-party ones.

Each built-in component lives in its own module under ``codecs/``, ``encoders/`` or
``mllms/`` and implements the ``register_*`` hooks with ``@neckkit.hookimpl``; the module
is listed in :data:`neckkit.host.manager.BUILTIN_PLUGINS`.
"""
