"""What every CompressAI adapter shares: the :class:`CompressAICodec` base and straight-through quantisation.

Every adapter keeps the CompressAI model as ``.model`` and guarantees what the neck relies on:
``analyze(x).y_hat`` is *bitwise* the tensor ``decompress_latent(compress(x))`` returns (on the same
device, for the same batch), yet differentiable by straight-through rounding. CompressAI's own
``forward()`` does not always give the decoder's ``y_hat``, so each family (``hyperprior``,
``autoregressive``, ``latent_codec``) re-runs the coder's own arithmetic without entropy coding, with
the helpers here: ``z_hat = round(z - median) + median``; values come from the exact tensors, gradients
pass straight through (``y_hat = exact + (y - y.detach())``). Likelihoods (``{"y", "z"}``) use the
coder's own scales and means; in ``eval()`` mode they are evaluated at the quantised values, in
``train()`` mode at ``y + uniform noise`` as CompressAI's training forward does.

Entropy-coder tables are rebuilt automatically: after construction and loading, and lazily before coding
whenever the entropy bottleneck's parameters changed (their in-place version counters moved, e.g. after an
optimiser step or ``load_state_dict``). Images must be multiples of :attr:`pad_multiple` = 64 pixels (the
hyperprior's total stride; callers pad with :func:`neckkit.plugin_api.pad_to_multiple`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from neckkit.loading.codec_weights import REBUILT, mark_entropy_tables, stored_tables_current
from neckkit.plugin_api import CODER_TABLES, Analysis, Codec, LatentPayload, NeckkitError
from neckkit.plugins.codecs.cached_tables import cache_decoding_tables

__all__ = [
    "HYPER_STRIDE",
    "PAD_MULTIPLE",
    "CompressAICodec",
    "bottleneck_likelihood",
    "gaussian_likelihood",
    "quantize_hyper",
    "round_around",
    "straight_through",
]

PAD_MULTIPLE = 64  # g_a (x16) then h_a (x4): y must be a multiple of 4 so h_s(z_hat) matches it
HYPER_STRIDE = 4  # latent cells per hyper-latent cell


def straight_through(exact: Tensor, x: Tensor) -> Tensor:
    """``exact``'s values bit for bit, with the gradient of the identity w.r.t. ``x``."""
    return exact.detach() + (x - x.detach())


def round_around(x: Tensor, means: Tensor | None) -> Tensor:
    """``round(x - means) + means`` as the entropy coder's quantise/dequantise computes it."""
    x = x.detach()
    if means is None:
        return torch.round(x)
    means = means.detach()
    return torch.round(x - means) + means


def gaussian_likelihood(
    gc: GaussianConditional, y: Tensor, y_hat: Tensor, scales: Tensor, means: Tensor | None
) -> Tensor:
    values = y + torch.empty_like(y).uniform_(-0.5, 0.5) if gc.training else y_hat
    likelihood = gc._likelihood(values, scales, means)
    if gc.use_likelihood_bound:
        likelihood = gc.likelihood_lower_bound(likelihood)
    return likelihood


def bottleneck_likelihood(eb: EntropyBottleneck, values: Tensor) -> Tensor:
    """The factorised likelihood of [B, C, H, W] ``values`` (with gradients to them and to ``eb``)."""
    per_channel = values.transpose(0, 1).contiguous()
    shape = per_channel.shape
    likelihood, _, _ = eb._likelihood(per_channel.reshape(shape[0], 1, -1))
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    return likelihood.reshape(shape).transpose(0, 1).contiguous()


def quantize_hyper(eb: EntropyBottleneck, z: Tensor) -> tuple[Tensor, Tensor]:
    """``z_hat`` exactly as ``eb.decompress(eb.compress(z))``, straight-through, and its likelihood."""
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
    z_hat = straight_through(round_around(z, medians), z)
    values = z + torch.empty_like(z).uniform_(-0.5, 0.5) if eb.training else z_hat
    return z_hat, bottleneck_likelihood(eb, values)


