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
from neckkit.interfaces.encoder import VisualEncoder
from neckkit.interfaces.mllm import MLLM

__all__ = [
    "MLLM",
    "Analysis",
    "Codec",
    "LatentPayload",
    "VariableRateCodec",
    "VisualEncoder",
    "at_level",
    "estimated_bits",
    "is_variable_rate",
]
