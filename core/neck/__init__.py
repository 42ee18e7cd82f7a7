"""The transform-neck and its checkpoints.

- :mod:`neckkit.neck.transform`: :class:`TransformNeck` (latent -> encoder tokens at ``entry_layer``);
- :mod:`neckkit.neck.checkpoint`: neckkit's safetensors + JSON checkpoints;
- :mod:`neckkit.neck.paper_release`: importing the paper's released files.

``from neckkit.neck import TransformNeck`` (the name before core/ was grouped) keeps working.
"""

from neckkit.neck.transform import ACTIVATIONS, NeckTransformer, TransformNeck

__all__ = ["ACTIVATIONS", "NeckTransformer", "TransformNeck"]
