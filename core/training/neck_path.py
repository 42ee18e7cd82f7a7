"""The machine path being trained: codec analysis -> neck -> encoder from ``entry_layer`` -> embedding.

The teacher is the frozen full encoder on the uncompressed crop. One module holds codec, neck and
encoder so DistributedDataParallel sees every trainable parameter (the neck, plus the codec in the
joint phase of d2/d3). Batches are dicts: ``images`` [B, 3, S, S] in [0, 1], or, from the d1 cache,
``y_hat`` [B, C, h, w], ``teacher`` [B, D], ``bits`` [B] (and ``teacher_tokens`` [B, T, W]).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from neckkit.bitstream.padding import crop_padding, pad_to_multiple
from neckkit.interfaces import Codec, VisualEncoder
from neckkit.neck.transform import TransformNeck


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
        if "images" in batch:
            images = batch["images"]
            y_hat, out["bits"], padding = self.analyze(images)
            out["teacher"], teacher_tokens = self.teacher(images)
            if with_image:
                out["image_mse"] = nn.functional.mse_loss(crop_padding(self.codec.synthesize(y_hat), padding), images)
            out["pixels"] = torch.tensor(images.shape[-2] * images.shape[-1])
        else:
            y_hat, out["bits"], out["teacher"] = batch["y_hat"], batch["bits"], batch["teacher"]
            teacher_tokens = batch.get("teacher_tokens")
            out["pixels"] = batch["pixels"][0]
        out["student"], student_tokens = self.finish(self.neck(y_hat), self.entry_layer)
        if student_tokens is not None and teacher_tokens is not None:
            out["token_mse"] = nn.functional.mse_loss(student_tokens, teacher_tokens)
        return out

    def cache_fields(self, images: Tensor) -> dict[str, Tensor]:
        """What the d1 cache stores per crop (the codec and the encoder are frozen)."""
        y_hat, bits, _ = self.analyze(images)
        teacher, tokens = self.teacher(images)
        fields = {"y_hat": y_hat, "bits": bits, "teacher": teacher}
        fields["pixels"] = torch.full((images.shape[0],), images.shape[-2] * images.shape[-1], dtype=torch.int64)
        if tokens is not None:
            fields["teacher_tokens"] = tokens
        return fields
