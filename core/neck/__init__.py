"""The transform-neck and its checkpoints.

- :mod:`neckkit.neck.transform`: :class:`TransformNeck` (latent -> encoder tokens at ``entry_layer``);
- :mod:`neckkit.neck.conditioning`: the rate-level embedding and the blocks' adaLN-Zero / FiLM modulation;
- :mod:`neckkit.neck.checkpoint`: neckkit's safetensors + JSON checkpoints;
- :mod:`neckkit.neck.paper_release`: importing the paper's released files.

``from neckkit.neck import TransformNeck`` (the name before core/ was grouped) keeps working.
"""

from neckkit.neck.conditioning import CONDITIONINGS, LevelEmbedding
from neckkit.neck.transform import ACTIVATIONS, NeckTransformer, TransformNeck

__all__ = ["ACTIVATIONS", "CONDITIONINGS", "LevelEmbedding", "NeckTransformer", "TransformNeck"]
