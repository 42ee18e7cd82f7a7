"""The codec interface: a neural image codec whose quantised latent a neck can read."""

from __future__ import annotations

import abc
import inspect
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import Tensor, nn

from neckkit.errors import NeckkitError


class _AnalysisFields(NamedTuple):
    y_hat: Tensor  # [B, latent_channels, H / stride, W / stride], what synthesize() consumes
    likelihoods: dict[str, Tensor]  # per entropy-coded tensor ("y", "z", ...), for the rate


class Analysis(_AnalysisFields):
    """What :meth:`Codec.analyze` returns: ``(y_hat, likelihoods)``, and optionally ``latents``.

    ``latents`` (not part of the tuple, so ``y_hat, likelihoods = analysis`` keeps working) holds
    the unquantised tensors the codec's :meth:`Codec.compress` would compute again (e.g. ``y`` and
    ``z``), so ``compress(x, analysis=analyze(x))`` runs the analysis transform once per image.
    """

    latents: Mapping[str, Tensor] = MappingProxyType({})

    def __new__(cls, y_hat: Tensor, likelihoods: dict[str, Tensor],
                latents: Mapping[str, Tensor] | None = None) -> Analysis:
        self = super().__new__(cls, y_hat, likelihoods)
        if latents:
            self.latents = MappingProxyType({name: tensor.detach() for name, tensor in latents.items()})
        return self

    def latent_for(self, name: str, x: Tensor) -> Tensor | None:
        """``latents[name]`` when this analysis can be of ``x`` (same batch size), else None."""
        latent = self.latents.get(name)
        return latent if latent is not None and latent.shape[0] == x.shape[0] else None


@dataclass(frozen=True)
class LatentPayload:
    """Entropy-coded byte strings and the shapes needed to decode them.

    ``strings[i][b]`` is stream ``i`` (e.g. y, then z) of batch item ``b``; ``shape`` is the
    codec-specific spatial shape its decoder starts from (e.g. the hyper-latent's ``(h, w)``).
    """

    strings: list[list[bytes]]
    shape: tuple[int, ...]

    @property
    def num_bytes(self) -> int:
        return sum(len(item) for stream in self.strings for item in stream)


def estimated_bits(likelihoods: dict[str, Tensor]) -> Tensor:
    """Rate estimate in bits, summed over all entropy-coded tensors and the batch."""
    total = torch.zeros(())
    for likelihood in likelihoods.values():
        total = total + (-torch.log2(likelihood)).sum()
    return total


