"""CompressAI codecs behind neckkit's codec interface: the public names, re-exported (kept for imports).

The code lives one concept per module; import from here or from the module itself:

- :mod:`~neckkit.plugins.codecs.compressai_base`: :class:`CompressAICodec`, the adapters' shared base
  (``analyze(x).y_hat`` bitwise equal to the decoder's, straight-through; entropy tables kept current);
- :mod:`~neckkit.plugins.codecs.hyperprior`: :class:`ScaleHyperpriorCodec`, :class:`MeanScaleHyperpriorCodec`;
- :mod:`~neckkit.plugins.codecs.autoregressive`: :class:`AutoregressiveCodec` (serial context model);
- :mod:`~neckkit.plugins.codecs.latent_codec`: :class:`LatentCodecCodec` (CompressAI latent codecs, ELIC);
- :mod:`~neckkit.plugins.codecs.elic`: :func:`build_elic`, :data:`TINY_ELIC`, the paper's released layout
  (:func:`bridging_to_chandelier`, :func:`is_bridging_layout`);
- :mod:`~neckkit.plugins.codecs.zoo`: :func:`build_zoo`, :func:`zoo_checkpoint`, :func:`wrap_compressai_model`.
"""

from __future__ import annotations

from neckkit.plugins.codecs.autoregressive import AutoregressiveCodec
from neckkit.plugins.codecs.compressai_base import CompressAICodec
from neckkit.plugins.codecs.elic import (
    ELIC_VARIANTS,
    TINY_ELIC,
    bridging_to_chandelier,
    build_elic,
    is_bridging_layout,
)
from neckkit.plugins.codecs.hyperprior import MeanScaleHyperpriorCodec, ScaleHyperpriorCodec
from neckkit.plugins.codecs.latent_codec import LatentCodecCodec
from neckkit.plugins.codecs.zoo import ZOO_MODELS, build_zoo, wrap_compressai_model, zoo_checkpoint

__all__ = [
    "ELIC_VARIANTS",
    "TINY_ELIC",
    "ZOO_MODELS",
    "AutoregressiveCodec",
    "CompressAICodec",
    "LatentCodecCodec",
    "MeanScaleHyperpriorCodec",
    "ScaleHyperpriorCodec",
    "bridging_to_chandelier",
    "build_elic",
    "build_zoo",
    "is_bridging_layout",
    "wrap_compressai_model",
    "zoo_checkpoint",
]
