"""A codec plugin for the serving isolation tests: tiny TIC whose decoder kills (or hangs) its own process on a marker.

``crashing-tic`` builds exactly the tiny ``tic`` (the same weights, so the same fingerprint), but its
``decompress_latent`` sends SIGSEGV to its own process when the first stream starts with :data:`CRASH`
and sleeps for an hour when it starts with :data:`HANG`: what a hostile stream does to a fragile
entropy decoder, without needing one.
"""

import os
import signal
import time

from neckkit import hookimpl

CRASH = b"neckkit-test:segfault"
HANG = b"neckkit-test:hang"


def build_crashing_tic(**options):
    from neckkit.plugins.codecs.tic import build_tic

    codec = build_tic(**options)
    decompress_latent = codec.decompress_latent

    def crashing_decompress_latent(payload):
        first = payload.strings[0][0] if payload.strings and payload.strings[0] else b""
        if first.startswith(CRASH):
            os.kill(os.getpid(), signal.SIGSEGV)
        if first.startswith(HANG):
            time.sleep(3600)
        return decompress_latent(payload)

    codec.decompress_latent = crashing_decompress_latent
    return codec


@hookimpl
def register_codecs(register):
    register("crashing-tic", build_crashing_tic, description="tiny TIC that crashes or hangs on a marker (tests)",
             tiny=True)
