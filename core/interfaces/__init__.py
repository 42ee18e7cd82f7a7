"""Component interfaces that plugins implement."""

from neckkit.interfaces.codec import (
    Analysis,
    Codec,
    LatentPayload,
    VariableRateCodec,
    at_level,
    estimated_bits,
    is_variable_rate,
)
from neckkit.interfaces.encoder import Box, Grid, VisualEncoder
from neckkit.interfaces.image_codec import ImageCodec, is_image_codec
from neckkit.interfaces.mllm import MLLM, grid_options

__all__ = [
    "MLLM",
    "Box",
    "Grid",
    "Analysis",
    "Codec",
    "ImageCodec",
    "LatentPayload",
    "VariableRateCodec",
    "VisualEncoder",
    "at_level",
    "estimated_bits",
    "grid_options",
    "is_image_codec",
    "is_variable_rate",
]
