"""The MLLM interface: a multimodal LLM that reads a registered visual encoder."""

from __future__ import annotations

import abc
from typing import Any

from torch import Tensor, nn

from neckkit.interfaces.encoder import Grid, VisualEncoder


def grid_options(encoder: VisualEncoder, grid: Grid | None) -> dict[str, Grid]:
    """``{"grid": (gh, gw)}`` for a native-resolution encoder's MLLM, ``{}`` for a square one (whose
    ``generate`` predates the keyword)."""
    if not encoder.native_resolution:
        return {}
    return {"grid": encoder._need_grid(grid)}


class MLLM(nn.Module, metaclass=abc.ABCMeta):
    """A multimodal LLM whose vision side is a :class:`VisualEncoder`.

    ``encoder`` is the registered encoder name whose tokens it reads, so a neck trained for
    that encoder serves this MLLM without retraining; ``feature_layer`` is the hidden-state
    index it takes visual features from (LLaVA: -2).
    """

    encoder: str
    feature_layer: int = -1

    @property
    @abc.abstractmethod
    def visual_encoder(self) -> VisualEncoder:
        """The encoder module the MLLM runs (entered at its ``entry_layer`` on the neck path)."""

    @abc.abstractmethod
    def generate(
        self, tokens: Tensor, prompt: str | list[str], *, start: int | None = None, **options: Any
    ) -> list[str]:
        """Answer ``prompt`` about images given as tokens entering block ``start``.

        ``tokens`` is [B, T, width]; ``start`` defaults to the encoder's ``entry_layer``;
        ``options`` are generation options (``max_new_tokens``, ``do_sample``, ``num_beams``).
        Returns one text per image. An MLLM whose encoder reads images at native resolution
        (``visual_encoder.native_resolution``) also takes ``grid=(gh, gw)``, the images' token grid
        (one grid per call); core code passes it through :func:`grid_options`.
        """

    def generate_from_pixels(self, pixels: Tensor, prompt: str | list[str], **options: Any) -> list[str]:
        """The uncompressed baseline: the same answer from preprocessed pixels."""
        tokens = self.visual_encoder.embed(pixels)
        return self.generate(tokens, prompt, start=0, **options)
