"""A plugin whose codecs clash with the built-in ``tic``: one by name, one by alias; a third is fine."""

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    register("tic", dict, description="a codec reusing the built-in name", tiny=True)
    register("tac", dict, description="a codec whose alias is the built-in name", aliases=["tic"], tiny=True)
    register("clash-survivor", dict, description="a codec of the clashing plugin that clashes with nothing", tiny=True)
