"""Component interfaces that plugins implement."""

from neckkit.interfaces.codec import Analysis, Codec, LatentPayload, estimated_bits
from neckkit.interfaces.encoder import VisualEncoder
from neckkit.interfaces.mllm import MLLM

__all__ = ["MLLM", "Analysis", "Codec", "LatentPayload", "VisualEncoder", "estimated_bits"]
