"""The stable API for neckkit plugin authors: import everything a plugin needs from here.

A codec plugin is its model plus one ``register`` call::

    from neckkit.plugin_api import Codec, hookimpl, lazy_factory

    @hookimpl
    def register_codecs(register):
        register("my-codec", lazy_factory("my_plugin.codec:build"), description="...", tiny=True)

and a CompressAI zoo model is the ``register`` call alone, on neckkit's CompressAI adapter::

    register("mbt2018", compressai_factory("mbt2018", tiny_sizes=(16, 32)), description="...",
             tiny=True, tiny_weights=True, qualities=tuple(range(1, 9)), options=COMPRESSAI_OPTIONS)

Names listed in :data:`__all__` stay importable from here across neckkit releases (the modules
behind them may move; see docs/writing-a-plugin.md, "The plugin API"). Names that need torch
(the interfaces, weight and preprocessing helpers) load on first use (PEP 562), so a plugin
module importing this one at listing time stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError, PluginError
from neckkit.host.factories import lazy_factory
from neckkit.host.hookspecs import hookimpl
from neckkit.host.registry import RegisterCallback

if TYPE_CHECKING:
    from torch import Tensor, nn

    from neckkit.bitstream.decoding import decode_latent
    from neckkit.bitstream.padding import pad_to_multiple
    from neckkit.bitstream.rans import BoundedRansDecoder
    from neckkit.host.factories import random_weights
    from neckkit.host.testing import host_for_tests
    from neckkit.interfaces import (
        MLLM,
        Analysis,
        Codec,
        ImageCodec,
        LatentPayload,
        VariableRateCodec,
        VisualEncoder,
        at_level,
        estimated_bits,
    )
    from neckkit.interfaces.preprocess import (
        OPENAI_MEAN,
        OPENAI_STD,
        normalize,
        resize_center_crop,
        resize_center_crop_normalize,
        resize_square,
        resize_square_normalize,
    )
    from neckkit.loading.codec_weights import CODER_TABLES, load_codec_state
    from neckkit.loading.codec_weights import read_checkpoint as read_weights
    from neckkit.loading.hub import WeightsSource, Wording, hub_offline
    from neckkit.loading.shards import read_submodule_tensors
    from neckkit.loading.weights import fingerprint, seeded_init, state_dict_mismatches
    from neckkit.plugins.codecs.compressai_base import CompressAICodec
    from neckkit.plugins.codecs.compressai_registration import COMPRESSAI_OPTIONS, compressai_factory
    from neckkit.plugins.codecs.zoo import wrap_compressai_model
    from neckkit.plugins.mllms.tokenizer import byte_level_tokenizer
    from neckkit.samples import SAMPLE_DIR, sample_images

# public name -> (module, attribute there), imported on first access.
_LAZY: dict[str, tuple[str, str]] = {
    # the component interfaces
    "Codec": ("neckkit.interfaces.codec", "Codec"),
    "ImageCodec": ("neckkit.interfaces.image_codec", "ImageCodec"),
    "Analysis": ("neckkit.interfaces.codec", "Analysis"),
    "LatentPayload": ("neckkit.interfaces.codec", "LatentPayload"),
    "VariableRateCodec": ("neckkit.interfaces.codec", "VariableRateCodec"),
    "at_level": ("neckkit.interfaces.codec", "at_level"),
    "estimated_bits": ("neckkit.interfaces.codec", "estimated_bits"),
    "VisualEncoder": ("neckkit.interfaces.encoder", "VisualEncoder"),
    "MLLM": ("neckkit.interfaces.mllm", "MLLM"),
    # weights
    "read_weights": ("neckkit.loading.codec_weights", "read_checkpoint"),
    "load_codec_state": ("neckkit.loading.codec_weights", "load_codec_state"),
    "CODER_TABLES": ("neckkit.loading.codec_weights", "CODER_TABLES"),
    "state_dict_mismatches": ("neckkit.loading.weights", "state_dict_mismatches"),
    "fingerprint": ("neckkit.loading.weights", "fingerprint"),
    "seeded_init": ("neckkit.loading.weights", "seeded_init"),
    "random_weights": ("neckkit.host.factories", "random_weights"),
    "WeightsSource": ("neckkit.loading.hub", "WeightsSource"),
    "Wording": ("neckkit.loading.hub", "Wording"),
    "hub_offline": ("neckkit.loading.hub", "hub_offline"),
    "read_submodule_tensors": ("neckkit.loading.shards", "read_submodule_tensors"),
    # CompressAI codecs: the adapter, and a zoo model's factory and options (these two import no torch)
    "CompressAICodec": ("neckkit.plugins.codecs.compressai_base", "CompressAICodec"),
    "wrap_compressai_model": ("neckkit.plugins.codecs.zoo", "wrap_compressai_model"),
    "compressai_factory": ("neckkit.plugins.codecs.compressai_registration", "compressai_factory"),
    "COMPRESSAI_OPTIONS": ("neckkit.plugins.codecs.compressai_registration", "COMPRESSAI_OPTIONS"),
    # MLLMs
    "byte_level_tokenizer": ("neckkit.plugins.mllms.tokenizer", "byte_level_tokenizer"),
    # tests
    "host_for_tests": ("neckkit.host.testing", "host_for_tests"),
    # images
    "OPENAI_MEAN": ("neckkit.interfaces.preprocess", "OPENAI_MEAN"),
    "OPENAI_STD": ("neckkit.interfaces.preprocess", "OPENAI_STD"),
    "normalize": ("neckkit.interfaces.preprocess", "normalize"),
    "resize_center_crop": ("neckkit.interfaces.preprocess", "resize_center_crop"),
    "resize_center_crop_normalize": ("neckkit.interfaces.preprocess", "resize_center_crop_normalize"),
    "resize_square": ("neckkit.interfaces.preprocess", "resize_square"),
    "resize_square_normalize": ("neckkit.interfaces.preprocess", "resize_square_normalize"),
    "pad_to_multiple": ("neckkit.bitstream.padding", "pad_to_multiple"),
    # untrusted bitstreams
    "BoundedRansDecoder": ("neckkit.bitstream.rans", "BoundedRansDecoder"),
    "decode_latent": ("neckkit.bitstream.decoding", "decode_latent"),
    "SAMPLE_DIR": ("neckkit.samples", "SAMPLE_DIR"),
    "sample_images": ("neckkit.samples", "sample_images"),
}


def read_state_dict(weights: str | Path | Mapping[str, Any], source: str | None = None) -> dict[str, Tensor]:
    """The tensors of a weights file (or of an already loaded checkpoint), with clean keys.

    The file is read with ``torch.load(weights_only=True)`` (:func:`read_weights`); a wrapper
    (``{"state_dict": ...}``, ``{"model": ...}``, ``{"net": ...}``) is unwrapped and DataParallel's
    ``module.`` prefixes are stripped. Anything else is one :class:`NeckkitError` line.
    """
    from neckkit.loading.codec_weights import extract_state_dict, read_checkpoint

    if isinstance(weights, Mapping):
        return extract_state_dict(weights, source=source or "checkpoint")
    return extract_state_dict(read_checkpoint(weights), source=source or str(weights))


def load_state_dict(
    model: nn.Module,
    weights: str | Path | Mapping[str, Any],
    source: str | None = None,
    skip: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load a weights file (or state dict) into ``model`` strictly, or raise one line saying why not.

    Keys are cleaned as :func:`read_state_dict` does; a missing, unexpected or wrongly shaped
    tensor is ``NeckkitError("<source> does not fit <Model>: missing a, b; wrong shape c ...")``
    (:func:`state_dict_mismatches`). Keys for which ``skip`` is true may be absent or of any
    shape; absent ones keep the model's values. For CompressAI-style codecs, whose entropy tables
    depend on the weights, use :func:`load_codec_state` instead.
    """
    from neckkit.loading.weights import state_dict_mismatches

    where = source or (str(weights) if not isinstance(weights, Mapping) else "state dict")
    state = read_state_dict(weights, source=where)
    expected = model.state_dict()
    problems = state_dict_mismatches(expected, state, skip=skip)
    if problems:
        raise NeckkitError(f"{where} does not fit {type(model).__name__}: {'; '.join(problems)}")
    fitting = {key: value for key, value in state.items() if value.shape == expected[key].shape}
    model.load_state_dict(fitting, strict=False)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'neckkit.plugin_api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CODER_TABLES",
    "COMPRESSAI_OPTIONS",
    "MLLM",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "SAMPLE_DIR",
    "Analysis",
    "BoundedRansDecoder",
    "Codec",
    "CompressAICodec",
    "ImageCodec",
    "LatentPayload",
    "NeckkitError",
    "PluginError",
    "RegisterCallback",
    "VariableRateCodec",
    "VisualEncoder",
    "WeightsSource",
    "Wording",
    "at_level",
    "byte_level_tokenizer",
    "compressai_factory",
    "decode_latent",
    "estimated_bits",
    "fingerprint",
    "hookimpl",
    "host_for_tests",
    "hub_offline",
    "lazy_factory",
    "load_codec_state",
    "load_state_dict",
    "normalize",
    "pad_to_multiple",
    "random_weights",
    "read_state_dict",
    "read_submodule_tensors",
    "read_weights",
    "resize_center_crop",
    "resize_center_crop_normalize",
    "resize_square",
    "resize_square_normalize",
    "sample_images",
    "seeded_init",
    "state_dict_mismatches",
    "wrap_compressai_model",
]
