"""How one benchmark image reaches the MLLM: the MLLM's own crop, then really compressed, decoded and answered.

A :class:`Route` is one path at one rate: ``uncompressed`` (the crop itself), ``reconstruction`` (the crop
coded to a ``.nk`` file's bytes by a codec, learned or traditional, parsed back and decoded to pixels) or
``neck`` (the crop coded by the neck's codec, the file's latent through the transform-neck, never an image).
Every image first goes through the MLLM encoder's geometric preprocessing (its resize and crop,
:meth:`~neckkit.interfaces.VisualEncoder.geometric_preprocess`), so every path sees the same region and the
bit rate is measured on the pixels the model reads. Answers come from one
:class:`~neckkit.serving.Answerer`, batched.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from neckkit.errors import NeckkitError, UsageError
from neckkit.serving.answerer import Answerer
from neckkit.serving.requests import AskRequest

__all__ = ["BENCHMARK_PATHS", "Coded", "Route", "RouteAnswer"]

BENCHMARK_PATHS = ("uncompressed", "reconstruction", "neck")
CACHE_IMAGES = 512  # coded crops kept per route: a benchmark asks several questions about one image


@dataclass
class Coded:
    """One crop after the path's coding: what the MLLM is asked about, and the file's rates."""

    request_source: Any  # the crop tensor, the decoded image, or the .nk bytes
    uncompressed: bool
    rates: dict[str, Any] = field(default_factory=dict)  # bytes, bpp, payload_bpp (none when uncompressed)


@dataclass
class RouteAnswer:
    """One prompt's answer (``""`` when it failed) with the image's rates and the error, if any."""

    answer: str
    image: str  # the crop's digest: one benchmark image asked several questions has one
    size: tuple[int, int]  # the benchmark image's own height, width
    coded_size: tuple[int, int]  # the crop's (what was compressed)
    rates: dict[str, Any]
    error: str | None = None


@dataclass
class Route:
    """One path at one rate point, answered by ``answerer``.

    ``reconstruction``: ``codec`` (any codec plugin, built at its quality) named ``codec_name``; ``neck``: the
    answerer's own codec and neck; ``level``: a variable-rate codec's level. ``label`` names the rate point.
    """

    path: str
    answerer: Answerer
    label: str = "uncompressed"
    codec_name: str | None = None
    codec: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    level: float | None = None
    _cache: OrderedDict[str, Coded] = field(default_factory=OrderedDict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.path not in BENCHMARK_PATHS:
            raise UsageError(f"path must be one of {', '.join(BENCHMARK_PATHS)}, got {self.path!r}")
        if self.path == "reconstruction" and self.codec is None:
            raise UsageError("the reconstruction path needs a codec (codec=NAME and its quality)")
        if self.path == "neck":
            if self.answerer.neck is None:
                raise UsageError("the neck path needs a neck checkpoint (neck=RUN)")
            self.codec_name, self.codec = self.answerer.codec_name, self.answerer.codec
            assert self.answerer.checkpoint is not None
            self.options = dict(self.answerer.checkpoint.meta.codec.options)

    @property
    def mllm(self) -> Any:
        return self.answerer.mllm

    def crop(self, image: Tensor) -> Tensor:
        """The region the MLLM's encoder sees, at its input size: [1, 3, H, W] -> [1, 3, S, S] in [0, 1]."""
        return self.mllm.visual_encoder.geometric_preprocess(image.float()).clamp(0, 1).cpu()

    def answer(self, images: Sequence[Tensor], prompts: Sequence[str], generation: Sequence[Mapping[str, Any]],
               ) -> list[RouteAnswer]:
        """Answers to ``prompts[i]`` about ``images[i]`` ([1, 3, H, W] in [0, 1]), batched; failures are
        answered ``""`` with their error (one bad image never stops a benchmark)."""
        prepared: list[tuple[str, tuple[int, int], tuple[int, int], Coded | None, str | None]] = []
        for image in images:
            size = (int(image.shape[-2]), int(image.shape[-1]))
            try:
                crop = self.crop(image)
                digest = hashlib.sha1(crop.numpy().tobytes()).hexdigest()[:16]
                prepared.append((digest, size, (int(crop.shape[-2]), int(crop.shape[-1])), self._coded(digest, crop),
                                 None))
            except NeckkitError as error:
                prepared.append(("", size, size, None, str(error)))
        requests = [AskRequest(coded.request_source, [prompt], dict(options), uncompressed=coded.uncompressed,
                               name=f"benchmark image {digest}")
                    for (digest, _, _, coded, _), prompt, options in zip(prepared, prompts, generation, strict=True)
                    if coded is not None]
        results = iter(self.answerer.answer_batch(requests, return_errors=True) if requests else [])
        answers = []
        for digest, size, coded_size, coded, error in prepared:
            result = next(results) if coded is not None else None
            if isinstance(result, NeckkitError):
                error = str(result)
            text = result.answers[0] if result is not None and not isinstance(result, NeckkitError) else ""
            answers.append(RouteAnswer(text, digest, size, coded_size, dict(coded.rates) if coded else {}, error))
        return answers

    def _coded(self, digest: str, crop: Tensor) -> Coded:
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        coded = self._code(crop, digest)
        self._cache[digest] = coded
        if len(self._cache) > CACHE_IMAGES:
            self._cache.popitem(last=False)
        return coded

    @torch.no_grad()
    def _code(self, crop: Tensor, digest: str) -> Coded:
        if self.path == "uncompressed":
            return Coded(crop, uncompressed=True)
        from neckkit.bitstream import bpp
        from neckkit.bitstream.coding import compress_image, reconstruct_image, transmit

        source = f"benchmark image {digest} at {self.label}"
        fingerprint = self.answerer.codec_fingerprint if self.path == "neck" else None
        parameters = getattr(self.codec, "parameters", None)  # a learned codec runs where it was put
        device = next(parameters(), torch.empty(0)).device if parameters is not None else torch.device("cpu")
        nk = compress_image(self.codec, crop.to(device), name=self.codec_name or "", fingerprint=fingerprint,
                            options=self.options, level=self.level)
        data, nk = transmit(nk, source=source)
        rates = bpp(nk)
        measured = {"bytes": len(data), "bpp": rates.file_bpp, "payload_bpp": rates.payload_bpp}
        if self.path == "neck":
            return Coded(data, uncompressed=False, rates=measured)
        decoded = reconstruct_image(self.codec, nk, name=self.codec_name or "", source=source).cpu()  # [1, 3, S, S]
        return Coded(decoded, uncompressed=True, rates=measured)
