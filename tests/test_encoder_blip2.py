"""The ``eva-g-blip2`` encoder: split forward equals transformers' Blip2VisionModel, weights load offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.plugins.encoders.blip2 import HUB_ID, Blip2Encoder, build_blip2_vision

transformers = pytest.importorskip("transformers")

# A tiny BLIP-2 whose vision widths differ from the factory's tiny ones, so the config is read.
CKPT_VISION = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2, initializer_range=0.02)


@pytest.fixture(scope="module")
def tiny() -> Blip2Encoder:
    """The factory's tiny encoder, with random layer-norm affines (init is 1 / 0, which would hide
    a missing or doubled ``post_layernorm``)."""
    encoder = build_blip2_vision(tiny=True)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for module in encoder.model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=generator))
    return encoder


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def library(tiny: Blip2Encoder, pixels: torch.Tensor):
    with torch.no_grad():
        return tiny.model(pixels, output_hidden_states=True)


@pytest.fixture(scope="module")
def full_model():
    """A tiny Blip2ForConditionalGeneration: tiny ViT, Q-Former and OPT."""
    config = transformers.Blip2Config(
        vision_config=CKPT_VISION,
        qformer_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            encoder_hidden_size=24, vocab_size=64, max_position_embeddings=32),
        text_config=dict(model_type="opt", hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=32, word_embed_proj_dim=16),
        num_query_tokens=4,
    )
    torch.manual_seed(3)
    return transformers.Blip2ForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def full_folder(full_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blip2-full")
    full_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bare_folder(full_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blip2-bare")
    full_model.vision_model.save_pretrained(folder)
    return folder


def assert_same_vision_weights(encoder: Blip2Encoder, reference: torch.nn.Module) -> None:
    loaded, expected = encoder.model.state_dict(), reference.state_dict()
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert loaded[name].dtype == torch.float32, name
        assert torch.equal(loaded[name], tensor), name


# -- the split forward -------------------------------------------------------------------------


def test_tiny_attributes(tiny: Blip2Encoder) -> None:
    assert (tiny.width, tiny.grid, tiny.image_size, tiny.num_layers) == (32, 16, 224, 4)
    assert tiny.embed_dim == tiny.width and tiny.entry_layer == 2 and tiny.has_class_token
    assert not tiny.has_text_tower and tiny.vision_model is tiny.model


def test_real_size_config_is_vit_g() -> None:
    from neckkit.plugins.encoders.blip2 import blip2_vision_config

    config = blip2_vision_config(tiny=False)
    sizes = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads)
    assert sizes == (1408, 6144, 39, 16)
    assert (config.image_size, config.patch_size, config.qkv_bias) == (224, 14, True)


def test_embed_has_class_and_patch_tokens(tiny: Blip2Encoder, pixels: torch.Tensor, library) -> None:
    with torch.no_grad():
        tokens = tiny.embed(pixels)
    assert tokens.shape == (2, tiny.grid**2 + 1, tiny.width)
    torch.testing.assert_close(tokens, library.hidden_states[0], rtol=0, atol=0)  # no pre-norm


def test_head_of_all_blocks_is_pooler_output(tiny: Blip2Encoder, pixels: torch.Tensor, library) -> None:
    with torch.no_grad():
        pooled = tiny.head(tiny.blocks(tiny.embed(pixels), 0, tiny.num_layers))
        encoded = tiny.encode(pixels)
    assert pooled.shape == (2, tiny.embed_dim)
    torch.testing.assert_close(pooled, library.pooler_output)
    torch.testing.assert_close(encoded, library.pooler_output)
    assert not torch.allclose(pooled[0], pooled[1], atol=1e-3)  # the tiny model is not degenerate


def test_last_hidden_state_is_library_last_hidden_state(tiny: Blip2Encoder, pixels: torch.Tensor, library) -> None:
    with torch.no_grad():
        tokens = tiny.last_hidden_state(tiny.blocks(tiny.embed(pixels), 0, tiny.num_layers))
    assert tokens.shape == (2, tiny.grid**2 + 1, tiny.width)
    torch.testing.assert_close(tokens, library.last_hidden_state)


def test_hidden_states_match_library(tiny: Blip2Encoder, pixels: torch.Tensor, library) -> None:
    with torch.no_grad():
        states = tiny.hidden_states(tiny.embed(pixels), 0)
    assert len(states) == len(library.hidden_states) == tiny.num_layers + 1
    for mine, theirs in zip(states, library.hidden_states, strict=True):
        torch.testing.assert_close(mine, theirs)
    with torch.no_grad():
        from_two = tiny.hidden_states(states[2], 2)
    assert from_two[:2] == (None, None)
    torch.testing.assert_close(from_two[-1], library.hidden_states[-1])


@settings(max_examples=5, deadline=None)
@given(k=st.integers(min_value=0, max_value=4))
def test_splitting_at_any_block_equals_not_splitting(tiny: Blip2Encoder, pixels: torch.Tensor, library, k: int) -> None:
    with torch.no_grad():
        middle = tiny.blocks(tiny.embed(pixels[:1]), 0, k)
        pooled = tiny.encode_from(middle, k)
    torch.testing.assert_close(middle, library.hidden_states[k][:1])
    torch.testing.assert_close(pooled, library.pooler_output[:1])


def test_blocks_rejects_bad_range(tiny: Blip2Encoder, pixels: torch.Tensor) -> None:
    with pytest.raises(NeckkitError, match=r"blocks 0\.\.4; got start=3, end=5"):
        tiny.blocks(torch.zeros(1, 257, 32), 3, 5)


def test_preprocess_matches_blip_image_processor(tiny: Blip2Encoder) -> None:
    images = torch.rand(2, 3, 96, 160, generator=torch.Generator().manual_seed(2))
    processor = transformers.BlipImageProcessor(size={"height": 224, "width": 224})
    reference = processor(images=list(images), do_rescale=False, return_tensors="pt")["pixel_values"]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (processor.image_mean, processor.image_std))
    reference = ((reference * std + mean).clamp(0, 1) - mean) / std  # neckkit clamps bicubic overshoot
    pixels = tiny.preprocess(images)
    assert pixels.shape == (2, 3, 224, 224)
    torch.testing.assert_close(pixels, reference, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="expected images"):
        tiny.preprocess(torch.rand(3, 224, 224))


# -- no text tower, options --------------------------------------------------------------------


def test_text_classifier_says_distillation_only(tiny: Blip2Encoder) -> None:
    with pytest.raises(NeckkitError, match="Blip2Encoder has no text tower: train its neck with distillation only"):
        tiny.text_classifier(["cat"], ["a photo of a {}."])
    with pytest.raises(NeckkitError, match="has no text tower"):
        tiny.encode_text(["cat"])


@pytest.mark.parametrize("entry_layer", [-1, 5])
def test_entry_layer_out_of_range(tiny: Blip2Encoder, entry_layer: int) -> None:
    with pytest.raises(NeckkitError, match=rf"entry_layer must be in 0\.\.4, got {entry_layer}"):
        Blip2Encoder(tiny.model, entry_layer=entry_layer)


@pytest.mark.parametrize("entry_layer", [0, 4])
def test_entry_layer_bounds_accepted(tiny: Blip2Encoder, entry_layer: int) -> None:
    assert Blip2Encoder(tiny.model, entry_layer=entry_layer).entry_layer == entry_layer


def test_weights_and_tiny_are_exclusive(bare_folder: Path) -> None:
    with pytest.raises(NeckkitError, match=r"^build_blip2_vision\(\): tiny and weights exclude each other"):
        build_blip2_vision(str(bare_folder), tiny=True)


def test_builtin_plugin_registers_eva_g_blip2(host: PluginHost) -> None:
    component = host.components("encoder").get("eva-g-blip2")
    assert component.plugin == "neckkit.plugins.encoders" and component.info.tiny
    assert component.info.pretrained == (HUB_ID,)
    assert set(component.info.options) == {"weights", "tiny", "random_init", "entry_layer"}
    assert component.build(tiny=True, entry_layer=1).entry_layer == 1


# -- loading weights ---------------------------------------------------------------------------


def test_full_checkpoint_keys_are_prefixed(full_folder: Path) -> None:
    keys = load_file(full_folder / "model.safetensors").keys()
    assert "vision_model.embeddings.patch_embedding.weight" in keys
    assert {key.split(".")[0] for key in keys} >= {"vision_model", "qformer", "language_model"}
    assert json.loads((full_folder / "config.json").read_text())["model_type"] == "blip-2"


def test_full_checkpoint_loads_vision_weights(full_folder: Path, full_model, pixels: torch.Tensor) -> None:
    encoder = build_blip2_vision(str(full_folder), entry_layer=1)
    assert (encoder.width, encoder.num_layers, encoder.entry_layer) == (24, 3, 1)
    assert_same_vision_weights(encoder, full_model.vision_model)
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(pixels[:1]), full_model.vision_model(pixels[:1]).pooler_output)


def test_bare_vision_folder_loads(bare_folder: Path, full_model) -> None:
    assert "embeddings.patch_embedding.weight" in load_file(bare_folder / "model.safetensors")
    assert_same_vision_weights(build_blip2_vision(str(bare_folder)), full_model.vision_model)


def test_sharded_checkpoint_reads_only_vision_shards(full_model, tmp_path: Path) -> None:
    full_model.save_pretrained(tmp_path, max_shard_size="20KB")
    weight_map = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    vision_files = {f for k, f in weight_map.items() if k.startswith("vision_model.")}
    other_files = set(weight_map.values()) - vision_files
    assert other_files, "the tiny checkpoint should have a shard without vision tensors"
    for name in other_files:  # the language model's shards are never opened
        (tmp_path / name).unlink()
    assert_same_vision_weights(build_blip2_vision(str(tmp_path)), full_model.vision_model)
    (tmp_path / sorted(vision_files)[0]).unlink()
    with pytest.raises(NeckkitError, match=rf"{sorted(vision_files)[0]} not found"):
        build_blip2_vision(str(tmp_path))


def _copy_with_tensors(bare_folder: Path, destination: Path, edit) -> Path:
    shutil.copytree(bare_folder, destination)
    tensors = load_file(bare_folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, destination / "model.safetensors")
    return destination


def test_wrong_shape_names_the_key(bare_folder: Path, tmp_path: Path) -> None:
    def widen(tensors):
        tensors["post_layernorm.weight"] = torch.ones(25)

    folder = _copy_with_tensors(bare_folder, tmp_path / "bad", widen)
    with pytest.raises(NeckkitError, match=r"wrong shape post_layernorm\.weight \[25\] \(model \[24\]\)") as error:
        build_blip2_vision(str(folder))
    assert "\n" not in str(error.value)


def test_missing_and_unexpected_keys_are_named(bare_folder: Path, tmp_path: Path) -> None:
    def rename(tensors):
        tensors["encoder.layers.9.mlp.fc1.weight"] = tensors.pop("encoder.layers.1.mlp.fc1.weight")

    folder = _copy_with_tensors(bare_folder, tmp_path / "bad", rename)
    with pytest.raises(NeckkitError) as error:
        build_blip2_vision(str(folder))
    message = str(error.value)
    assert "missing encoder.layers.1.mlp.fc1.weight" in message
    assert "unexpected encoder.layers.9.mlp.fc1.weight" in message
    assert "\n" not in message


def test_checkpoint_without_vision_tensors(full_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-vision"
    shutil.copytree(full_folder, folder)
    tensors = {k: v for k, v in load_file(full_folder / "model.safetensors").items() if not k.startswith("vision_model.")}
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(NeckkitError, match=r"hold no tensors named vision_model\.\*$"):
        build_blip2_vision(str(folder))


def test_other_model_type_is_refused(bare_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    shutil.copytree(bare_folder, folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(NeckkitError, match="model_type 'clip' in config.json; expected 'blip-2'"):
        build_blip2_vision(str(folder))


def test_folder_without_safetensors(bare_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin-only"
    folder.mkdir()
    shutil.copy(bare_folder / "config.json", folder)
    with pytest.raises(NeckkitError, match="model.safetensors not found") as error:
        build_blip2_vision(str(folder))
    assert "\n" not in str(error.value)


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match="does not exist") as error:
        build_blip2_vision(str(tmp_path / "nowhere"))
    assert "\n" not in str(error.value)


# -- hub ids, offline --------------------------------------------------------------------------


def test_uncached_hub_id_offline_is_one_clear_line(hub_cache: Path) -> None:
    with pytest.raises(NeckkitError) as error:
        build_blip2_vision()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"cannot load BLIP-2 weights {HUB_ID!r} from the Hugging Face cache (HF_HUB_OFFLINE is set)")
    assert f"hf download {HUB_ID}" in message and "--random-init" in message


def test_invalid_hub_id(hub_cache: Path) -> None:
    with pytest.raises(NeckkitError, match="neither a local folder nor a hub id"):
        build_blip2_vision("not a repo!")


def test_cached_hub_id_loads_offline(hub_cache: Path, full_folder: Path, full_model) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--neckkit-test--tiny-blip2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(full_folder, repo / "snapshots" / commit)
    assert_same_vision_weights(build_blip2_vision("neckkit-test/tiny-blip2"), full_model.vision_model)
