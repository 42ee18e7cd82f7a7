"""The rate axis of ``neckkit eval``'s plots and BD-rates: which of a row's three bpp columns is "the rate".

Every row keeps all three (``bpp``, ``payload_bpp``, ``estimated_bpp``); ``--rate`` picks the one that
curves are drawn and compared on. The default is ``payload``: real entropy-coded bits without the ``.nk``
container header (about 186 bytes per file, 0.02 bpp at 256 x 256, a constant that is neckkit's own
format and no part of any codec's compression), so it measures what the paper's estimate stands for
with real bits; ``estimated`` is the paper's own axis.
"""

from __future__ import annotations

from dataclasses import dataclass

from neckkit.errors import UsageError


@dataclass(frozen=True)
class RateAxis:
    """One choice of ``--rate``: the row field it reads and how it is named to the reader."""

    name: str  # the --rate value
    field: str  # the row field
    unit: str  # after a number in messages: "0.30 payload bpp"
    label: str  # the plot's x label
    description: str  # eval.json's rate_axis_description


RATE_AXES = {
    "file": RateAxis("file", "bpp", "file bpp", "file bpp (whole .nk file: header + streams)",
                     "bytes of the whole .nk file (container header plus entropy-coded streams) x 8 / pixels"),
    "payload": RateAxis("payload", "payload_bpp", "payload bpp", "payload bpp (entropy-coded bits, no header)",
                        "entropy-coded stream bytes only x 8 / pixels: real bits, without the .nk container header"),
    "estimated": RateAxis("estimated", "estimated_bpp", "estimated bpp", "estimated bpp (-log2 likelihoods, as the paper)",
                          "-sum log2(likelihoods) of every entropy-coded tensor / pixels: the paper's (estimated) rate"),
}
DEFAULT_RATE_AXIS = "payload"


def rate_axis(name: str) -> RateAxis:
    """The axis for ``--rate NAME``; the row field names (``bpp``, ``payload_bpp``, ``estimated_bpp``) are accepted too."""
    for axis in RATE_AXES.values():
        if name in (axis.name, axis.field):
            return axis
    raise UsageError(f"--rate must be file, payload or estimated, got {name!r}")
