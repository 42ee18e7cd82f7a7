"""Qwen3-VL / Qwen2.5-VL vision towers: the raster-order split equals transformers' forward bitwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from neckkit.errors import NeckkitError
from neckkit.plugins.encoders.qwen_vl import (
    QWEN3_VL_PROCESSOR,
    QWEN25_VL_PROCESSOR,
    ProcessorSpec,
    Qwen3VLTower,
    Qwen25VLTower,
    parameter_count,
    tiny_qwen3_vl_vision_config,
    tiny_qwen25_vl_vision_config,
)

Tower = Qwen3VLTower | Qwen25VLTower
TOWERS: dict[str, Tower] = {"qwen3": Qwen3VLTower.random_init(tiny=True), "qwen25": Qwen25VLTower.random_init(tiny=True)}
# Sizes after the resize (multiples of patch * merge): square, wide, tall; Qwen3-VL's 160x96 is a
# 10x6 grid, beyond the tiny 8x8 position table; Qwen2.5-VL's 84x168 and 140x56 pad their windows.
SIZES = {"qwen3": [(64, 64), (64, 128), (96, 32), (160, 96)], "qwen25": [(112, 112), (84, 168), (140, 56)]}
CASES = [(name, size) for name, sizes in SIZES.items() for size in sizes]
ODD_SIZES = [(451, 300), (600, 400), (640, 427), (37, 1000), (1000, 37)]


def _pixels(tower: Tower, size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    pixels = tower.pixels(torch.rand(batch, 3, *size, generator=generator))
    assert pixels.shape == (batch, 3, *size)  # the tiny towers' min_pixels keep these sizes
    return pixels


def _library(tower: Tower, pixels: torch.Tensor) -> object:
    """transformers' own ``visual(pixel_values, grid_thw=...)``, with every block's hidden states."""
    pixel_values, grid_thw = tower.library_inputs(pixels)
    with torch.no_grad():
        return tower.visual(pixel_values, grid_thw=grid_thw, output_hidden_states=True)


def _deepstack(reference: object) -> list[torch.Tensor]:
    return list(getattr(reference, "deepstack_features", None) or [])


@pytest.mark.parametrize(("name", "size"), CASES)
def test_split_forward_equals_library_forward_bitwise(name: str, size: tuple[int, int]) -> None:
    tower = TOWERS[name]
    pixels = _pixels(tower, size)
    grid = tower.grid_of(pixels)
    assert grid == (size[0] // tower.patch_size, size[1] // tower.patch_size)
    reference = _library(tower, pixels)
    with torch.no_grad():
        tokens = tower.embed(pixels)
        assert tokens.shape == (1, grid[0] * grid[1], tower.width)
        features: dict[int, torch.Tensor] = {}
        last = tower.blocks(tokens, 0, tower.num_layers, grid, **({"deepstack": features} if name == "qwen3" else {}))
        merged = tower.head(last, grid)
        output = tower(pixels)
    llm_tokens = grid[0] * grid[1] // 4
    assert merged.shape == (1, llm_tokens, tower.out_dim)
    assert torch.equal(merged[0], reference.pooler_output)
    assert torch.equal(output.merged, merged)
    library_states = [tower.to_raster(state, grid) for state in reference.hidden_states]
    assert torch.equal(library_states[0], tokens)  # hidden_states[0]: the embedding, here in raster order
    assert torch.equal(library_states[-1], last)
    taps = list(tower.deepstack_taps)
    assert len(_deepstack(reference)) == len(taps) == len(output.deepstack) == (2 if name == "qwen3" else 0)
    assert list(features) == taps
    for tap, ours, theirs in zip(taps, output.deepstack, _deepstack(reference), strict=True):
        assert torch.equal(ours[0], theirs) and torch.equal(features[tap][0], theirs)


@pytest.mark.parametrize("name", ["qwen3", "qwen25"])
def test_embed_is_raster_ordered(name: str) -> None:
    """Token r*gw + c is the patch at row r, column c (checked without the library's layout)."""
    tower = TOWERS[name]
    pixels = _pixels(tower, SIZES[name][1])
    gh, gw = tower.grid_of(pixels)
    p = tower.patch_size
    patches = pixels.unfold(2, p, p).unfold(3, p, p)  # [1, 3, gh, gw, p, p]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(gh * gw, 3, 1, p, p).expand(-1, -1, 2, -1, -1)
    with torch.no_grad():
        expected = tower.visual.patch_embed.proj(patches.contiguous()).reshape(gh * gw, tower.width)
        if name == "qwen3":  # the 8x8 table bilinearly resampled (align_corners) to the grid
            side = tower.visual.num_grid_per_side
            table = tower.visual.pos_embed.weight.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            resampled = F.interpolate(table, size=(gh, gw), mode="bilinear", align_corners=True)
            positions = resampled[0].permute(1, 2, 0).reshape(gh * gw, -1)
            torch.testing.assert_close(tower.position_embedding((gh, gw)), positions)
            expected = expected + positions
        torch.testing.assert_close(tower.embed(pixels)[0], expected)


@pytest.mark.parametrize(("name", "size"), [("qwen3", (64, 128)), ("qwen3", (96, 32)), ("qwen25", (84, 168))])
def test_entering_at_block_2_with_the_library_tokens_is_bitwise_equal(name: str, size: tuple[int, int]) -> None:
    tower = TOWERS[name]
    pixels = _pixels(tower, size)
    grid = tower.grid_of(pixels)
    reference = _library(tower, pixels)
    entering = tower.to_raster(reference.hidden_states[2], grid)  # the library's output of block 1
    with torch.no_grad():
        output = tower.forward_from(entering, 2, grid)
        resumed = tower.blocks(entering, 2, tower.num_layers, grid)
    assert torch.equal(output.merged[0], reference.pooler_output)
    assert torch.equal(tower.to_library(resumed, grid), reference.last_hidden_state)
    # Qwen3-VL taps [1, 2]: tap 1 is the merger of the entering tokens, tap 2 runs after block 2.
    for ours, theirs in zip(output.deepstack, _deepstack(reference), strict=True):
        assert torch.equal(ours[0], theirs)


def test_deepstack_tap_before_the_entry_block_is_refused() -> None:
    tower = TOWERS["qwen3"]
    grid = (4, 4)
    tokens = torch.zeros(1, 16, tower.width)
    assert tower.missing_taps(2) == [] and tower.missing_taps(3) == [1] and tower.missing_taps(4) == [1, 2]
    with pytest.raises(NeckkitError, match=r"DeepStack taps \[1\] lie before entry block 3: .* output of block 1"):
        tower.forward_from(tokens, 3, grid)
    with torch.no_grad():
        assert tower.blocks(tokens, 3, 4, grid).shape == tokens.shape  # the blocks alone need no taps


@pytest.mark.parametrize(("name", "size"), [("qwen3", (96, 32)), ("qwen3", (64, 128)), ("qwen25", (140, 56))])
def test_batch_of_two_equals_the_library_batch_and_one_at_a_time(name: str, size: tuple[int, int]) -> None:
    tower = TOWERS[name]
    pixels = _pixels(tower, size, batch=2)
    grid = tower.grid_of(pixels)
    reference = _library(tower, pixels)  # the library packs both images with cu_seqlens
    with torch.no_grad():
        batch = tower(pixels)
        tokens = tower.embed(pixels)
        singles = [tower(pixels[i : i + 1]) for i in range(2)]
        single_tokens = torch.cat([tower.embed(pixels[i : i + 1]) for i in range(2)])
    assert batch.merged.shape == (2, grid[0] * grid[1] // 4, tower.out_dim)
    assert torch.equal(batch.merged.reshape(-1, tower.out_dim), reference.pooler_output)
    for ours, theirs in zip(batch.deepstack, _deepstack(reference), strict=True):
        assert torch.equal(ours.reshape(-1, tower.out_dim), theirs)
    assert torch.equal(tokens, single_tokens)
    # One image at a time differs from the batch in the last bits, in transformers too: its merger
    # multiplies matrices with another row count (seen: up to 3e-8 on outputs of size ~1).
    for i, single in enumerate(singles):
        torch.testing.assert_close(single.merged[0], batch.merged[i], rtol=1e-6, atol=1e-6)
        for ours, theirs in zip(single.deepstack, batch.deepstack, strict=True):
            torch.testing.assert_close(ours[0], theirs[i], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", [QWEN3_VL_PROCESSOR, QWEN25_VL_PROCESSOR], ids=["qwen3", "qwen25"])
def test_geometry_and_pixels_match_the_transformers_processor(spec: ProcessorSpec) -> None:
    tower_class = Qwen3VLTower if spec is QWEN3_VL_PROCESSOR else Qwen25VLTower
    tower = tower_class(TOWERS["qwen3" if spec is QWEN3_VL_PROCESSOR else "qwen25"].visual, spec)
    processor = spec.transformers_processor()
    generator = torch.Generator().manual_seed(1)
    for height, width in ODD_SIZES:
        image = torch.rand(1, 3, height, width, generator=generator)
        gh, gw = tower.token_grid(height, width)
        resized = tower.resize_for(height, width)
        assert resized == (gh * spec.patch_size, gw * spec.patch_size) and gh % 2 == gw % 2 == 0
        assert spec.min_pixels <= resized[0] * resized[1] <= spec.max_pixels
        assert tower.llm_tokens(height, width) == gh * gw // 4
        floats = processor(images=list(image), do_rescale=False, return_tensors="pt")
        assert floats["image_grid_thw"].tolist() == [[1, gh, gw]]
        pixels = tower.pixels(image)
        assert pixels.shape == (1, 3, *resized)
        pixel_values, grid_thw = tower.library_inputs(pixels)
        assert torch.equal(grid_thw, floats["image_grid_thw"])
        assert torch.equal(pixel_values, floats["pixel_values"])  # float images: bitwise
        eight_bit = (image[0] * 255).round().to(torch.uint8)
        from_pil = processor(images=[Image.fromarray(eight_bit.permute(1, 2, 0).numpy())], return_tensors="pt")
        ours, _ = tower.library_inputs(tower.pixels(eight_bit[None] / 255, eight_bit=True))
        assert torch.equal(ours, from_pil["pixel_values"])  # 8-bit images through the 8-bit path: bitwise


def test_pixels_refuse_what_the_processor_refuses() -> None:
    tower = TOWERS["qwen3"]
    with pytest.raises(NeckkitError, match="cannot take a 10x2100 image: absolute aspect ratio must be smaller than 200"):
        tower.resize_for(10, 2100)
    with pytest.raises(NeckkitError, match=r"H and W multiples of 32, got \(1, 3, 64, 48\): resize with pixels\(\)"):
        tower.embed(torch.zeros(1, 3, 64, 48))


def test_tokens_grids_and_blocks_are_checked() -> None:
    tower = TOWERS["qwen25"]
    with pytest.raises(NeckkitError, match=r"grid must be positive multiples of 2, got \(3, 4\)"):
        tower.blocks(torch.zeros(1, 12, 32), 0, 1, (3, 4))
    with pytest.raises(NeckkitError, match=r"tokens for grid \(4, 4\) must be \[B, 16, 32\], got \(1, 15, 32\)"):
        tower.head(torch.zeros(1, 15, 32), (4, 4))
    with pytest.raises(NeckkitError, match="Qwen2.5-VL has blocks 0..4; got start=2, end=5"):
        tower.blocks(torch.zeros(1, 16, 32), 2, 5, (4, 4))
    with pytest.raises(NeckkitError, match="entry_layer must be in 0..4, got 5"):
        Qwen25VLTower(tower.visual, entry_layer=5)


def _tiny_text_config() -> dict[str, object]:
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 4, 4]}
    return dict(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, head_dim=24, vocab_size=256, rope_parameters=rope)


def _assert_same_tower(loaded: Tower, visual: torch.nn.Module, size: tuple[int, int]) -> None:
    ours, theirs = loaded.visual.state_dict(), visual.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    pixels = _pixels(loaded, size)
    pixel_values, grid_thw = loaded.library_inputs(pixels)
    with torch.no_grad():
        reference = visual(pixel_values, grid_thw=grid_thw)
        output = loaded(pixels)
    assert torch.equal(output.merged[0], reference.pooler_output)
    for mine, library in zip(output.deepstack, _deepstack(reference), strict=True):
        assert torch.equal(mine[0], library)


def test_qwen3_vl_tower_loads_from_a_saved_full_model(tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(vision_config=tiny_qwen3_vl_vision_config().to_dict(), text_config=_tiny_text_config())
    with torch.random.fork_rng():
        torch.manual_seed(3)
        full = Qwen3VLForConditionalGeneration(config).eval()
    full.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        assert any(key.startswith("model.visual.") for key in handle.keys())  # transformers 5 names Qwen3-VL's tower so
    loaded = Qwen3VLTower.from_pretrained(str(tmp_path))
    assert loaded.processor == QWEN3_VL_PROCESSOR and loaded.deepstack_taps == (1, 2)
    loaded.processor = TOWERS["qwen3"].processor  # keep the test image small
    _assert_same_tower(loaded, full.model.visual, (64, 96))


def test_qwen25_vl_tower_reads_only_the_shards_holding_it(tmp_path: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(vision_config=tiny_qwen25_vl_vision_config().to_dict(), text_config=_tiny_text_config())
    with torch.random.fork_rng():
        torch.manual_seed(4)
        full = Qwen2_5_VLForConditionalGeneration(config).eval()
    full.save_pretrained(tmp_path, max_shard_size="100KB")
    weight_map = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    # transformers 5 saves Qwen2.5-VL in the hub's own layout: visual.*, model.layers.*, lm_head.*
    visual_files = {file for key, file in weight_map.items() if key.startswith("visual.")}
    assert not any(key.startswith("model.visual.") for key in weight_map)
    assert visual_files < set(weight_map.values())
    for file in set(weight_map.values()) - visual_files:  # the language model's other shards are never opened
        (tmp_path / file).unlink()
    spec = ProcessorSpec(14, 2, 784, 50176, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    spec.transformers_processor().save_pretrained(tmp_path)  # its preprocessor_config.json is read too
    loaded = Qwen25VLTower.from_pretrained(str(tmp_path))
    assert loaded.processor == spec and loaded.full_attention_blocks == (1, 3)
    _assert_same_tower(loaded, full.model.visual, (84, 168))


def test_a_bare_tower_folder_loads(tmp_path: Path) -> None:
    tower = TOWERS["qwen25"]
    tower.visual.save_pretrained(tmp_path)  # model_type qwen2_5_vl_vision, tensors without a prefix
    loaded = Qwen25VLTower.from_pretrained(str(tmp_path))
    loaded.processor = tower.processor
    _assert_same_tower(loaded, tower.visual, (112, 112))


def test_wrong_family_and_missing_weights_are_one_line_errors(tmp_path: Path) -> None:
    TOWERS["qwen3"].visual.save_pretrained(tmp_path)
    with pytest.raises(NeckkitError, match=r"model_type 'qwen3_vl_vision' in config.json; expected 'qwen2_5_vl'"):
        Qwen25VLTower.from_pretrained(str(tmp_path))
    with pytest.raises(NeckkitError) as caught:
        Qwen3VLTower.from_pretrained("neckkit-tests/no-such-qwen")
    assert "cannot load Qwen3-VL weights 'neckkit-tests/no-such-qwen'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_real_tower_configs_and_parameter_counts() -> None:
    from transformers import Qwen3VLVisionConfig

    defaults = Qwen3VLVisionConfig()  # transformers' defaults: the 8B tower (but out_hidden_size 3584)
    eight = Qwen3VLTower.random_init("8b", device="meta")
    for key in ("depth", "hidden_size", "intermediate_size", "num_heads", "patch_size", "spatial_merge_size",
                "temporal_patch_size", "num_position_embeddings", "hidden_act"):
        assert getattr(eight.visual.config, key) == getattr(defaults, key), key
    assert eight.deepstack_taps == tuple(defaults.deepstack_visual_indexes) == (8, 16, 24)
    assert (eight.num_layers, eight.width, eight.out_dim) == (27, 1152, 4096)
    two, four = Qwen3VLTower.random_init("2b", device="meta"), Qwen3VLTower.random_init("4b", device="meta")
    assert (two.num_layers, two.width, two.out_dim, two.deepstack_taps) == (24, 1024, 2048, (5, 11, 17))
    assert (four.num_layers, four.width, four.out_dim, four.deepstack_taps) == (24, 1024, 2560, (5, 11, 17))
    visual = two.visual
    stem = parameter_count(visual, ["patch_embed.", "pos_embed.", "blocks.0.", "blocks.1."])
    # 3*2*16*16*1024 + 1024, 2304*1024, and 4*1024 + (1024*3072 + 3072) + (1024² + 1024) + (1024*4096 + 4096) + (4096*1024 + 1024)
    assert stem == 1_573_888 + 2_359_296 + 2 * 12_596_224 == 29_125_632
    assert parameter_count(visual) == 406_957_056
    qwen25 = Qwen25VLTower.random_init("7b", device="meta")
    assert (qwen25.num_layers, qwen25.width, qwen25.out_dim, qwen25.full_attention_blocks) == (32, 1280, 3584, (7, 15, 23, 31))
    assert qwen25.visual.config.window_size == 112 and qwen25.processor == QWEN25_VL_PROCESSOR
