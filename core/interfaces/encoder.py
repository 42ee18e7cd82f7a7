"""The visual-encoder interface: a ViT that can be entered at any block."""

from __future__ import annotations

import abc

from torch import Tensor, nn

from neckkit.errors import NeckkitError


class VisualEncoder(nn.Module, metaclass=abc.ABCMeta):
    """A vision transformer split into stem, blocks and head.

    The neck replaces ``embed`` and blocks ``[0, entry_layer)``; its tokens enter
    ``blocks(tokens, entry_layer, num_layers)``. Invariant (tested for every encoder):
    ``head(blocks(embed(p), 0, num_layers))`` equals the library's own forward.
    """

    width: int  # token dimension
    embed_dim: int  # size of head()'s image embedding (and of encode_text's text embeddings)
    grid: int  # patch tokens per side
    image_size: int  # input side in pixels after preprocess
    num_layers: int  # transformer blocks
    entry_layer: int = 2  # block index where neck tokens enter, 0..num_layers (paper: 2)
    has_class_token: bool = True

    @abc.abstractmethod
    def preprocess(self, x01: Tensor) -> Tensor:
        """The encoder's own resize, crop and normalisation: [B, 3, H, W] in [0, 1] -> pixels."""

    def geometric_preprocess(self, x01: Tensor) -> Tensor:
        """The region of the image the encoder sees, at its input size, still in [0, 1]: ``preprocess``'s
        resize and crop without the normalisation. [B, 3, H, W] -> [B, 3, image_size, image_size].

        What a device should compress so that the bit rate is measured on what the model reads (the
        benchmarks do: docs/evaluation.md). The default is CLIP's (short side to ``image_size``, centre
        crop); an encoder whose ``preprocess`` differs (BLIP-2 squashes the whole image) overrides it, so
        that ``preprocess(geometric_preprocess(x))`` equals ``preprocess(x)``.
        """
        from neckkit.interfaces.preprocess import resize_center_crop

        return resize_center_crop(x01, self.image_size, self.image_size)

    @abc.abstractmethod
    def embed(self, pixels: Tensor) -> Tensor:
        """Patch, class and position embedding plus pre-norm: -> [B, T, width]."""

    @abc.abstractmethod
    def blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        """Run blocks ``start .. end - 1``: [B, T, width] -> [B, T, width]."""

    @abc.abstractmethod
    def head(self, tokens: Tensor) -> Tensor:
        """Final image embedding from the last block's tokens: -> [B, embed_dim]."""

    def hidden_states(self, tokens: Tensor, start: int) -> tuple[Tensor | None, ...]:
        """Tokens entering each block, indexed like transformers' ``hidden_states``.

        Returns ``num_layers + 1`` entries: entry ``i`` is the input of block ``i`` (the last is
        the final block's output); entries before ``start`` are ``None`` because the neck path
        never computes them, so ``feature_layer=-2`` means the same as in the MLLM.
        """
        states: list[Tensor | None] = [None] * start + [tokens]
        for index in range(start, self.num_layers):
            tokens = self.blocks(tokens, index, index + 1)
            states.append(tokens)
        return tuple(states)

    def encode(self, pixels: Tensor) -> Tensor:
        """The full forward on preprocessed pixels: [B, 3, S, S] -> [B, embed_dim]."""
        return self.encode_from(self.embed(pixels), 0)

    def encode_from(self, tokens: Tensor, start: int) -> Tensor:
        """Finish the forward from tokens entering block ``start``."""
        return self.head(self.blocks(tokens, start, self.num_layers))

    def text_tower(self) -> nn.Module | None:
        """The module holding the text weights (text transformer and projection), if any."""
        return None

    @property
    def has_text_tower(self) -> bool:
        return self.text_tower() is not None

    def encode_text(self, texts: list[str]) -> Tensor:
        """Projected text embeddings [N, embed_dim], in the image embedding's space."""
        raise self._no_text_tower()

    def _no_text_tower(self) -> NeckkitError:
        return NeckkitError(f"{type(self).__name__} has no text tower: train its neck with distillation only")

    def text_classifier(self, class_names: list[str], templates: list[str]) -> Tensor:
        """Zero-shot classifier [embed_dim, num_classes] with unit-norm columns, for the CE loss.

        Computed once with :meth:`encode_text` and cached on disk, keyed by the text tower's
        weights fingerprint, the class names and the templates (``neckkit.training.zero_shot``).
        """
        tower = self.text_tower()
        if tower is None:
            raise self._no_text_tower()
        from neckkit.loading.weights import fingerprint
        from neckkit.training.zero_shot import cached_text_classifier

        if getattr(self, "_text_fingerprint", None) is None:  # text weights are frozen
            self._text_fingerprint = fingerprint(tower)
        return cached_text_classifier(self.encode_text, self._text_fingerprint, class_names, templates)
