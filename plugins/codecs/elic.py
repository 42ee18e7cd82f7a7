"""ELIC (He et al., CVPR 2022), the paper's codec, as CompressAI's ``Elic2022Chandelier`` or ``Elic2022Official``.

:func:`build_elic` is the ``elic`` factory (CompressAI ships no ELIC weights); :func:`bridging_to_chandelier`
renames the paper's released ``ELIC_LLM`` state dict to ``Elic2022Chandelier`` keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from compressai.models import Elic2022Chandelier, Elic2022Official
from torch import Tensor, nn

from neckkit.config.paper import ElicConfig
from neckkit.plugin_api import NeckkitError, load_codec_state, read_state_dict
from neckkit.plugins.codecs.latent_codec import LatentCodecCodec

__all__ = ["ELIC_VARIANTS", "TINY_ELIC", "bridging_to_chandelier", "build_elic", "is_bridging_layout"]

ELIC_VARIANTS = {"chandelier": Elic2022Chandelier, "official": Elic2022Official}
# ELIC's structure (five uneven groups, the last one the rest) at tiny widths, for tests and quick starts.
TINY_ELIC = ElicConfig(N=16, M=32, groups=(2, 2, 4, 8, 16))

_BRIDGING_MARKERS = (
    "cc_transforms.",
    "ParamAggregation.",
    "h_a.",
    "h_s.",
    "context_prediction.",
    "gaussian_conditional.",
)
_LEGACY_BOTTLENECK = re.compile(r"^_(matrix|bias|factor)(\d+)$")
_LEGACY_LISTS = {"matrix": "matrices", "bias": "biases", "factor": "factors"}
_STRIPPED = ("module.", "base_coder.")


def _strip(key: str) -> str:
    for substring in _STRIPPED:
        key = key.replace(substring, "")
    return key


def is_bridging_layout(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` uses the paper's ``ELIC_LLM`` names (top-level ``h_a.``, ``cc_transforms.``...)."""
    return any(_strip(key).startswith(_BRIDGING_MARKERS) for key in state)


def bridging_to_chandelier(state: Mapping[str, Tensor], num_groups: int | None = None) -> dict[str, Tensor]:
    """Rename the paper's ``ELIC_LLM`` codec state dict to CompressAI ``Elic2022Chandelier`` keys.

    Rules (``reference/elic_key_mapping.md``, verified bitwise): strip ``module.``/``base_coder.``;
    ``g_a.``/``g_s.`` unchanged; ``h_a.``/``h_s.``/``entropy_bottleneck.`` go under
    ``latent_codec.hyper.`` (legacy ``_matrix{i}``/``_bias{i}``/``_factor{i}`` become
    ``matrices.{i}``/``biases.{i}``/``factors.{i}``); ``cc_transforms.{j}`` becomes
    ``latent_codec.y.channel_context.y{j+1}``; ``context_prediction.{k}`` and ``ParamAggregation.{k}``
    become ``latent_codec.y.latent_codec.y{k}.context_prediction`` / ``.entropy_parameters``; the one
    shared ``gaussian_conditional`` is copied into every group's ``...y{k}.y.gaussian_conditional``.
    ``num_groups`` defaults to the number of ``context_prediction.{k}`` groups found. Unknown keys are
    kept as they are (a strict load then names them).
    """
    stripped = {_strip(key): value for key, value in state.items()}
    if num_groups is None:
        found = {
            int(m.group(1))
            for key in stripped
            if (m := re.match(r"(?:context_prediction|ParamAggregation)\.(\d+)\.", key))
        }
        num_groups = max(found) + 1 if found else len(ElicConfig().groups)
    out: dict[str, Tensor] = {}
    for key, value in stripped.items():
        head, _, rest = key.partition(".")
        if head in ("g_a", "g_s"):
            out[key] = value
        elif head in ("h_a", "h_s"):
            out[f"latent_codec.hyper.{key}"] = value
        elif head == "entropy_bottleneck":
            legacy = _LEGACY_BOTTLENECK.match(rest)
            if legacy:
                rest = f"{_LEGACY_LISTS[legacy.group(1)]}.{legacy.group(2)}"
            out[f"latent_codec.hyper.entropy_bottleneck.{rest}"] = value
        elif head == "cc_transforms":
            index, _, tail = rest.partition(".")
            out[f"latent_codec.y.channel_context.y{int(index) + 1}.{tail}"] = value
        elif head in ("context_prediction", "ParamAggregation"):
            index, _, tail = rest.partition(".")
            target = "context_prediction" if head == "context_prediction" else "entropy_parameters"
            out[f"latent_codec.y.latent_codec.y{int(index)}.{target}.{tail}"] = value
        elif head == "gaussian_conditional":
            for k in range(num_groups):
                out[f"latent_codec.y.latent_codec.y{k}.y.gaussian_conditional.{rest}"] = value.clone()
        else:
            out[key] = value
    return out


def _elic_model(variant: str, config: ElicConfig) -> nn.Module:
    if variant not in ELIC_VARIANTS:
        raise NeckkitError(f"unknown ELIC variant {variant!r}; choose one of {', '.join(ELIC_VARIANTS)}")
    return ELIC_VARIANTS[variant](N=config.N, M=config.M, groups=list(config.groups))


def build_elic(
    weights: str | os.PathLike[str] | None = None,
    variant: str = "chandelier",
    tiny: bool = False,
    random_init: bool = False,
) -> LatentCodecCodec:
    """ELIC (He et al., CVPR 2022) as CompressAI's ``Elic2022Chandelier`` (default) or ``Elic2022Official``.

    ``weights``: a state-dict file in CompressAI's own key names, or the paper's released layout
    (``ELIC_LLM`` names, codec under ``"state_dict"`` next to the neck's ``"adapter"``, which is
    ignored here), renamed by :func:`bridging_to_chandelier`. ``tiny``: :data:`TINY_ELIC` widths
    (random init unless ``weights`` are given). ``random_init``: the paper's sizes
    (:class:`~neckkit.config.paper.ElicConfig`) with random weights. CompressAI publishes no ELIC
    weights, so one of the three is required.
    """
    if weights is not None and random_init:
        raise NeckkitError("ELIC: weights=<file> and random_init=True exclude each other")
    if weights is None and not (tiny or random_init):
        raise NeckkitError(
            "ELIC needs weights: CompressAI publishes none; pass weights=<file> (e.g. the paper's released "
            "checkpoint), or tiny=True / random_init=True for random weights"
        )
    config = TINY_ELIC if tiny else ElicConfig()
    model = _elic_model(variant, config)  # random init: neckkit builds factories under seeded_init(seed)
    if weights is not None:
        source = str(weights)
        state = read_state_dict(weights, source=source)
        if is_bridging_layout(state):
            if variant != "chandelier":
                raise NeckkitError(
                    f"{source} uses the paper's ELIC_LLM layout, which maps onto variant 'chandelier' only "
                    f"(not {variant!r})"
                )
            state = bridging_to_chandelier(state, num_groups=len(config.groups))
        load_codec_state(model, state, source)
    name = f"elic-{variant}" + ("-tiny" if tiny else "")
    return LatentCodecCodec(model, name)
