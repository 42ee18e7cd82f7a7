"""CompressAI's variable-rate zoo models (``compressai.zoo.image_vbr``) as neckkit codecs.

:func:`build_compressai_vbr` is the factory of ``bmshj2018-hyperprior-vbr``, ``mbt2018-mean-vbr`` and
``mbt2018-vbr``. The zoo has no quality index: one MSE file per model holds every level (its ``Gain``
vector), read from the torch hub cache (downloaded there when missing and allowed) or given as a file.
As CompressAI's zoo does, the two hyperprior models are built with the variable-rate hyper-latent
bottleneck (``vr_entbttlnck=True``); a weights file without ``gayn2zqstep`` builds the fixed one.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
from compressai.models import JointAutoregressiveHierarchicalPriorsVbr, MeanScaleHyperpriorVbr, ScaleHyperpriorVbr
from torch import Tensor, nn

from neckkit.plugin_api import NeckkitError, load_codec_state, read_state_dict
from neckkit.plugins.codecs.vbr_autoregressive import AutoregressiveVbrCodec
from neckkit.plugins.codecs.vbr_base import CompressAIVbrCodec
from neckkit.plugins.codecs.vbr_hyperprior import MeanScaleHyperpriorVbrCodec, ScaleHyperpriorVbrCodec

__all__ = ["TINY_VBR", "VBR_MODELS", "build_compressai_vbr", "vbr_checkpoint"]

# name: (CompressAI class, neckkit adapter, whether the zoo's hyper-latent bottleneck is variable-rate)
VBR_MODELS: dict[str, tuple[type[nn.Module], type[CompressAIVbrCodec], bool]] = {
    "bmshj2018-hyperprior-vbr": (ScaleHyperpriorVbr, ScaleHyperpriorVbrCodec, True),
    "mbt2018-mean-vbr": (MeanScaleHyperpriorVbr, MeanScaleHyperpriorVbrCodec, True),
    "mbt2018-vbr": (JointAutoregressiveHierarchicalPriorsVbr, AutoregressiveVbrCodec, False),
}
TINY_VBR = (16, 32)  # (N, M) of tiny=True
ZOO_METRIC = "mse"  # the only metric CompressAI publishes variable-rate weights for
_VARIABLE_BOTTLENECK_KEY = "gayn2zqstep.0.weight"
_DROPPED_KEYS = ("QuantOffset",)  # an old buffer CompressAI's from_state_dict drops too


def vbr_checkpoint(model: str) -> tuple[str, Path]:
    """(URL, file in the torch hub cache) of CompressAI's variable-rate ``model`` (all levels in one file)."""
    from compressai.zoo.image_vbr import model_urls

    url = model_urls[model][ZOO_METRIC]
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _zoo_file(model: str) -> Path:
    """The cached zoo file, downloaded first when allowed; one line naming the URL when it cannot be had."""
    from neckkit.loading.downloads import offline_reason
    from neckkit.plugins.codecs.zoo import _download

    url, cached = vbr_checkpoint(model)
    if cached.is_file():
        return cached
    reason = offline_reason()
    if reason is None:
        try:
            _download(url, cached)
            return cached
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = f"could not download it: {getattr(error, 'reason', error)}"
    raise NeckkitError(
        f"CompressAI's variable-rate weights for {model} are not cached ({reason}): fetch {url} into "
        f"{cached.parent}/ or pass --codec-weights FILE"
    )


def _read(weights: str | os.PathLike[str], source: str) -> dict[str, Tensor]:
    from compressai.zoo.pretrained import load_pretrained

    state = read_state_dict(weights, source=source)
    state = load_pretrained(state)  # older zoo names: 'downsample' -> 'skip', EB lists -> legacy
    return {key: value for key, value in state.items() if key not in _DROPPED_KEYS}


def _network(model: str, sizes: tuple[int, ...], variable_bottleneck: bool) -> nn.Module:
    architecture, _, zoo_variable = VBR_MODELS[model]
    if not zoo_variable:
        return architecture(*sizes)  # mbt2018-vbr: a fixed hyper-latent bottleneck only
    return architecture(*sizes, vr_entbttlnck=variable_bottleneck)


def build_compressai_vbr(
    model: str,
    weights: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    random_init: bool = False,
) -> CompressAIVbrCodec:
    """CompressAI's variable-rate ``model`` behind neckkit's adapter, every level in one codec.

    Default: CompressAI's pretrained MSE weights (torch hub cache; downloaded when missing and allowed,
    else one line naming the URL). ``weights``: a state-dict file instead (sizes read from it; a neckkit
    codec's own ``model.``-prefixed state dict too). ``tiny``: :data:`TINY_VBR` widths, random init (or the
    ``weights`` file loaded into them). ``random_init``: the zoo's sizes (N=192, M=320), random weights.
    """
    if model not in VBR_MODELS:
        raise NeckkitError(f"unknown CompressAI variable-rate model {model!r}; choose one of {', '.join(VBR_MODELS)}")
    if weights is not None and random_init:
        raise NeckkitError("pass either weights or random_init, not both")
    if tiny and random_init:
        raise NeckkitError("pass either tiny or random_init, not both")
    from compressai.zoo.image_vbr import cfgs

    zoo_variable = VBR_MODELS[model][2]
    name = model + ("-tiny" if tiny else "")
    if weights is None and (tiny or random_init):
        network = _network(model, TINY_VBR if tiny else tuple(cfgs[model]), zoo_variable)
        return VBR_MODELS[model][1](network, name)
    source = str(weights) if weights is not None else str(_zoo_file(model))
    state = _read(weights if weights is not None else source, source)
    missing = [key for key in ("g_a.0.weight", "g_a.6.weight", "Gain") if key not in state]
    if missing:
        raise NeckkitError(f"{source} does not look like a {model} checkpoint: missing {', '.join(missing)}")
    sizes = TINY_VBR if tiny else (int(state["g_a.0.weight"].size(0)), int(state["g_a.6.weight"].size(0)))
    network = _network(model, sizes, zoo_variable and _VARIABLE_BOTTLENECK_KEY in state)
    load_codec_state(network, state, source)
    return VBR_MODELS[model][1](network, name)