class Codec(nn.Module, metaclass=abc.ABCMeta):
    """A learned image codec split where the transform-neck reads it.

    Subclasses set :attr:`latent_channels`, :attr:`stride` (pixels per latent cell) and
    :attr:`pad_multiple` (height and width must be multiples of it; callers pad).
    """

    latent_channels: int
    stride: int
    pad_multiple: int
    #: Whether every one of the ``latent_channels x H/stride x W/stride`` latent values is entropy-coded
    #: with the codec's CompressAI tables. Then a file's payload bytes bound the image size it can
    #: declare (:func:`neckkit.bitstream.decoding.check_plausible`); a codec that skips values sets False.
    codes_every_latent_value: bool = True

    def payload_shape(self, height: int, width: int) -> tuple[int, ...] | None:
        """``LatentPayload.shape`` for a padded ``height`` x ``width`` image, or None when it cannot be told.

        Decoders check an untrusted ``.nk`` header against it before decoding anything.
        """
        return None

    def check_input(self, x: Tensor) -> None:
        """Refuse anything but a [B, 3, H, W] batch whose sides are multiples of :attr:`pad_multiple`."""
        name = type(self).__name__
        if x.ndim != 4 or x.shape[1] != 3:
            raise NeckkitError(f"{name} codes [B, 3, H, W] images, got shape {list(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.pad_multiple or width % self.pad_multiple:
            raise NeckkitError(
                f"{name}: image size {height}x{width} is not a multiple of {self.pad_multiple}; "
                "pad it first (neckkit.bitstream.padding.pad_to_multiple)"
            )

    @abc.abstractmethod
    def analyze(self, x: Tensor) -> Analysis:
        """Quantised latent of ``x`` (in [0, 1], [B, 3, H, W]) and its likelihoods.

        ``y_hat`` must equal what :meth:`decompress_latent` returns for the same image and be
        differentiable (straight-through rounding) so scenarios d2/d3 can train the codec.
        """

    def synthesis_modules(self) -> list[nn.Module]:
        """The modules of the synthesis transform (decoder side), for training scenario d3.

        d3 trains the codec for machines only, so these are frozen and never run in training.
        """
        raise NeckkitError(
            f"{type(self).__name__} does not name its synthesis transform (Codec.synthesis_modules), "
            "which scenario d3 needs; train it with d1 or d2"
        )

    def update_entropy_tables(self) -> None:
        """Rebuild the entropy coder's tables from the current weights.

        Training (d2, d3) calls it before every save, so a checkpoint's tables are those of its
        weights. Default: every CompressAI entropy model inside the codec (``EntropyBottleneck``:
        ``update(force=True)``; ``GaussianConditional``: from its scale table); override it when
        tables live elsewhere. Tables the default cannot rebuild raise one line, and d2/d3 refuse
        such a codec before training.
        """
        from neckkit.loading.rebuild_tables import rebuild_entropy_models

        with torch.no_grad():
            rebuild_entropy_models(self)

    @abc.abstractmethod
    def synthesize(self, y_hat: Tensor) -> Tensor:
        """Reconstruct the image for human viewing: [B, C, h, w] -> [B, 3, H, W] in [0, 1]."""

    @abc.abstractmethod
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        """Entropy-code ``x`` into real byte strings.

        ``analysis``, when given, is this codec's :meth:`analyze` of the same ``x``: a codec may code
        its ``latents`` instead of running the analysis transform again, and must give the same bytes
        either way. Codecs written before this parameter (``compress(self, x)``) still work: callers go
        through :func:`compress_with_analysis`, which passes it only to codecs that take it.
        """

    @abc.abstractmethod
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        """Entropy-decode ``y_hat`` from a payload, without running the synthesis transform."""


def takes_analysis(codec: Codec) -> bool:
    """Whether ``codec.compress`` accepts ``analysis=`` (codecs written before it do not)."""
    try:
        parameters = inspect.signature(codec.compress).parameters
    except (TypeError, ValueError):
        return False
    return "analysis" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def compress_with_analysis(codec: Codec, x: Tensor, analysis: Analysis | None) -> LatentPayload:
    """``codec.compress(x, analysis=analysis)``, or ``codec.compress(x)`` for a codec without the parameter."""
    if analysis is not None and takes_analysis(codec):
        return codec.compress(x, analysis=analysis)
    return codec.compress(x)


_LEVEL_LOCK = threading.RLock()  # at_level: one thread at a time moves any codec's level


class VariableRateCodec(Codec):
    """A codec with several rates in one model: level ``0`` (fewest bits) .. ``num_levels - 1`` (most).

    Subclasses set :attr:`num_levels` (and :attr:`continuous_levels` when a level between two trained
    ones is meaningful, e.g. by interpolating their gains) and read :attr:`level` in ``analyze``,
    ``compress`` and ``decompress_latent``. Callers never assign it: they code inside
    :func:`at_level`, which checks the level, sets it and puts the previous one back. A ``.nk`` file
    of such a codec records its level (``NkFile.level``) and every decoder codes at that level.
    """

    num_levels: int
    #: Whether a fractional level between two trained levels may be used (``--level 2.5``).
    continuous_levels: bool = False
    #: Optional names of the levels (e.g. the lambdas they were trained for), for listings.
    level_names: tuple[str, ...] = ()

    @property
    def default_level(self) -> int:
        """The level used when none is given: the highest (most bits, best quality)."""
        return self.num_levels - 1

    @property
    def level(self) -> float:
        """The level the codec codes at now (the default until :func:`at_level` sets one)."""
        return self.__dict__.get("_level", self.default_level)

    def check_level(self, level: float) -> int | float:
        """``level`` as this codec takes it (an int when whole), or one NeckkitError line saying why not."""
        name = getattr(self, "name", type(self).__name__)
        top = self.num_levels - 1
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
            raise NeckkitError(f"{name}: a rate level is a number in 0..{top}, got {level!r}")
        if not 0 <= level <= top:
            raise NeckkitError(f"{name} has rate levels 0..{top}; level {level:g} is outside them")
        if float(level).is_integer():
            return int(level)
        if not self.continuous_levels:
            raise NeckkitError(
                f"{name} codes at its trained levels 0..{top} only; {level:g} is between two of them"
            )
        return float(level)


def is_variable_rate(codec: object) -> bool:
    """Whether ``codec`` has rate levels (a :class:`VariableRateCodec`)."""
    return isinstance(codec, VariableRateCodec)


@contextmanager
def at_level(codec: Codec, level: float | None) -> Iterator[int | float | None]:
    """Code with ``codec`` at rate ``level`` inside the block; yields the level used (None: fixed-rate).

    ``level=None`` means the codec's :attr:`~VariableRateCodec.default_level` for a variable-rate
    codec and nothing for a fixed-rate one; a level given to a fixed-rate codec is refused in one line.
    The level is process state of the codec, so blocks on any codec are serialised by one lock.
    """
    if not isinstance(codec, VariableRateCodec):
        if level is not None:
            name = getattr(codec, "name", type(codec).__name__)
            raise NeckkitError(f"{name} is a fixed-rate codec: it has no rate levels (got level {level:g})")
        yield None
        return
    chosen = codec.default_level if level is None else codec.check_level(level)
    with _LEVEL_LOCK:
        before = codec.__dict__.get("_level")
        codec.__dict__["_level"] = chosen
        try:
            yield chosen
        finally:
            if before is None:
                codec.__dict__.pop("_level", None)
            else:
                codec.__dict__["_level"] = before
