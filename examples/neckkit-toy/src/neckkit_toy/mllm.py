"""A toy MLLM: greedy decoding over a tiny vocabulary from toy-vit's hidden states."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from neckkit.plugin_api import MLLM, NeckkitError, VisualEncoder
from neckkit_toy.encoder import ToyViT

VOCABULARY = ("a", "photo", "of", "cat", "dog", "red", "blue", "small", "large", "scene", "object", ".")


class ToyMLLM(MLLM):
    """Reads ``toy-vit``'s second-to-last hidden state, as LLaVA does with CLIP."""

    encoder = "toy-vit"
    feature_layer = -2

    def __init__(self, tiny: bool = False) -> None:
        super().__init__()
        self.vision = ToyViT(tiny=tiny)
        width = self.vision.width
        self.prompt_embedding = nn.EmbeddingBag(256, width)  # prompt bytes, mean-pooled
        self.word_embedding = nn.Embedding(len(VOCABULARY), width)
        self.cell = nn.GRUCell(width, width)
        self.lm_head = nn.Linear(width, len(VOCABULARY))

    @property
    def visual_encoder(self) -> VisualEncoder:
        return self.vision

    @torch.no_grad()
    def generate(
        self, tokens: Tensor, prompt: str | list[str], *, start: int | None = None, **options: Any
    ) -> list[str]:
        max_new_tokens = int(options.pop("max_new_tokens", 4))
        if options:
            raise NeckkitError(f"toy-mllm does not support generation option(s): {', '.join(sorted(options))}")
        start = self.vision.entry_layer if start is None else start
        features = self.vision.hidden_states(tokens, start)[self.feature_layer]  # [B, T, width]
        prompts = [prompt] * tokens.shape[0] if isinstance(prompt, str) else list(prompt)
        if len(prompts) != tokens.shape[0]:
            raise NeckkitError(f"got {len(prompts)} prompts for {tokens.shape[0]} images")
        state = features.mean(dim=1) + torch.stack([self._embed_prompt(text) for text in prompts])  # [B, width]
        words: list[list[str]] = [[] for _ in prompts]
        for _ in range(max_new_tokens):
            next_word = self.lm_head(state).argmax(dim=-1)  # [B]
            for item, index in enumerate(next_word.tolist()):
                words[item].append(VOCABULARY[index])
            state = self.cell(self.word_embedding(next_word), state)
        return [" ".join(item) for item in words]

    def _embed_prompt(self, text: str) -> Tensor:
        data = torch.tensor(list(text.encode("utf-8")) or [0]).unsqueeze(0)  # [1, n]
        return self.prompt_embedding(data)[0]  # [width]
