"""The machine path being trained: codec analysis -> neck -> encoder from ``entry_layer`` -> embedding.

The teacher is the frozen full encoder on the uncompressed crop. One module holds codec, neck and
encoder so DistributedDataParallel sees every trainable parameter (the neck, plus the codec in the
joint phase of d2/d3). Batches are dicts: ``images`` [B, 3, S, S] in [0, 1], or, from the d1 cache,
``y_hat`` [B, C, h, w], ``teacher`` [B, D], ``bits`` [B] (and ``teacher_tokens`` [B, T, W]); with a
variable-rate codec also ``level`` [B] (float): the crops are coded at it (one level per batch of
images) and the neck is told it.

Native resolution (an encoder with ``native_resolution``, e.g. Qwen3-VL): the crops of one batch share
one shape (a bucket, ``neckkit.training.buckets``), the latent is cropped to the image (the codec's padding
dropped, :func:`~neckkit.neck.regions.latent_view`) and the neck, the encoder and the teacher all run on
that shape's token grid. The d1 cache then also stores ``image_size`` [B, 2] (H, W of each crop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neckkit.bitstream.padding import crop_padding, pad_to_multiple
from neckkit.errors import NeckkitError
from neckkit.interfaces import Codec, Grid, VisualEncoder, at_level
from neckkit.neck.regions import latent_view, token_grid_of
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

    def grid(self, image_size: Any) -> Grid | None:
        """The token grid of crops of ``image_size`` (H, W) for a native-resolution encoder, else None."""
        return token_grid_of(self.encoder, [int(value) for value in image_size])

    def view(self, y_hat: Tensor, image_size: Any, padding: Any) -> Tensor:
        """A native-resolution encoder's latent: the crops' own cells (padding dropped); others unchanged
        (their crops are the paper's squares, which the neck reads whole)."""
        if not self.encoder.native_resolution:
            return y_hat
        return latent_view(y_hat, [int(value) for value in image_size], padding, self.encoder)

    @torch.no_grad()
    def teacher(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The frozen encoder on the uncompressed crops: (embedding [B, D], tokens at token_layer)."""
        pixels = self.encoder.preprocess(images)
        return self.finish(self.encoder.embed(pixels), 0, self.grid(images.shape[-2:]))

    def finish(self, tokens: Tensor, start: int, grid: Grid | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the encoder from block ``start``: (embedding, tokens entering ``token_layer``)."""
        encoder, layer = self.encoder, self.token_layer
        if layer is None:
            return encoder.finish_from(tokens, start, grid), None
        at_layer = encoder.run_blocks(tokens, start, layer, grid)
        return encoder.finish_from(at_layer, layer, grid), at_layer

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
            image_size = images.shape[-2:]
            with self.coding_at(level):
                y_hat, out["bits"], padding = self.analyze(images)
                if with_image:
                    x_hat = crop_padding(self.codec.synthesize(y_hat), padding)
                    out["image_mse"] = nn.functional.mse_loss(x_hat, images)
            y_hat = self.view(y_hat, image_size, padding)
            out["teacher"], teacher_tokens = self.teacher(images)
            out["pixels"] = torch.tensor(images.shape[-2] * images.shape[-1])
        else:
            y_hat, out["bits"], out["teacher"] = batch["y_hat"], batch["bits"], batch["teacher"]
            teacher_tokens = batch.get("teacher_tokens")
            out["pixels"] = batch["pixels"][0]
            image_size = batch["image_size"][0].tolist() if "image_size" in batch else None
        grid = self.grid(image_size) if image_size is not None else None
        if self.encoder.native_resolution and grid is None:
            raise NeckkitError("a native-resolution encoder's cached rows need their image_size (rebuild the cache)")
        out["student"], student_tokens = self.finish(self.neck(y_hat, level, grid=grid), self.entry_layer, grid)
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
        size = images.shape[-2:]
        if levels is None:
            y_hat, fields["bits"], padding = self.analyze(images)
            fields["y_hat"] = self.view(y_hat, size, padding)
        for index, level in enumerate(levels or ()):
            with at_level(self.codec, level):
                y_hat, fields[level_field("bits", index)], padding = self.analyze(images)
                fields[level_field("y_hat", index)] = self.view(y_hat, size, padding)
        teacher, tokens = self.teacher(images)
        fields["teacher"] = teacher
        fields["pixels"] = torch.full((images.shape[0],), images.shape[-2] * images.shape[-1], dtype=torch.int64)
        if self.encoder.native_resolution:
            fields["image_size"] = torch.tensor([list(size)] * images.shape[0], dtype=torch.int64)  # [B, 2]
        if tokens is not None:
            fields["teacher_tokens"] = tokens
        return fields
