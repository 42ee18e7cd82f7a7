"""A plugin whose codec hook raises after registering one codec, and whose encoder hook works."""

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    register("half-done", dict, description="registered before the hook raised")
    raise ValueError("codec hook exploded")


@hookimpl
def register_encoders(register):
    register("survivor", dict, description="an encoder from a plugin whose codec hook failed")
