"""CLIP's paper head (``double_ln_post``): the final LayerNorm twice, as the released necks were trained."""

from __future__ import annotations

import torch

from neckkit.host.manager import PluginHost
from neckkit.plugins.encoders.clip import build_clip


def _tokens(encoder, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, encoder.grid * encoder.grid + 1, encoder.width, generator=generator)  # [2, 257, 32]


def _randomise_post_layernorm(encoder) -> None:
    """Non-trivial affine weights: with weight 1 and bias 0 a second LayerNorm is nearly a no-op."""
    generator = torch.Generator().manual_seed(1)
    norm = encoder.vision_model.post_layernorm
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=generator))
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator))


def test_double_ln_post_head_is_layernorm_twice_then_projection() -> None:
    encoder = build_clip("clip-l", tiny=True, double_ln_post=True)
    _randomise_post_layernorm(encoder)
    tokens = _tokens(encoder)
    norm = encoder.vision_model.post_layernorm
    weight, bias, eps = norm.weight, norm.bias, norm.eps

    def layer_norm(x: torch.Tensor) -> torch.Tensor:  # by hand, not through the module
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * weight + bias

    with torch.no_grad():
        every_token = layer_norm(layer_norm(tokens)) @ encoder.model.visual_projection.weight.T  # [2, 257, 16]
        head = encoder.head(tokens)
    assert head.shape == (2, encoder.embed_dim)
    torch.testing.assert_close(head, every_token[:, 0])  # projecting every token, then taking the class token


def test_double_ln_post_differs_from_the_stock_head() -> None:
    stock = build_clip("clip-l", tiny=True)
    paper = build_clip("clip-l", tiny=True, double_ln_post=True)
    assert (stock.double_ln_post, paper.double_ln_post) == (False, True)
    paper.model.load_state_dict(stock.model.state_dict())
    _randomise_post_layernorm(stock)
    _randomise_post_layernorm(paper)
    tokens = _tokens(stock)
    with torch.no_grad():
        ours, theirs = paper.head(tokens), stock.head(tokens)
        once = stock.model.visual_projection(stock.vision_model.post_layernorm(tokens[:, 0]))
    torch.testing.assert_close(theirs, once)
    assert (ours - theirs).abs().max() > 1e-2


def test_the_option_is_registered_and_reaches_the_encoder(host: PluginHost) -> None:
    for name in ("clip-l", "clip-l-336"):
        component = host.components("encoder").get(name)
        assert "LayerNorm applied twice" in component.info.options["double_ln_post"]
    encoder = host.components("encoder").get("clip-l-336").build(tiny=True, double_ln_post=True)
    assert encoder.double_ln_post and encoder.image_size == 336
