"""A plugin with a misspelled hook name (``register_codec`` instead of ``register_codecs``)."""

from neckkit import hookimpl


@hookimpl
def register_codec(register):
    register("never-seen", object, description="never registered")
