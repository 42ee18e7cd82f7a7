"""CompressAI zoo models by quality, behind neckkit's CompressAI adapter.

:func:`build_compressai` is the factory of any zoo model the adapter supports (``mbt2018``,
``cheng2020-attn``, ...; a plugin gets it through ``neckkit.plugin_api.compressai_factory``);
:func:`build_zoo` is the built-ins' (``bmshj2018-hyperprior``, ``mbt2018-mean``, ``cheng2020-anchor``);
:func:`wrap_compressai_model` picks the adapter family for any supported CompressAI model.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from compressai.models import (
    Cheng2020Anchor,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from compressai.models.base import SimpleVAECompressionModel
from torch import Tensor, nn

from neckkit.plugin_api import NeckkitError, load_codec_state, read_state_dict, read_weights
from neckkit.plugins.codecs import ZOO as BUILTIN_ZOO
from neckkit.plugins.codecs.autoregressive import AutoregressiveCodec
from neckkit.plugins.codecs.compressai_base import CompressAICodec
from neckkit.plugins.codecs.hyperprior import MeanScaleHyperpriorCodec, ScaleHyperpriorCodec
from neckkit.plugins.codecs.latent_codec import LatentCodecCodec

__all__ = [
    "TINY_ZOO",
    "ZOO_MODELS",
    "build_compressai",
    "build_zoo",
    "wrap_compressai_model",
    "zoo_architecture",
    "zoo_checkpoint",
]

ZOO_MODELS = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    "cheng2020-anchor": Cheng2020Anchor,
}
TINY_ZOO = {name: sizes for name, (_, _, sizes) in BUILTIN_ZOO.items()}
# The CompressAI families the adapter codes exactly (wrap_compressai_model's branches).
ADAPTED = (JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, ScaleHyperprior, SimpleVAECompressionModel)
ZOO_METRIC = "mse"
DOWNLOAD_TIMEOUT_S = 20.0


def wrap_compressai_model(model: nn.Module, name: str | None = None) -> CompressAICodec:
    """The neckkit adapter for a CompressAI model (picks the family; tables are built here)."""
    if isinstance(model, JointAutoregressiveHierarchicalPriors):
        return AutoregressiveCodec(model, name)
    if isinstance(model, MeanScaleHyperprior):
        return MeanScaleHyperpriorCodec(model, name)
    if isinstance(model, ScaleHyperprior):
        return ScaleHyperpriorCodec(model, name)
    if isinstance(model, SimpleVAECompressionModel):
        return LatentCodecCodec(model, name)
    raise NeckkitError(f"no neckkit adapter for CompressAI model {type(model).__name__}")


def _zoo_tables() -> tuple[dict[str, Any], dict[str, Any]]:
    from compressai.zoo.image import cfgs, model_urls

    return cfgs, model_urls


def zoo_architecture(model: str) -> type[nn.Module]:
    """The CompressAI class of zoo ``model``, if it has pretrained weights and an adapter; else one line."""
    from compressai.zoo.image import model_architectures

    cfgs, model_urls = _zoo_tables()
    supported = [
        name
        for name, architecture in model_architectures.items()
        if name in cfgs and name in model_urls and issubclass(architecture, ADAPTED)
    ]
    if model not in supported:
        raise NeckkitError(
            f"unknown CompressAI zoo model {model!r} for neckkit's adapter; choose one of {', '.join(supported)}"
        )
    return model_architectures[model]  # type: ignore[no-any-return]


def _zoo_qualities(model: str) -> list[int]:
    cfgs, _ = _zoo_tables()
    return sorted(cfgs[model])


def zoo_checkpoint(model: str, quality: int) -> tuple[str, Path]:
    """(URL, file in the torch hub cache) of CompressAI's pretrained ``model`` at ``quality``."""
    _, model_urls = _zoo_tables()
    url = model_urls[model][ZOO_METRIC][quality]
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(url: str, destination: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``destination`` atomically (a partial download never stays in the cache)."""
    from neckkit.files import atomic_path

    with atomic_path(destination) as partial, open(partial, "wb") as out:  # the cache file honours the umask
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)


def _load_zoo_state(model: str, quality: int) -> tuple[dict[str, Tensor], str]:
    from neckkit.loading.downloads import offline_reason

    url, cached = zoo_checkpoint(model, quality)
    if not cached.is_file():
        reason = offline_reason()
        if reason is not None:
            raise NeckkitError(
                f"CompressAI weights for {model} quality {quality} are not cached and neckkit downloads nothing "
                f"now ({reason}): fetch {url} into {cached.parent}/ or pass --codec-weights FILE"
            )
        try:
            _download(url, cached)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise NeckkitError(
                f"CompressAI weights for {model} quality {quality} are not cached and could not be downloaded "
                f"({reason}): fetch {url} into {cached.parent}/ or pass --codec-weights FILE"
            ) from None
    return read_state_dict(read_weights(cached), source=str(cached)), str(cached)


def _zoo_sizes(model: str, state: Mapping[str, Tensor], source: str) -> tuple[int, ...]:
    """(N, M) or (N,) of a zoo architecture, read from a state dict as CompressAI's from_state_dict does."""
    one_size = issubclass(zoo_architecture(model), Cheng2020Anchor)  # cheng2020-*: N only (M = N)
    keys = ("g_a.0.conv1.weight",) if one_size else ("g_a.0.weight", "g_a.6.weight")
    missing = [key for key in keys if key not in state]
    if missing:
        raise NeckkitError(f"{source} does not look like a {model} checkpoint: missing {', '.join(missing)}")
    return tuple(int(state[key].size(0)) for key in keys)


def build_zoo(
    model: str,
    quality: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    random_init: bool = False,
) -> CompressAICodec:
    """A built-in CompressAI zoo codec: ``bmshj2018-hyperprior``, ``mbt2018-mean`` or ``cheng2020-anchor``.

    :func:`build_compressai` with the built-in's tiny sizes (:data:`TINY_ZOO`).
    """
    if model not in ZOO_MODELS:
        raise NeckkitError(f"unknown CompressAI model {model!r}; choose one of {', '.join(ZOO_MODELS)}")
    return build_compressai(model, TINY_ZOO[model], quality, weights, tiny, random_init)


def build_compressai(
    model: str,
    tiny_sizes: Sequence[int],
    quality: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    random_init: bool = False,
) -> CompressAICodec:
    """CompressAI zoo ``model`` (e.g. ``mbt2018``) behind neckkit's adapter (:func:`wrap_compressai_model`).

    ``quality``: CompressAI's pretrained MSE weights (from the torch hub cache, downloaded there if
    missing and reachable; else one line naming the URL). ``weights``: a state-dict file instead (sizes
    read from it; with ``quality`` too, it must fit that quality's sizes). ``tiny``: ``tiny_sizes``
    ((N, M), or (N,) for cheng2020), random init, or the ``weights`` file loaded into them.
    ``random_init``: the real architecture of ``quality`` (default: the highest quality, i.e. the
    largest N/M) with random weights (neckkit seeds every build: ``seeded_init(seed)``).
    """
    architecture = zoo_architecture(model)
    qualities = _zoo_qualities(model)
    if quality is not None and quality not in qualities:
        raise NeckkitError(f"{model} has no quality {quality!r}; valid qualities: {', '.join(map(str, qualities))}")
    if weights is not None and random_init:
        raise NeckkitError("pass either weights or random_init, not both")
    cfgs, _ = _zoo_tables()
    if len(tiny_sizes) != len(cfgs[model][qualities[-1]]):
        expected = "(N, M)" if len(cfgs[model][qualities[-1]]) == 2 else "(N,)"
        raise NeckkitError(f"{model}'s tiny_sizes are {expected}, got {tuple(tiny_sizes)}")
    name = model + ("-tiny" if tiny else "")

    if tiny or random_init:
        sizes = tuple(tiny_sizes) if tiny else cfgs[model][quality if quality is not None else qualities[-1]]
        network = architecture(*sizes)
        if weights is not None:  # tiny + weights: a tiny model trained elsewhere
            _load_zoo_file(network, weights)
        return wrap_compressai_model(network, name)

    if weights is not None:
        state, source = _read_zoo_file(weights)
        sizes = cfgs[model][quality] if quality is not None else _zoo_sizes(model, state, source)
    elif quality is not None:
        state, source = _load_zoo_state(model, quality)
        state = _rename_zoo_keys(state)
        sizes = cfgs[model][quality]
    else:
        raise NeckkitError(
            f"{model} needs quality (CompressAI's pretrained weights, {qualities[0]}-{qualities[-1]}), "
            "weights=<file>, tiny=True or random_init=True"
        )
    network = architecture(*sizes)
    load_codec_state(network, state, source)
    return wrap_compressai_model(network, f"{model}-q{quality}" if quality is not None else name)


def _rename_zoo_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(dict(state))  # older zoo names: 'downsample' -> 'skip', EB lists -> legacy


def _read_zoo_file(weights: str | os.PathLike[str]) -> tuple[dict[str, Tensor], str]:
    source = str(weights)
    return _rename_zoo_keys(read_state_dict(weights, source=source)), source


def _load_zoo_file(network: nn.Module, weights: str | os.PathLike[str]) -> None:
    state, source = _read_zoo_file(weights)
    load_codec_state(network, state, source)
