"""A plugin that claims a name another test plugin already registered."""

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    register("elic", dict, description="another ELIC")
