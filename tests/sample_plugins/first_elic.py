"""A well-formed built-in-style plugin registering a codec with an alias."""

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    register("elic", dict, description="ELIC stand-in", aliases=["elic2022"], tiny=True)
