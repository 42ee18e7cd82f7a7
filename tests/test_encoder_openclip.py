"""open_clip encoders (``openclip``, ``eva02-l``): the split forward, weights loading, errors, text tower."""

from __future__ import annotations

import functools
from pathlib import Path

import open_clip
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.models.eva import Eva
from torch import nn

from neckkit import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.plugins.encoders.openclip import OpenClipEncoder, build_eva02_l, build_openclip

TINY_TEXT = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
TINY_VISION = dict(image_size=112, patch_size=16, width=32, layers=3, head_width=16)
# Native towers built straight from open_clip.CLIP for configurations no built-in tiny model has.
VARIANTS = {
    "avg-final-ln": dict(pool_type="avg", final_ln_after_pool=True),
    "custom-block": dict(qk_norm=True, scale_attn=True, no_ln_pre=True, ls_init_value=0.1),
}
KINDS = ("vit", "eva", *VARIANTS)


@functools.cache
def tiny(kind: str) -> OpenClipEncoder:
    """One tiny encoder per kind for the whole module (built once: open_clip models are slow to make)."""
    if kind == "vit":
        return build_openclip(model="ViT-B-16", tiny=True)
    if kind == "eva":
        return build_eva02_l(tiny=True)
    torch.manual_seed(1)
    model = open_clip.CLIP(embed_dim=16, vision_cfg=dict(TINY_VISION, **VARIANTS[kind]), text_cfg=TINY_TEXT)
    return OpenClipEncoder(model, "ViT-B-16")


def pixels(encoder: OpenClipEncoder, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return encoder.preprocess(torch.rand(batch, 3, encoder.image_size + 20, encoder.image_size + 40, generator=generator))


def block_modules(encoder: OpenClipEncoder) -> nn.ModuleList:
    return encoder.visual.trunk.blocks if encoder.kind == "eva" else encoder.visual.transformer.resblocks


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # Same modules in the same order: equal up to float rounding. atol is tiny because the tiny
    # EVA's outputs are ~1e-4 (timm scales its random head by 1e-3).
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-8)


def one_line_error(match: str, function, *args, **kwargs) -> str:
    with pytest.raises(NeckkitError, match=match) as error:
        function(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


# -- the split forward ------------------------------------------------------------------------------


def test_tiny_attributes() -> None:
    vit, eva = tiny("vit"), tiny("eva")
    assert (vit.kind, vit.width, vit.grid, vit.image_size, vit.num_layers, vit.embed_dim) == ("vit", 32, 14, 224, 4, 16)
    assert (eva.kind, eva.width, eva.grid, eva.image_size, eva.num_layers, eva.embed_dim) == ("eva", 32, 16, 224, 4, 16)
    for encoder in (vit, eva):
        assert encoder.has_class_token and encoder.entry_layer == 2 and encoder.has_text_tower
        assert encoder.embed(pixels(encoder)).shape == (2, encoder.grid**2 + 1, encoder.width)
    assert isinstance(eva.visual.trunk, Eva)
    assert eva.visual.trunk.rope is not None  # the tiny EVA keeps EVA02's rotary embedding


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_split_forward_equals_encode_image(kind: str) -> None:
    encoder = tiny(kind)
    p = pixels(encoder)
    expected = encoder.model.encode_image(p)
    assert expected.shape == (2, encoder.embed_dim)
    assert_same(encoder.head(encoder.blocks(encoder.embed(p), 0, encoder.num_layers)), expected)
    assert_same(encoder.encode(p), expected)
    assert_same(encoder.encode_from(encoder.blocks(encoder.embed(p), 0, 2), 2), expected)


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_hidden_states_are_the_library_block_inputs_and_outputs(kind: str) -> None:
    encoder = tiny(kind)
    blocks = block_modules(encoder)
    seen: list[torch.Tensor] = []
    handles = [blocks[0].register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)]
    handles += [block.register_forward_hook(lambda module, args, output: seen.append(output)) for block in blocks]
    p = pixels(encoder, seed=3)
    try:
        encoder.model.encode_image(p)
    finally:
        for handle in handles:
            handle.remove()
    states = encoder.hidden_states(encoder.embed(p), 0)
    assert len(states) == len(seen) == encoder.num_layers + 1
    for ours, library in zip(states, seen, strict=True):
        assert_same(ours, library)
    later = encoder.hidden_states(states[2], 2)
    assert later[:2] == (None, None)
    for ours, library in zip(later[2:], seen[2:], strict=True):
        assert_same(ours, library)


@pytest.mark.parametrize("kind", ["vit", "eva"])
@settings(max_examples=6, deadline=None)
@given(k=st.integers(0, 4), seed=st.integers(0, 2**16))
@torch.no_grad()
def test_blocks_compose_at_any_split(kind: str, k: int, seed: int) -> None:
    encoder = tiny(kind)
    tokens = encoder.embed(pixels(encoder, batch=1, seed=seed))
    whole = encoder.blocks(tokens, 0, encoder.num_layers)
    assert_same(encoder.blocks(encoder.blocks(tokens, 0, k), k, encoder.num_layers), whole)


