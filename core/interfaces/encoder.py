"""The visual-encoder interface: a ViT that can be entered at any block."""

from __future__ import annotations

import abc

from torch import Tensor, nn

from neckkit.errors import NeckkitError

Grid = tuple[int, int]  # (gh, gw): patch tokens per column and per row
Box = tuple[float, float, float, float]  # (top, left, height, width) in an image's pixels


class VisualEncoder(nn.Module, metaclass=abc.ABCMeta):
    """A vision transformer split into stem, blocks and head.

    The neck replaces ``embed`` and blocks ``[0, entry_layer)``; its tokens enter
    ``blocks(tokens, entry_layer, num_layers)``. Invariant (tested for every encoder):
    ``head(blocks(embed(p), 0, num_layers))`` equals the library's own forward.

    Square encoders (CLIP, EVA, BLIP-2) see every image as one ``grid x grid`` token square. A
    **native-resolution** encoder (``native_resolution = True``: Qwen3-VL, Qwen2.5-VL) gives an image
    the token grid of its own size and aspect ratio (:meth:`token_grid`); its ``blocks``, ``head`` and
    ``encode_from`` then take that grid as the keyword ``grid=(gh, gw)``, and tokens are
    ``[B, gh*gw, width]`` in raster order. Core code calls them through :meth:`run_blocks` and
    :meth:`finish_from`, which pass the grid only to native-resolution encoders, so square encoders
    written before it keep their signatures.
    """

    width: int  # token dimension
    embed_dim: int  # size of head()'s image embedding (and of encode_text's text embeddings)
    grid: int  # patch tokens per side
    image_size: int  # input side in pixels after preprocess
    num_layers: int  # transformer blocks
    entry_layer: int = 2  # block index where neck tokens enter, 0..num_layers (paper: 2)
    has_class_token: bool = True
    native_resolution: bool = False  # True: the token grid follows each image's size (see the class docstring)

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

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The pixel size ``geometric_preprocess`` gives a ``height x width`` image: ``(image_size, image_size)``
        for square encoders; a native-resolution encoder's own resize rule (Qwen: multiples of 32)."""
        return self.image_size, self.image_size

    def token_grid(self, height: int, width: int) -> Grid:
        """The patch-token grid ``(gh, gw)`` of a ``height x width`` image: ``(grid, grid)`` for square encoders."""
        return self.grid, self.grid

    def view_box(self, height: int, width: int) -> Box:
        """The region of a ``height x width`` image that ``geometric_preprocess`` shows, as
        ``(top, left, height, width)`` in its pixels. The default is the centre square (CLIP's short side and
        centre crop); encoders that squash or keep the whole image (BLIP-2, native resolution) return the
        whole image. The neck path crops a latent to this box, so it sees what the baseline sees."""
        side = min(height, width)
        return (height - side) / 2, (width - side) / 2, side, side

    def run_blocks(self, tokens: Tensor, start: int, end: int, grid: Grid | None = None) -> Tensor:
        """:meth:`blocks`, with ``grid`` passed on only to a native-resolution encoder."""
        if self.native_resolution:
            return self.blocks(tokens, start, end, grid=self._need_grid(grid))  # type: ignore[call-arg]
        return self.blocks(tokens, start, end)

    def finish_from(self, tokens: Tensor, start: int, grid: Grid | None = None) -> Tensor:
        """:meth:`encode_from`, with ``grid`` passed on only to a native-resolution encoder."""
        if self.native_resolution:
            return self.encode_from(tokens, start, grid=self._need_grid(grid))  # type: ignore[call-arg]
        return self.encode_from(tokens, start)

    def _need_grid(self, grid: Grid | None) -> Grid:
        if grid is None:
            raise NeckkitError(f"{type(self).__name__} reads images at native resolution: pass the token grid (gh, gw)")
        return int(grid[0]), int(grid[1])

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