class CompressAICodec(Codec):
    """A CompressAI model as a neckkit codec (base class; use :func:`wrap_compressai_model`).

    ``stride`` 16 and ``pad_multiple`` 64 hold for every supported family; ``latent_channels`` is the
    model's ``M``. ``analyze`` is exact w.r.t. the coder only for images coded in the same batch on the
    same device (convolutions may round differently for other batch sizes or devices).
    """

    stride = 16
    pad_multiple = PAD_MULTIPLE

    def __init__(self, model: nn.Module, name: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.name = name or type(model).__name__
        cache_decoding_tables(model)  # decode without converting the CDF table on every call
        self.latent_channels = self._latent_channels()
        self._tables_stamp: tuple[Any, ...] | None = None
        self.register_load_state_dict_pre_hook(_resize_coder_tables)
        self.register_load_state_dict_post_hook(_forget_tables)
        model.eval()
        if stored_tables_current(model):  # a file's own tables (load_codec_state): code with them as they are
            self._tables_stamp = self._stamp()
        else:
            self.update_entropy_tables()

    # --- entropy tables -------------------------------------------------------------------------

    def _entropy_modules(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, EntropyBottleneck | GaussianConditional)]

    def _stamp(self) -> tuple[Any, ...]:
        bottlenecks = [m for m in self.model.modules() if isinstance(m, EntropyBottleneck)]
        return tuple((id(p), p._version, p.device) for eb in bottlenecks for p in eb.parameters())

    def update_entropy_tables(self) -> None:
        """Rebuild every CDF table from the current weights (CompressAI's ``update(force=True)``)."""
        self.model.update(force=True)
        mark_entropy_tables(self.model, REBUILT)
        self._tables_stamp = self._stamp()

    def _ensure_tables(self) -> None:
        missing = any(m._offset.numel() == 0 for m in self._entropy_modules())
        if not missing and stored_tables_current(self.model):  # loaded tables for these very weights
            self._tables_stamp = self._stamp()
        elif missing or self._stamp() != self._tables_stamp:
            self.update_entropy_tables()

    # --- shapes ---------------------------------------------------------------------------------

    def _latent_channels(self) -> int:
        return int(self.model.M)

    def payload_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The hyper-latent's (h, w): the padded image divided by 64."""
        return (height // PAD_MULTIPLE, width // PAD_MULTIPLE)

    # --- the Codec interface ----------------------------------------------------------------------

    def analyze(self, x: Tensor) -> Analysis:
        self.check_input(x)
        y = self.model.g_a(x)
        y_hat, likelihoods = self._analyze_latent(y)
        return Analysis(y_hat=y_hat, likelihoods=likelihoods, latents={"y": y})

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.model.g_s(y_hat).clamp(0, 1)

    def synthesis_modules(self) -> list[nn.Module]:
        return [self.model.g_s]

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        """CompressAI's ``compress``; with ``analysis`` (of this ``x``), its ``y`` is coded as it is."""
        self.check_input(x)
        self._ensure_tables()
        y = analysis.latent_for("y", x) if analysis is not None else None
        out = self._compress_y(y) if y is not None else None
        if out is None:
            out = self.model.compress(x)
        shape = out["shape"]["hyper"] if isinstance(out["shape"], Mapping) else out["shape"]
        strings = [list(stream) for stream in out["strings"]]
        return LatentPayload(strings=strings, shape=tuple(int(v) for v in shape))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        strings, shape = list(payload.strings), tuple(payload.shape)
        expected = self._stream_count()
        if len(strings) != expected or len(shape) != 2 or len({len(stream) for stream in strings}) != 1:
            raise NeckkitError(
                f"{self.name}: payload has {len(strings)} streams and shape {shape}, expected {expected} "
                "streams of equal batch size and a (height, width) hyper-latent shape"
            )
        self._ensure_tables()
        return self._decompress_latent(strings, shape)

    def _stream_count(self) -> int:
        return 2  # y, then z

    def _compress_y(self, y: Tensor) -> dict[str, Any] | None:
        """``model.compress`` after its ``y = g_a(x)``, for families that can code a given ``y`` (else None)."""
        return None

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        raise NotImplementedError


def _resize_coder_tables(module: CompressAICodec, state_dict: Mapping[str, Tensor], prefix: str, *args: Any) -> None:
    """Let ``load_state_dict`` accept coder tables of any size (they depend on the weights)."""
    for key, value in state_dict.items():
        if not key.startswith(prefix) or key.rsplit(".", 1)[-1] not in CODER_TABLES:
            continue
        owner, _, name = key[len(prefix) :].rpartition(".")
        try:
            target = module.get_submodule(owner)
        except AttributeError:
            continue
        buffer = target._buffers.get(name)
        if isinstance(buffer, Tensor) and isinstance(value, Tensor) and buffer.shape != value.shape:
            target._buffers[name] = torch.empty(value.shape, dtype=buffer.dtype, device=buffer.device)


def _forget_tables(module: CompressAICodec, incompatible: Any) -> None:
    module._tables_stamp = None  # loaded tables are checked and rebuilt before the next coding
