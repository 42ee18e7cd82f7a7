"""A plugin re-registering every built-in codec name: five failures, still one short warning line."""

from neckkit import hookimpl

BUILTIN_CODECS = ("elic", "tic", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")


@hookimpl
def register_codecs(register):
    for name in BUILTIN_CODECS:
        register(name, dict, description=f"a second {name}", tiny=True)
