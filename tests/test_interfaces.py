"""Component interfaces, checked through the example plugin's toy doubles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neckkit import MLLM, Codec, LatentPayload, NeckkitError, VisualEncoder, estimated_bits
from neckkit_toy import ToyCodec, ToyMLLM, ToyViT

torch.manual_seed(0)
CODEC = ToyCodec(tiny=True).eval()
ENCODER = ToyViT().eval()
MODEL = ToyMLLM(tiny=True).eval()


@pytest.mark.parametrize("base", [Codec, VisualEncoder, MLLM])
def test_interfaces_are_abstract(base: type) -> None:
    with pytest.raises(TypeError, match="abstract"):
        base()


def test_incomplete_codec_names_the_missing_method() -> None:
    class HalfCodec(Codec):
        def analyze(self, x):  # pragma: no cover - never called
            raise NotImplementedError

    with pytest.raises(TypeError, match="compress"):
        HalfCodec()


@settings(max_examples=15, deadline=None)
@given(height=st.integers(1, 24).map(lambda n: 4 * n), width=st.integers(1, 24).map(lambda n: 4 * n))
def test_decompressed_latent_equals_analysis_y_hat(height: int, width: int) -> None:
    x = torch.rand(2, 3, height, width)
    with torch.no_grad():
        analysis = CODEC.analyze(x)
        payload = CODEC.compress(x)
    y_hat = CODEC.decompress_latent(payload)
    assert y_hat.shape == (2, CODEC.latent_channels, height // 4, width // 4)
    assert torch.equal(y_hat, analysis.y_hat)
    assert CODEC.synthesize(y_hat).shape == x.shape


def test_analysis_y_hat_is_straight_through_differentiable() -> None:
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    analysis = CODEC.analyze(x)
    analysis.y_hat.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_estimated_bits_is_minus_log2_likelihood() -> None:
    likelihoods = {"y": torch.tensor([0.5, 0.25]), "z": torch.tensor([[1.0, 0.125]])}
    assert estimated_bits(likelihoods).item() == pytest.approx(1 + 2 + 0 + 3)


def test_payload_counts_its_bytes() -> None:
    assert LatentPayload(strings=[[b"abc", b"d"], [b"ef"]], shape=(2, 2)).num_bytes == 6


@settings(max_examples=10, deadline=None)
@given(split=st.integers(0, 4))
def test_split_forward_equals_full_forward(split: int) -> None:
    pixels = ENCODER.preprocess(torch.rand(2, 3, 40, 30))
    with torch.no_grad():
        full = ENCODER.encode(pixels)
        tokens = ENCODER.blocks(ENCODER.embed(pixels), 0, split)
        resumed = ENCODER.encode_from(tokens, split)
    assert full.shape == (2, ENCODER.embed_dim)
    torch.testing.assert_close(resumed, full, rtol=0, atol=1e-6)


def test_hidden_states_are_indexed_by_absolute_layer() -> None:
    pixels = ENCODER.preprocess(torch.rand(1, 3, 32, 32))
    with torch.no_grad():
        tokens = ENCODER.embed(pixels)
        entry = ENCODER.blocks(tokens, 0, 2)
        states = ENCODER.hidden_states(entry, 2)
        assert len(states) == ENCODER.num_layers + 1
        assert states[0] is None and states[1] is None
        assert torch.equal(states[2], entry)
        torch.testing.assert_close(states[-1], ENCODER.blocks(tokens, 0, ENCODER.num_layers), rtol=0, atol=1e-6)


def test_blocks_outside_the_encoder_are_refused() -> None:
    with pytest.raises(NeckkitError, match="toy-vit has blocks 0..4; got start=3, end=9"):
        ENCODER.blocks(torch.zeros(1, 17, 32), 3, 9)


def test_encoder_without_text_tower_says_train_with_distillation() -> None:
    assert not ENCODER.has_text_tower
    with pytest.raises(NeckkitError, match="ToyViT has no text tower: train its neck with distillation only"):
        ENCODER.text_classifier(["cat"], ["a photo of a {}."])


def test_mllm_from_entry_tokens_equals_from_pixels() -> None:
    encoder = MODEL.visual_encoder
    pixels = encoder.preprocess(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        entry = encoder.blocks(encoder.embed(pixels), 0, encoder.entry_layer)
    from_tokens = MODEL.generate(entry, "what is this?", max_new_tokens=3)
    from_pixels = MODEL.generate_from_pixels(pixels, "what is this?", max_new_tokens=3)
    assert from_tokens == from_pixels
    assert len(from_tokens) == 2 and all(len(answer.split()) == 3 for answer in from_tokens)


def test_mllm_rejects_unsupported_options_and_prompt_counts() -> None:
    tokens = torch.zeros(2, MODEL.visual_encoder.grid**2 + 1, MODEL.visual_encoder.width)
    with pytest.raises(NeckkitError, match="does not support generation option\\(s\\): num_beams"):
        MODEL.generate(tokens, "hi", num_beams=2)
    with pytest.raises(NeckkitError, match="got 3 prompts for 2 images"):
        MODEL.generate(tokens, ["a", "b", "c"])


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 6, 8), r"ToyCodec: image size 6x8 is not a multiple of 4; pad it first"),
        ((1, 1, 8, 8), r"ToyCodec codes \[B, 3, H, W\] images, got shape \[1, 1, 8, 8\]"),
        ((3, 8, 8), r"ToyCodec codes \[B, 3, H, W\] images"),
    ],
)
def test_codec_input_check_names_the_problem(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(NeckkitError, match=message):
        CODEC.check_input(torch.zeros(shape))
    CODEC.check_input(torch.zeros(2, 3, 8, 12))  # a valid batch passes
