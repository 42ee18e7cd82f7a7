"""A plugin that imports its model code inside the hook (as the docs recommend) and lacks a dependency.

Its encoder hook raises ``ModuleNotFoundError``; its codec hook works.
"""

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    register("heavy-codec", dict, description="a codec of a plugin whose encoder hook fails", tiny=True)


@hookimpl
def register_encoders(register):
    from neckkit_missing_dependency import HeavyViT  # not installed: the hook raises

    register("heavy-vit", HeavyViT, description="never registered", tiny=True)