def test_block_range_is_checked() -> None:
    encoder = tiny("vit")
    tokens = encoder.embed(pixels(encoder, batch=1))
    assert encoder.blocks(tokens, 3, 3) is tokens
    for start, end in ((2, 1), (-1, 2), (0, 5)):
        one_line_error("has blocks 0..4", encoder.blocks, tokens, start, end)


def test_preprocess_uses_the_model_mean_and_std() -> None:
    encoder = tiny("eva")
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    assert encoder.mean == open_clip.OPENAI_DATASET_MEAN and encoder.std == open_clip.OPENAI_DATASET_STD
    out = encoder.preprocess(mean.expand(2, 3, 300, 250).clone())
    assert out.shape == (2, 3, 224, 224)
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-5, rtol=0)
    white = encoder.preprocess(torch.ones(1, 3, 224, 224))
    expected = (1 - mean) / torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(white, expected.expand_as(white))


# -- unsupported towers and options -------------------------------------------------------------------


def test_attentional_pool_and_other_towers_are_refused() -> None:
    coca_like = open_clip.CLIP(embed_dim=16, vision_cfg=dict(TINY_VISION, attentional_pool=True, attn_pooler_heads=2), text_cfg=TINY_TEXT)
    one_line_error("attentional pooling", OpenClipEncoder, coca_like, "ViT-B-16")
    one_line_error("attentional pooling", build_openclip, model="coca_ViT-B-32", tiny=True)
    one_line_error("ResNet", build_openclip, model="RN50", tiny=True)
    one_line_error("only EVA trunks", build_openclip, model="ViT-B-16-SigLIP", tiny=True)


def test_entry_layer_is_validated() -> None:
    model = tiny("vit").model
    assert OpenClipEncoder(model, "ViT-B-16", entry_layer=0).entry_layer == 0
    assert OpenClipEncoder(model, "ViT-B-16", entry_layer=4).entry_layer == 4
    for bad in (-1, 5, True, 2.0, "2"):
        one_line_error(r"entry_layer must be an integer in 0\.\.4", OpenClipEncoder, model, "ViT-B-16", entry_layer=bad)
    one_line_error("entry_layer", build_eva02_l, tiny=True, entry_layer=9)


def test_openclip_without_model_explains_usage() -> None:
    message = one_line_error("needs an open_clip model name", build_openclip)
    assert "model='ViT-B-16' with pretrained='laion2b_s34b_b88k'" in message
    message = one_line_error("needs pretrained=", build_openclip, model="ViT-B-16")
    assert "laion2b_s34b_b88k" in message and "random_init=true" in message


