"""One question about one image, and its answer: what :class:`~neckkit.serving.answerer.Answerer` takes and gives.

An :class:`AskRequest` names its image as a ``.nk`` bitstream (bytes, an :class:`~neckkit.bitstream.NkFile`
or a file path) or as an image (a tensor or an image file, compressed by the answerer first). An
:class:`AskResult` holds exactly the fields ``neckkit ask --json`` prints (:meth:`AskResult.as_dict`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from torch import Tensor

    from neckkit.bitstream.nk_format import NkFile

__all__ = ["REPORT_FIELDS", "AskRequest", "AskResult", "prompt_problem"]


def prompt_problem(prompt: str) -> str | None:
    """Why ``prompt`` cannot reach a tokenizer, or None: text must be valid Unicode (no lone surrogates).

    A JSON string may hold ``"\\ud800"``; tokenizers refuse it with a ``TypeError`` that would fail
    every request batched with it, so each request is checked on its own first.
    """
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"a prompt is not valid Unicode text ({error.reason} at character {error.start})"
    return None


@dataclass(frozen=True)
class AskRequest:
    """Prompts about one image; ``generation`` goes to ``MLLM.generate`` as it is (``max_new_tokens``, ...).

    ``uncompressed`` asks the baseline: the image itself through the full encoder (an image source
    only). ``name`` is what the result shows as ``source`` (default: the path, or ``"<bytes>"`` ...).
    """

    source: bytes | NkFile | Tensor | str | os.PathLike[str]  # an image is [1, 3, H, W] or [3, H, W] in [0, 1]
    prompts: Sequence[str] | str
    generation: Mapping[str, Any] = field(default_factory=dict)
    uncompressed: bool = False
    name: str | None = None
    level: float | None = None  # an image compressed here: the variable-rate codec's level (None: its default)

    def __post_init__(self) -> None:
        prompts = [self.prompts] if isinstance(self.prompts, str) else list(self.prompts)
        if not prompts or not all(isinstance(prompt, str) for prompt in prompts):
            raise NeckkitError("a request needs at least one prompt, each a string")
        problem = next(filter(None, map(prompt_problem, prompts)), None)
        if problem is not None:
            raise NeckkitError(problem)
        object.__setattr__(self, "prompts", tuple(prompts))
        object.__setattr__(self, "generation", dict(self.generation))

    @property
    def shown_source(self) -> str:
        """The ``source`` field of the result."""
        if self.name is not None:
            return self.name
        if isinstance(self.source, (str, os.PathLike)):
            return str(self.source)
        if isinstance(self.source, (bytes, bytearray, memoryview)):
            return "<bytes>"
        return "<nk>" if type(self.source).__name__ == "NkFile" else "<image>"

    def generation_key(self) -> tuple[tuple[str, str], ...]:
        """Requests batch together only when their generation options are equal."""
        return tuple(sorted((key, repr(value)) for key, value in self.generation.items()))


# What ``neckkit ask --json`` prints, in its order (:meth:`AskResult.as_dict`; the uncompressed
# baseline leaves out the codec fields).
REPORT_FIELDS = ("source", "mllm", "prompts", "path", "codec", "level", "bpp", "payload_bpp", "latent_shape",
                 "token_grid", "synthesis_calls", "answers", "answer", "seconds")


@dataclass
class AskResult:
    """The answers to one request, its rate and per-stage seconds.

    ``compressed_here``: the source was an image that the answerer compressed (the server flags
    it); ``batch_size``: how many requests shared the neck and MLLM calls (their ``neck`` and
    ``mllm`` seconds are those of the shared call). Neither is part of :meth:`as_dict`.
    """

    source: str
    mllm: str
    prompts: list[str]
    path: str  # "neck" or "uncompressed"
    answers: list[str]
    seconds: dict[str, float]
    codec: str | None = None
    level: int | float | None = None  # the file's rate level (variable-rate codecs)
    bpp: float | None = None
    payload_bpp: float | None = None
    latent_shape: list[int] | None = None  # [1, C, h, w]: the latent cells the neck read (the encoder's view)
    token_grid: list[int] | None = None  # [gh, gw]: the patch tokens the neck gave the encoder
    synthesis_calls: int | None = None
    compressed_here: bool = False
    batch_size: int = 1

    @property
    def answer(self) -> str | list[str]:
        """The one answer, or all of them when there were several prompts."""
        return self.answers[0] if len(self.answers) == 1 else self.answers

    def as_dict(self) -> dict[str, Any]:
        """The fields ``neckkit ask --json`` prints, in its order; seconds rounded to 0.1 ms."""
        report: dict[str, Any] = {"source": self.source, "mllm": self.mllm, "prompts": list(self.prompts)}
        if self.path == "uncompressed":
            report.update(path=self.path, bpp=None)
        else:
            report.update(path=self.path, codec=self.codec, level=self.level, bpp=self.bpp, payload_bpp=self.payload_bpp,
                          latent_shape=self.latent_shape, token_grid=self.token_grid,
                          synthesis_calls=self.synthesis_calls)
        report["answers"] = list(self.answers)
        report["answer"] = self.answer
        report["seconds"] = {name: round(value, 4) for name, value in self.seconds.items()}
        return report


def is_nk_path(source: Any) -> bool:
    """A path naming a ``.nk`` file (other paths are images)."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".nk"
