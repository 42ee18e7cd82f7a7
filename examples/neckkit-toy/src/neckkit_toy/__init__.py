"""Example neckkit plugin: toy codec, encoder and MLLM (see plugin.py for the hooks)."""

from neckkit_toy.codec import ToyCodec
from neckkit_toy.encoder import ToyViT
from neckkit_toy.mllm import ToyMLLM

__all__ = ["ToyCodec", "ToyMLLM", "ToyViT"]
