"""The registered Qwen plugins: ``qwen3-vl-vit`` / ``qwen2.5-vl-vit`` (native-resolution encoders) and
``qwen3-vl`` / ``qwen2.5-vl`` (MLLMs), built through the host. Tiny models, offline, float32, CPU.

The Qwen3-VL MLLM against transformers' own pixel path is tests/test_mllm_qwen_vl.py; the towers against
transformers' vision models are tests/test_encoder_qwen_vl.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.host.options import build_component
from neckkit.interfaces import MLLM, VisualEncoder, grid_options
from neckkit.loading.weights import fingerprint
from neckkit.plugins.encoders.qwen_vl import Qwen3VLTower, Qwen25VLTower
from neckkit.plugins.mllms.qwen_vl import QWEN3_VL, QWEN25_VL, meta_parameters

ENCODER_OF = {"qwen3-vl": "qwen3-vl-vit", "qwen2.5-vl": "qwen2.5-vl-vit"}
MLLMS = list(ENCODER_OF)
PROMPTS = ["What is in the image?", "Describe it."]
# Square, wide, tall. The tiny processors keep these near their size: Qwen3-VL (32 px units) exactly,
# Qwen2.5-VL (28 px units) rounded: 56x56, 56x140, 84x28.
SIZES = [(64, 64), (64, 128), (96, 32)]
GRIDS = {"qwen3-vl": [(4, 4), (4, 8), (6, 2)], "qwen2.5-vl": [(4, 4), (4, 10), (6, 2)]}


@pytest.fixture(scope="module")
def module_host() -> PluginHost:
    plugin_host = PluginHost(env={})
    plugin_host.load_builtins()
    return plugin_host


@pytest.fixture(scope="module")
def tiny(module_host: PluginHost) -> dict[str, tuple[VisualEncoder, MLLM]]:
    """The tiny encoder and MLLM of each family, built by the host at the default seed."""
    return {
        name: (build_component(module_host, "encoder", ENCODER_OF[name], {"tiny": True})[1],
               build_component(module_host, "mllm", name, {"tiny": True})[1])
        for name in MLLMS
    }


def images(size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


# -- registration ------------------------------------------------------------------------------------


def test_the_registry_lists_the_four_qwen_plugins_with_their_options(module_host: PluginHost) -> None:
    encoders, mllms = module_host.components("encoder"), module_host.components("mllm")
    assert {"qwen3-vl-vit", "qwen2.5-vl-vit"} <= {component.name for component in encoders}
    assert {"qwen3-vl", "qwen2.5-vl"} <= {component.name for component in mllms}
    for name, encoder in ENCODER_OF.items():
        encoder_info, mllm_info = encoders.get(encoder).info, mllms.get(name).info
        assert encoder_info.tiny and mllm_info.tiny and not encoder_info.tiny_weights
        assert sorted(encoder_info.options) == ["entry_layer", "random_init", "size", "tiny", "weights"]
        assert sorted(mllm_info.options) == ["device_map", "dtype", "entry_layer", "random_init", "size", "tiny",
                                             "weights"]
        assert encoder in mllm_info.description and "native resolution" in encoder_info.description
    assert encoders.get("qwen3-vl-vit").info.pretrained == (
        "Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")
    assert mllms.get("qwen2.5-vl").info.pretrained == ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")


@pytest.mark.parametrize("name", MLLMS)
def test_tiny_encoder_weights_equal_the_tiny_mllm_tower_at_any_seed(module_host: PluginHost, name: str) -> None:
    prints = []
    for seed in (0, 2):
        _, encoder = build_component(module_host, "encoder", ENCODER_OF[name], {"tiny": True, "seed": seed})
        _, mllm = build_component(module_host, "mllm", name, {"tiny": True, "seed": seed})
        assert mllm.encoder == ENCODER_OF[name]
        tower = mllm.visual_encoder
        assert fingerprint(encoder.visual) == fingerprint(tower.visual)
        assert (tower.processor, tower.image_size, tower.grid, tower.embed_dim) == (
            encoder.processor, encoder.image_size, encoder.grid, encoder.embed_dim)
        prints.append(fingerprint(encoder.visual))
    assert prints[0] != prints[1]  # the seed reaches the tower


# -- the encoder interface ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    # width, blocks, patch, grid, image_size, embed_dim (Qwen3-VL: merger + 2 DeepStack taps of 48)
    ("qwen3-vl", (32, 4, 16, 8, 64, 144)),
    ("qwen2.5-vl", (32, 4, 14, 8, 112, 48)),
])
def test_tiny_encoders_are_native_resolution_encoders(tiny, name: str, expected: tuple[int, ...]) -> None:
    encoder, mllm = tiny[name]
    assert isinstance(encoder, VisualEncoder) and isinstance(mllm, MLLM)
    assert encoder.native_resolution and not encoder.has_class_token and encoder.text_tower() is None
    assert (encoder.width, encoder.num_layers, encoder.patch_size, encoder.grid, encoder.image_size,
            encoder.embed_dim) == expected
    assert encoder.entry_layer == mllm.entry_layer == 2 and mllm.feature_layer == -1


def test_real_sizes_have_the_documented_grid_image_size_and_embed_dim() -> None:
    qwen3 = {size: Qwen3VLTower.random_init(size, device="meta") for size in ("2b", "8b")}
    assert (qwen3["2b"].grid, qwen3["2b"].image_size, qwen3["2b"].embed_dim) == (48, 512, 4 * 2048)
    assert (qwen3["8b"].grid, qwen3["8b"].image_size, qwen3["8b"].embed_dim) == (48, 512, 4 * 4096)
    qwen25 = Qwen25VLTower.random_init("7b", device="meta")
    assert (qwen25.grid, qwen25.image_size, qwen25.embed_dim, qwen25.token_grid(504, 504)) == (36, 504, 3584, (36, 36))
    assert qwen3["2b"].token_grid(512, 512) == (32, 32)
    # A 640x480 photo: Qwen3-VL keeps it (multiples of 32), Qwen2.5-VL rounds to multiples of 28.
    assert qwen3["2b"].input_size(480, 640) == (480, 640) and qwen3["2b"].token_grid(480, 640) == (30, 40)
    assert qwen25.input_size(480, 640) == (476, 644) and qwen25.token_grid(480, 640) == (34, 46)


@pytest.mark.parametrize("name", MLLMS)
def test_geometry_of_three_aspect_ratios(tiny, name: str) -> None:
    encoder, _ = tiny[name]
    for (height, width), grid in zip(SIZES, GRIDS[name], strict=True):
        assert encoder.token_grid(height, width) == grid
        assert encoder.input_size(height, width) == (grid[0] * encoder.patch_size, grid[1] * encoder.patch_size)
        assert encoder.view_box(height, width) == (0.0, 0.0, height, width)  # nothing is cropped
        pixels = encoder.preprocess(images((height, width)))
        assert pixels.shape[-2:] == encoder.input_size(height, width)
        assert encoder.grid_of(pixels) == grid
        assert encoder.geometric_preprocess(images((height, width))).shape[-2:] == encoder.input_size(height, width)


@pytest.mark.parametrize("name", MLLMS)
def test_finish_from_gives_the_llm_features_per_llm_token(tiny, name: str) -> None:
    encoder, _ = tiny[name]
    pixels = encoder.preprocess(images((64, 128)))
    gh, gw = grid = encoder.grid_of(pixels)
    with torch.no_grad():
        tokens = encoder.embed(pixels)  # [2, gh*gw, width]
        features = encoder.finish_from(tokens, 0, grid)
        output = encoder(pixels)
        entered = encoder.finish_from(encoder.run_blocks(tokens, 0, 2, grid), 2, grid)
    assert tokens.shape == (2, gh * gw, encoder.width)
    assert features.shape == (2, (gh // 2) * (gw // 2), encoder.embed_dim)
    assert torch.equal(features, torch.cat([output.merged, *output.deepstack], dim=-1))
    assert len(output.deepstack) == (2 if name == "qwen3-vl" else 0)
    assert torch.equal(encoder.encode(pixels), features)
    assert torch.equal(entered, features)  # split at the entry block: bitwise the same
    states = encoder.hidden_states(encoder.run_blocks(tokens, 0, 2, grid), 2, grid=grid)
    assert states[:2] == (None, None) and len(states) == encoder.num_layers + 1


# -- the MLLMs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MLLMS)
@pytest.mark.parametrize("size", SIZES, ids=["square", "wide", "tall"])
def test_neck_path_answers_equal_the_pixel_path(tiny, name: str, size: tuple[int, int]) -> None:
    """Tokens from the registered tiny encoder's first blocks, entered at block 2 of the tiny MLLM's tower,
    give the MLLM's own answers from pixels (greedy)."""
    encoder, mllm = tiny[name]
    x01 = images(size)
    grid = encoder.token_grid(*size)
    pixels = encoder.preprocess(x01)
    with torch.no_grad():
        tokens = encoder.run_blocks(encoder.embed(pixels), 0, encoder.entry_layer, grid)
    assert tokens.shape == (2, grid[0] * grid[1], encoder.width)
    answers = mllm.generate(tokens, PROMPTS, start=encoder.entry_layer, **grid_options(encoder, grid),
                            max_new_tokens=6)
    assert answers == mllm.generate_from_pixels(pixels, PROMPTS, max_new_tokens=6)
    with torch.no_grad():  # the tiny answers read the image: two images, one prompt, other next-token logits
        logits = mllm.logits(tokens, PROMPTS[0], grid=grid, start=encoder.entry_layer)[:, -1]
    assert not torch.allclose(logits[0], logits[1], atol=1e-3)
    inputs = mllm.prompt_inputs(PROMPTS, grid)
    pads = (inputs["input_ids"] == mllm.image_token_id).sum(1)
    assert pads.tolist() == [(grid[0] // 2) * (grid[1] // 2)] * 2
    assert inputs["image_grid_thw"].tolist() == [[1, *grid]] * 2


@pytest.mark.parametrize("size", SIZES, ids=["square", "wide", "tall"])
def test_qwen25_vl_features_give_the_library_logits_and_answers_bitwise(tiny, size: tuple[int, int]) -> None:
    """Qwen2.5-VL through ``mm_encoder_outputs`` equals ``Qwen2_5_VLForConditionalGeneration`` given the
    ``Qwen2_5_VLProcessor``'s ``pixel_values`` (same float images, ``do_rescale=False``)."""
    encoder, mllm = tiny["qwen2.5-vl"]
    x01 = images(size)
    texts = [mllm.format_prompt(prompt) for prompt in PROMPTS]
    reference = dict(mllm.processor(images=list(x01), text=texts, do_rescale=False, padding=True, return_tensors="pt"))
    pixels = mllm.preprocess(x01)
    grid = encoder.grid_of(pixels)
    ours = mllm.prompt_inputs(PROMPTS, grid)
    for key, value in ours.items():
        assert torch.equal(value, reference[key]), key
    tokens = encoder.run_blocks(encoder.embed(pixels), 0, 2, grid)
    with torch.no_grad():
        assert torch.equal(mllm.logits(tokens, PROMPTS, grid=grid, start=2), mllm.model(**reference).logits)
        theirs = mllm.model.generate(**reference, do_sample=False, max_new_tokens=6,
                                     pad_token_id=mllm.tokenizer.pad_token_id)[:, reference["input_ids"].shape[1]:]
    assert torch.equal(mllm.generate_ids(tokens, PROMPTS, grid=grid, start=2, max_new_tokens=6), theirs)


def test_qwen25_vl_prompts_get_the_instruct_system_turn(tiny) -> None:
    _, mllm = tiny["qwen2.5-vl"]
    assert mllm.format_prompt("Hi") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("name", MLLMS)
def test_a_missing_grid_is_a_clear_error(tiny, name: str) -> None:
    encoder, mllm = tiny[name]
    tokens = torch.zeros(1, 16, encoder.width)
    with pytest.raises(NeckkitError, match=rf"^{name} reads images at native resolution: pass grid=\(gh, gw\)"):
        mllm.generate(tokens, "Hi", start=2)
    with pytest.raises(NeckkitError, match=r"reads images at native resolution: pass the token grid \(gh, gw\)"):
        grid_options(encoder, None)
    with pytest.raises(NeckkitError, match=r"reads images at native resolution"):
        encoder.finish_from(tokens, 2)
    assert grid_options(encoder, (4, 4)) == {"grid": (4, 4)}


# -- weights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MLLMS)
def test_each_factory_loads_a_save_pretrained_folder(module_host: PluginHost, tiny, name: str,
                                                     tmp_path: Path) -> None:
    encoder, mllm = tiny[name]
    full, bare = tmp_path / "full", tmp_path / "bare"
    mllm.model.save_pretrained(full)
    mllm.processor.save_pretrained(full)
    encoder.visual.save_pretrained(bare)  # a bare tower: no processor values, the family's defaults
    _, loaded_mllm = build_component(module_host, "mllm", name, {"weights": str(full)})
    _, loaded_encoder = build_component(module_host, "encoder", ENCODER_OF[name], {"weights": str(full)})
    _, bare_encoder = build_component(module_host, "encoder", ENCODER_OF[name], {"weights": str(bare)})
    for tower in (loaded_mllm.visual_encoder, loaded_encoder, bare_encoder):
        assert fingerprint(tower.visual) == fingerprint(encoder.visual)
    assert loaded_encoder.processor == loaded_mllm.visual_encoder.processor == encoder.processor  # the tiny sizes
    assert bare_encoder.processor == (QWEN3_VL if name == "qwen3-vl" else QWEN25_VL).default_processor
    assert fingerprint(loaded_mllm.model) == fingerprint(mllm.model)
    pixels = mllm.preprocess(images((64, 128)))
    assert loaded_mllm.generate_from_pixels(pixels, PROMPTS, max_new_tokens=4) == mllm.generate_from_pixels(
        pixels, PROMPTS, max_new_tokens=4)


def test_missing_folders_other_models_and_sizes_are_one_line_errors(module_host: PluginHost, tiny, tmp_path: Path,
                                                                    hub_cache: Path) -> None:
    _, qwen3 = tiny["qwen3-vl"]
    qwen3.model.save_pretrained(tmp_path)
    qwen3.processor.save_pretrained(tmp_path)
    cases = [
        ("mllm", "qwen2.5-vl", {"weights": str(tmp_path)},
         rf"^the local folder '{tmp_path}' holds a 'qwen3_vl' model, not Qwen2.5-VL: qwen2.5-vl reads 'qwen2_5_vl'"),
        ("encoder", "qwen2.5-vl-vit", {"weights": str(tmp_path)}, r"model_type 'qwen3_vl' in config.json; expected"),
        ("mllm", "qwen3-vl", {"weights": str(tmp_path / "missing")}, r"Qwen3-VL weights folder '.*missing' does not exist"),
        ("encoder", "qwen3-vl-vit", {"weights": str(tmp_path / "missing")}, r"folder '.*missing' does not exist"),
        ("mllm", "qwen3-vl", {"size": "8b"}, r"^cannot load Qwen3-VL weights 'Qwen/Qwen3-VL-8B-Instruct' from .*--mllm-weights"),
        ("encoder", "qwen2.5-vl-vit", {"size": "7b"}, r"^cannot load Qwen2.5-VL weights 'Qwen/Qwen2.5-VL-7B-Instruct'"),
        ("encoder", "qwen3-vl-vit", {"size": "9b"}, r"Qwen3-VL size must be one of 2b, 4b, 8b, got '9b'"),
        ("mllm", "qwen3-vl", {"size": "2b", "weights": str(tmp_path)}, r"size picks the default weights"),
        ("encoder", "qwen3-vl-vit", {"size": "2b", "tiny": True}, r"size and tiny exclude each other"),
    ]
    for kind, name, options, message in cases:
        with pytest.raises(NeckkitError, match=message) as caught:
            build_component(module_host, kind, name, options)
        assert "\n" not in str(caught.value), (name, options)


@pytest.mark.parametrize(("family", "size", "expected"), [
    # Qwen3-VL-2B: 28 layers of width 2048 (16 heads of 128, 8 KV heads, MLP 6144), 151936 tied embeddings.
    (QWEN3_VL, "2b", {"vision": 406_957_056, "language_model": 1_720_574_976, "total": 2_127_532_032}),
    # Qwen2.5-VL-3B: 36 layers of width 2048 (16 heads, 2 KV heads, MLP 11008), tied embeddings: "3.75B".
    (QWEN25_VL, "3b", {"vision": 668_684_288, "language_model": 3_085_938_688, "total": 3_754_622_976}),
])
def test_random_init_builds_the_real_architecture(family, size: str, expected: dict[str, int]) -> None:
    """Counted on the meta device: a real-size random model takes 8-15 GB in float32."""
    layers = 28 if size == "2b" else 36
    width, heads, kv_heads, mlp = 2048, 16, 8 if size == "2b" else 2, 6144 if size == "2b" else 11008
    attention = width * heads * 128 * 2 + width * kv_heads * 128 * 2
    attention += 2 * 128 if family is QWEN3_VL else heads * 128 + 2 * kv_heads * 128  # q/k norms, or q/k/v biases
    per_layer = attention + 3 * width * mlp + 2 * width
    assert expected["language_model"] == 151_936 * width + layers * per_layer + width
    assert meta_parameters(family, size) == expected
