"""clip-l and clip-l-336 (transformers CLIP): split forward equals the library's, weights load offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neckkit import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.loading.weights import fingerprint
from neckkit.plugins.encoders.clip import HFClipEncoder, build_clip

TINY = {name: build_clip(name, tiny=True) for name in ("clip-l", "clip-l-336")}


def _library_forward(encoder: HFClipEncoder, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """transformers' own forward: projected image embedding and hidden states."""
    with torch.no_grad():
        output = encoder.model.vision_model(pixel_values=pixels, output_hidden_states=True)
        embedding = encoder.model.get_image_features(pixel_values=pixels).pooler_output
    return embedding, output.hidden_states


@pytest.mark.parametrize(("name", "size", "grid"), [("clip-l", 224, 16), ("clip-l-336", 336, 24)])
def test_tiny_split_forward_equals_transformers_forward(name: str, size: int, grid: int) -> None:
    encoder = TINY[name]
    assert (encoder.image_size, encoder.grid, encoder.entry_layer) == (size, grid, 2)
    pixels = encoder.preprocess(torch.rand(2, 3, 300, 260))
    assert pixels.shape == (2, 3, size, size)
    reference, reference_states = _library_forward(encoder, pixels)
    with torch.no_grad():
        tokens = encoder.embed(pixels)
        assert tokens.shape == (2, grid * grid + 1, encoder.width)
        torch.testing.assert_close(encoder.head(encoder.blocks(tokens, 0, encoder.num_layers)), reference)
        states = encoder.hidden_states(tokens, 0)
    assert len(states) == len(reference_states) == encoder.num_layers + 1
    for ours, theirs in zip(states, reference_states, strict=True):
        torch.testing.assert_close(ours, theirs)


@settings(max_examples=8, deadline=None)
@given(split=st.integers(0, 4), entry=st.integers(0, 4))
def test_splitting_at_any_block_changes_nothing(split: int, entry: int) -> None:
    encoder = TINY["clip-l"]
    pixels = encoder.preprocess(torch.rand(1, 3, 224, 224))
    with torch.no_grad():
        tokens = encoder.embed(pixels)
        full = encoder.encode(pixels)
        resumed = encoder.encode_from(encoder.blocks(tokens, 0, split), split)
        states = encoder.hidden_states(encoder.blocks(tokens, 0, entry), entry)
    torch.testing.assert_close(resumed, full)
    assert states[:entry] == (None,) * entry
    torch.testing.assert_close(states[-1], encoder.blocks(tokens, 0, encoder.num_layers))


def test_real_size_clip_l_with_random_weights_matches_transformers() -> None:
    encoder = build_clip("clip-l", random_init=True)
    vision = encoder.model.config.vision_config
    assert (encoder.width, encoder.num_layers, encoder.grid, encoder.embed_dim) == (1024, 24, 16, 768)
    assert (vision.num_attention_heads, vision.intermediate_size, vision.hidden_act) == (16, 4096, "quick_gelu")
    pixels = encoder.preprocess(torch.rand(1, 3, 256, 256))
    reference, _ = _library_forward(encoder, pixels)
    with torch.no_grad():
        ours = encoder.encode_from(encoder.blocks(encoder.embed(pixels), 0, 2), 2)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_local_folder_loads_offline_with_weights_intact(tmp_path: Path) -> None:
    saved = build_clip("clip-l", tiny=True)
    torch.nn.init.normal_(saved.model.visual_projection.weight)  # differ from a fresh tiny model
    saved.model.save_pretrained(tmp_path)
    loaded = build_clip("clip-l", weights=str(tmp_path))
    ours, theirs = loaded.model.state_dict(), saved.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor), key
    assert fingerprint(loaded) == fingerprint(saved)


def test_weights_for_another_input_size_are_refused(tmp_path: Path) -> None:
    TINY["clip-l-336"].model.save_pretrained(tmp_path)
    with pytest.raises(NeckkitError, match=r"are for 336 px, this encoder expects 224 px"):
        build_clip("clip-l", weights=str(tmp_path))


def test_missing_weights_offline_give_one_line_with_what_to_do() -> None:
    with pytest.raises(NeckkitError) as caught:
        build_clip("clip-l", weights="neckkit-tests/no-such-clip")
    message = str(caught.value)
    assert message.startswith("cannot load CLIP weights 'neckkit-tests/no-such-clip' from the Hugging Face cache")
    assert "hf download neckkit-tests/no-such-clip" in message and "--random-init" in message
    assert "\n" not in message


def test_weights_and_tiny_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match=r"build_clip\(\): tiny and weights exclude each other"):
        build_clip("clip-l", weights=str(tmp_path), tiny=True)


@pytest.mark.parametrize("entry_layer", [-1, 5])
def test_entry_layer_outside_the_encoder_is_refused(entry_layer: int) -> None:
    with pytest.raises(NeckkitError, match=r"entry_layer must be in 0..4, got"):
        HFClipEncoder(TINY["clip-l"].model, entry_layer=entry_layer)


def test_blocks_outside_the_encoder_are_refused() -> None:
    with pytest.raises(NeckkitError, match="CLIP has blocks 0..4; got start=2, end=7"):
        TINY["clip-l"].blocks(torch.zeros(1, 257, 32), 2, 7)


def test_registered_names_build_the_encoders(host: PluginHost) -> None:
    encoders = host.components("encoder")
    component = encoders.get("clip-l-336")
    assert component.plugin == "neckkit.plugins.encoders"
    assert component.info.pretrained == ("openai/clip-vit-large-patch14-336",)
    encoder = component.build(tiny=True, entry_layer=1)
    assert isinstance(encoder, HFClipEncoder) and (encoder.image_size, encoder.entry_layer) == (336, 1)


def test_text_embeddings_ignore_padding_trimmed_away() -> None:
    from neckkit.plugins.encoders.clip import openai_tokenizer

    encoder = TINY["clip-l"]
    texts = ["a photo of a goldfish.", "a"]
    with torch.no_grad():
        untrimmed = encoder.model.get_text_features(input_ids=openai_tokenizer()(texts)).pooler_output
    torch.testing.assert_close(encoder.encode_text(texts), untrimmed)