# -- weights ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vit", "eva"])
def test_checkpoint_file_loads_into_the_tiny_architecture(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generator = torch.Generator().manual_seed(7)
    saved = {
        name: tensor + torch.randn(tensor.shape, generator=generator) if tensor.is_floating_point() else tensor.clone()
        for name, tensor in tiny(kind).model.state_dict().items()
    }
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(saved, path)

    build = build_eva02_l if kind == "eva" else functools.partial(build_openclip, model="ViT-B-16")
    encoder = build(tiny=True, pretrained=str(path))
    loaded = encoder.model.state_dict()
    assert loaded.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    with torch.no_grad():  # the loaded weights are the ones the split forward runs
        p = pixels(encoder)
        assert_same(encoder.encode(p), encoder.model.encode_image(p))
        assert not torch.allclose(encoder.encode(p), tiny(kind).encode(p))


def test_checkpoint_file_gets_the_preprocessing_its_model_tags_agree_on(tmp_path: Path) -> None:
    # Every CLIPA tag uses ImageNet mean/std, bilinear and squash; a bare file brings no such
    # metadata, so the encoder takes what all the model's tags agree on.
    path = tmp_path / "clipa.pt"
    torch.save(build_openclip(model="ViT-L-14-CLIPA", tiny=True).model.state_dict(), path)
    encoder = build_openclip(model="ViT-L-14-CLIPA", tiny=True, pretrained=str(path))
    assert encoder.mean == (0.485, 0.456, 0.406) and encoder.std == (0.229, 0.224, 0.225)
    assert encoder.resize_mode == "squash" and encoder.interpolation == TF.InterpolationMode.BILINEAR
    x01 = torch.rand(1, 3, 150, 300)
    squashed = TF.resize(x01, [224, 224], interpolation=TF.InterpolationMode.BILINEAR, antialias=True).clamp(0, 1)
    expected = (squashed - torch.tensor(encoder.mean).view(1, 3, 1, 1)) / torch.tensor(encoder.std).view(1, 3, 1, 1)
    torch.testing.assert_close(encoder.preprocess(x01), expected)
    with torch.no_grad():  # CLIPA: no ln_pre, average pooling, ln_post after the pool
        p = encoder.preprocess(x01)
        assert_same(encoder.encode(p), encoder.model.encode_image(p))


def test_broken_checkpoint_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    one_line_error(f"cannot load open_clip checkpoint {path}", build_eva02_l, tiny=True, pretrained=str(path))
    other = tmp_path / "vit.pt"
    torch.save(tiny("vit").model.state_dict(), other)  # a ViT-B-16-family file into the EVA family
    one_line_error("cannot load open_clip checkpoint", build_eva02_l, tiny=True, pretrained=str(other))


def test_uncached_tag_offline_names_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    message = one_line_error("cannot load open_clip weights EVA02-L-14/merged2b_s4b_b131k", build_eva02_l, cache_dir=str(tmp_path))
    assert "HF_HUB_OFFLINE is set" in message
    assert "hf download timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k" in message
    assert "random_init=true" in message
    message = one_line_error("ViT-B-16/laion2b_s34b_b88k", build_openclip, model="ViT-B-16", pretrained="laion2b_s34b_b88k", cache_dir=str(tmp_path))
    assert "hf download laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in message


def test_unknown_names_tags_and_files_are_one_line() -> None:
    message = one_line_error("unknown pretrained tag 'laion2b_s34b_b89k'", build_openclip, model="ViT-B-16", pretrained="laion2b_s34b_b89k")
    assert "did you mean laion2b_s34b_b88k" in message
    one_line_error("checkpoint file not found: /nonexistent/weights.pt", build_eva02_l, pretrained="/nonexistent/weights.pt")
    one_line_error("checkpoint file not found", build_openclip, model="ViT-B-16", tiny=True, pretrained="missing.safetensors")
    message = one_line_error("unknown open_clip model 'ViT-B-61'", build_openclip, model="ViT-B-61")
    assert "did you mean" in message and "ViT-B-16" in message
    one_line_error("not the tag", build_eva02_l, tiny=True, pretrained="merged2b_s4b_b131k")
    one_line_error("either pretrained or random_init", build_openclip, model="ViT-B-16", pretrained="openai", random_init=True)


# -- text tower ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vit", "eva"])
def test_text_tower_holds_exactly_the_text_weights(kind: str) -> None:
    encoder = tiny(kind)
    model = encoder.model
    count = lambda module: sum(parameter.numel() for parameter in module.parameters())  # noqa: E731
    logits = model.logit_scale.numel() + (model.logit_bias.numel() if model.logit_bias is not None else 0)
    assert count(encoder.text_tower()) == count(model) - count(model.visual) - logits
    names = encoder.text_tower().state_dict().keys()
    assert {"token_embedding.weight", "positional_embedding", "ln_final.weight"} <= names
    assert not any(name.startswith(("visual", "trunk", "conv1")) for name in names)


@pytest.mark.parametrize("kind", ["vit", "eva"])
def test_encode_text_is_the_model_text_forward(kind: str) -> None:
    encoder = tiny(kind)
    texts = ["a photo of a cat.", "a diagram"]
    with torch.no_grad():
        expected = encoder.model.encode_text(open_clip.get_tokenizer("ViT-B-16")(texts))
    out = encoder.encode_text(texts)
    assert out.shape == (2, encoder.embed_dim)
    assert_same(out, expected)
    assert not torch.allclose(out.norm(dim=-1), torch.ones(2))  # unnormalised


def test_text_classifier_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path))
    encoder = tiny("eva")
    names, templates = ["cat", "dog", "school bus"], ["a photo of a {}.", "a drawing of a {}."]
    first = encoder.text_classifier(names, templates)
    assert first.shape == (encoder.embed_dim, 3)
    torch.testing.assert_close(first.norm(dim=0), torch.ones(3))
    assert len(list((tmp_path / "classifiers").iterdir())) == 1

    def no_text_forward(texts: list[str]) -> torch.Tensor:
        raise AssertionError("the cached classifier must not run the text tower")

    monkeypatch.setattr(encoder, "encode_text", no_text_forward)
    assert torch.equal(encoder.text_classifier(names, templates), first)


# -- registration ----------------------------------------------------------------------------------------


def test_builtin_plugin_registers_both_encoders(host: PluginHost) -> None:
    encoders = host.components("encoder")
    eva, generic = encoders.get("eva02-l"), encoders.get("openclip")
    assert eva.info.tiny and generic.info.tiny
    assert eva.info.pretrained == ("merged2b_s4b_b131k",)
    assert {"pretrained", "tiny", "random_init", "entry_layer"} <= eva.info.options.keys()
    assert {"model", "pretrained", "tiny", "random_init", "entry_layer"} <= generic.info.options.keys()
    one_line_error("needs an open_clip model name, e.g. model='ViT-B-16'", generic.build)
    built = generic.build(tiny=True, entry_layer=1)  # a bare tiny=True builds ViT-B-16's family
    assert (built.model_name, built.kind, built.entry_layer, built.grid) == ("ViT-B-16", "vit", 1, 14)
    assert host.failed == []
