"""The ways one request can fail inside the server without taking other requests with it.

Each is a :class:`~neckkit.errors.NeckkitError` that :meth:`Answerer.answer_batch(..., return_errors=True)
<neckkit.serving.answerer.Answerer.answer_batch>` puts in the failing request's place; the HTTP app maps
each to its status (:mod:`neckkit.serving.http_app`). This module imports nothing heavy.
"""

from __future__ import annotations

from neckkit.errors import NeckkitError

__all__ = ["AnswerFailed", "DamagedBitstream", "DecodeTimeout", "DecoderCrashed", "DecoderUnavailable"]


class DamagedBitstream(NeckkitError):
    """A bitstream whose entropy decoding killed or hung its decode worker (HTTP 422 ``damaged_bitstream``)."""


class DecoderCrashed(DamagedBitstream):
    """The decode worker died (a signal such as SIGSEGV, or an exit) while decoding this request's bitstream."""


class DecodeTimeout(DamagedBitstream):
    """Decoding this request's bitstream took longer than the pool's timeout; its worker was killed."""


class DecoderUnavailable(NeckkitError):
    """No decode worker became free in time, or the pool is closed (HTTP 503 ``busy``)."""


class AnswerFailed(NeckkitError):
    """An unexpected error answering this request, even in a batch of its own (HTTP 500 ``internal``)."""
