"""The machine path being trained: codec analysis -> neck -> encoder from ``entry_layer`` -> embedding.

The teacher is the frozen full encoder on the uncompressed crop. One module holds codec, neck and
encoder so DistributedDataParallel sees every trainable parameter (the neck, plus the codec in the
joint phase of d2/d3). Batches are dicts: ``images`` [B, 3, S, S] in [0, 1], or, from the d1 cache,
``y_hat`` [B, C, h, w], ``teacher`` [B, D], ``bits`` [B] (and ``teacher_tokens`` [B, T, W]); with a
variable-rate codec also ``level`` [B] (float): the crops are coded at it (one level per batch of
images) and the neck is told it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neckkit.bitstream.padding import crop_padding, pad_to_multiple
from neckkit.errors import NeckkitError
from neckkit.interfaces import Codec, VisualEncoder, at_level
from neckkit.neck.transform import TransformNeck
from neckkit.training.rate_levels import level_field


def bits_per_item(likelihoods: dict[str, Tensor]) -> Tensor:
    """Estimated bits of each batch item: {name: [B, ...]} -> [B]."""
    total = None
    for likelihood in likelihoods.values():
        bits = (-torch.log2(likelihood)).flatten(1).sum(dim=1)
        total = bits if total is None else total + bits
    assert total is not None, "a codec returns at least one likelihood tensor"
    return total


class NeckPath(nn.Module):
    """Student (neck path) and teacher (full encoder) embeddings for a batch."""

    def __init__(
        self, codec: Codec, neck: TransformNeck, encoder: VisualEncoder, entry_layer: int, token_layer: int | None = None
    ) -> None:
        super().__init__()
        self.codec, self.neck, self.encoder = codec, neck, encoder
        self.entry_layer, self.token_layer = entry_layer, token_layer

    # -- pieces --------------------------------------------------------------------------------
    def analyze(self, images: Tensor) -> tuple[Tensor, Tensor, Any]:
        """(y_hat, bits [B], padding) of the crops, padded to the codec's multiple."""
        padded, padding = pad_to_multiple(images, self.codec.pad_multiple)
        analysis = self.codec.analyze(padded)
        return analysis.y_hat, bits_per_item(analysis.likelihoods), padding

    @torch.no_grad()
    def teacher(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The frozen encoder on the uncompressed crops: (embedding [B, D], tokens at token_layer)."""
        return self.finish(self.encoder.embed(self.encoder.preprocess(images)), 0)

    def finish(self, tokens: Tensor, start: int) -> tuple[Tensor, Tensor | None]:
        """Run the encoder from block ``start``: (embedding, tokens entering ``token_layer``)."""
        encoder, layer = self.encoder, self.token_layer
        if layer is None:
            return encoder.encode_from(tokens, start), None
        at_layer = encoder.blocks(tokens, start, layer)
        return encoder.encode_from(at_layer, layer), at_layer

    def reconstruction(self, y_hat: Tensor, padding: Any = None) -> Tensor:
        """The "Reconstruction" baseline's embedding: decoded image through the full encoder."""
        x_hat = self.codec.synthesize(y_hat)
        if padding is not None:
            x_hat = crop_padding(x_hat, padding)
        return self.encoder.encode(self.encoder.preprocess(x_hat))

    # -- the training forward -------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], with_image: bool = False) -> dict[str, Tensor]:
        """Student and teacher for a batch; ``with_image`` also decodes ``x_hat`` (d2)."""
        out: dict[str, Tensor] = {}
        level = batch.get("level")  # [B] or None (a fixed-rate codec)
        if "images" in batch:
            images = batch["images"]
            with self.coding_at(level):
                y_hat, out["bits"], padding = self.analyze(images)
                if with_image:
                    x_hat = crop_padding(self.codec.synthesize(y_hat), padding)
                    out["image_mse"] = nn.functional.mse_loss(x_hat, images)
            out["teacher"], teacher_tokens = self.teacher(images)
            out["pixels"] = torch.tensor(images.shape[-2] * images.shape[-1])
        else:
            y_hat, out["bits"], out["teacher"] = batch["y_hat"], batch["bits"], batch["teacher"]
            teacher_tokens = batch.get("teacher_tokens")
            out["pixels"] = batch["pixels"][0]
        out["student"], student_tokens = self.finish(self.neck(y_hat, level), self.entry_layer)
        if student_tokens is not None and teacher_tokens is not None:
            out["token_mse"] = nn.functional.mse_loss(student_tokens, teacher_tokens)
        return out

    def coding_at(self, level: Tensor | None) -> contextlib.AbstractContextManager[Any]:
        """The codec at the batch's one rate level inside the block (unchanged when ``level`` is None)."""
        if level is None:
            return contextlib.nullcontext()
        values = sorted(set(level.tolist()))
        if len(values) != 1:
            shown = ", ".join(f"{value:g}" for value in values)
            raise NeckkitError(f"a batch of images is coded at one rate level, this one has levels {shown}")
        return at_level(self.codec, values[0])

    def cache_fields(self, images: Tensor, levels: Sequence[float] | None = None) -> dict[str, Tensor]:
        """What the d1 cache stores per crop (the codec and the encoder are frozen); with ``levels``, the
        latent and bits at each (``y_hat_l<k>``, ``bits_l<k>``) and the teacher once."""
        fields: dict[str, Tensor] = {}
        if levels is None:
            fields["y_hat"], fields["bits"], _ = self.analyze(images)
        for index, level in enumerate(levels or ()):
            with at_level(self.codec, level):
                fields[level_field("y_hat", index)], fields[level_field("bits", index)], _ = self.analyze(images)
        teacher, tokens = self.teacher(images)
        fields["teacher"] = teacher
        fields["pixels"] = torch.full((images.shape[0],), images.shape[-2] * images.shape[-1], dtype=torch.int64)
        if tokens is not None:
            fields["teacher_tokens"] = tokens
        return fields
