"""Qwen3-VL entered mid-tower (plugins/mllms/qwen_vl.py): the neck path equals the library's own pixel path.

Tiny model, offline, float32, eval. The references are transformers' own ``Qwen3VLProcessor`` (on the
same float images, ``do_rescale=False``) and ``Qwen3VLForConditionalGeneration`` given ``pixel_values``.
"""

from __future__ import annotations

import pytest
import torch

from neckkit.errors import NeckkitError
from neckkit.plugins.mllms.qwen_vl import Qwen3VLMLLM

transformers = pytest.importorskip("transformers")

PROMPTS = ["What is in the image?", "Describe it."]
# Sizes after the resize (the tiny processor keeps them): square, wide, tall -> grids 4x4, 4x8, 6x2.
SIZES = [(64, 64), (64, 128), (96, 32)]


@pytest.fixture(scope="module")
def mllm() -> Qwen3VLMLLM:
    return Qwen3VLMLLM.tiny()


def images(size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def library_inputs(mllm: Qwen3VLMLLM, x01: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """The library's processor on the images and the chat-templated prompts."""
    texts = [mllm.format_prompt(prompt) for prompt in prompts]
    return dict(mllm.processor(images=list(x01), text=texts, do_rescale=False, padding=True, return_tensors="pt"))


def library_ids(mllm: Qwen3VLMLLM, inputs: dict[str, torch.Tensor], **options: object) -> torch.Tensor:
    """``model.generate(pixel_values=...)``'s new token ids, greedy."""
    with torch.no_grad():
        output = mllm.model.generate(**inputs, do_sample=False, pad_token_id=mllm.tokenizer.pad_token_id, **options)
    return output[:, inputs["input_ids"].shape[1]:]


def entry_tokens(mllm: Qwen3VLMLLM, pixels: torch.Tensor, start: int) -> torch.Tensor:
    """The neck replaced by the tower's own embedding and blocks 0 .. start-1: raster [B, gh*gw, width]."""
    visual = mllm.visual
    with torch.no_grad():
        return visual.blocks(visual.embed(pixels), 0, start, visual.grid_of(pixels))


def test_visual_is_the_models_own_tower(mllm: Qwen3VLMLLM) -> None:
    assert mllm.visual.visual is mllm.model.model.visual
    names = list(mllm.state_dict())
    assert len(names) == len(set(names)) and not any(name.startswith("_visual") for name in names)


@pytest.mark.parametrize("size", SIZES)
def test_prompt_inputs_equal_the_processor(mllm: Qwen3VLMLLM, size: tuple[int, int]) -> None:
    x01 = images(size)
    reference = library_inputs(mllm, x01, PROMPTS)
    pixels = mllm.preprocess(x01)
    gh, gw = grid = mllm.visual.grid_of(pixels)
    assert grid == (size[0] // 16, size[1] // 16)
    ours = mllm.prompt_inputs(PROMPTS, grid)
    assert set(ours) == {"input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"}
    for name, value in ours.items():
        assert torch.equal(value, reference[name]), name
    assert ours["image_grid_thw"].tolist() == [[1, gh, gw]] * 2
    pads = (ours["input_ids"] == mllm.image_token_id).sum(1)
    assert pads.tolist() == [(gh // 2) * (gw // 2)] * 2
    assert mllm.visual.embed(pixels).shape == (2, gh * gw, mllm.visual.width)
    pixel_values, _ = mllm.visual.library_inputs(pixels)
    assert torch.equal(pixel_values, reference["pixel_values"])  # the tower's preprocessing is the processor's


@pytest.mark.parametrize("size", SIZES)
def test_injected_features_give_the_library_logits_bitwise(mllm: Qwen3VLMLLM, size: tuple[int, int]) -> None:
    x01 = images(size)
    reference = library_inputs(mllm, x01, PROMPTS)
    pixels = mllm.preprocess(x01)
    grid = mllm.visual.grid_of(pixels)
    with torch.no_grad():
        library = mllm.model.get_image_features(reference["pixel_values"], reference["image_grid_thw"])
        features = mllm.image_features(entry_tokens(mllm, pixels, 0), grid, start=0)
        encoded = mllm.mm_encoder_outputs(features)["image"]
        theirs = mllm.model(**reference).logits
        ours = mllm.logits(mllm.visual.embed(pixels), PROMPTS, grid=grid, start=0)
        no_deepstack = mllm.model(
            **mllm.prompt_inputs(PROMPTS, grid),
            mm_encoder_outputs=mllm.mm_encoder_outputs(
                type(features)(features.merged, tuple(torch.zeros_like(f) for f in features.deepstack))),
        ).logits
    for mine, lib in zip(encoded.pooler_output, library.pooler_output, strict=True):
        assert torch.equal(mine, lib)
    assert len(encoded.deepstack_features) == len(mllm.visual.deepstack_taps) == 2
    for mine_tap, lib_tap in zip(encoded.deepstack_features, library.deepstack_features, strict=True):
        for mine, lib in zip(mine_tap, lib_tap, strict=True):
            assert torch.equal(mine, lib)
    assert torch.equal(ours, theirs)
    assert not torch.allclose(ours, no_deepstack, atol=1e-3)  # DeepStack is injected and matters
    with torch.no_grad():
        same_prompt = mllm.logits(mllm.visual.embed(pixels), [PROMPTS[0]] * 2, grid=grid, start=0)
    assert not torch.allclose(same_prompt[0, -1], same_prompt[1, -1], atol=1e-2)  # the answer reads the image


@pytest.mark.parametrize("size", SIZES)
def test_generate_from_pixels_equals_library_generate(mllm: Qwen3VLMLLM, size: tuple[int, int]) -> None:
    x01 = images(size)
    reference = library_inputs(mllm, x01, PROMPTS)
    theirs = library_ids(mllm, reference, max_new_tokens=6)
    pixels = mllm.preprocess(x01)
    with torch.no_grad():
        ours = mllm.generate_ids(mllm.visual.embed(pixels), PROMPTS, grid=mllm.visual.grid_of(pixels), start=0,
                                 max_new_tokens=6)
    assert torch.equal(ours, theirs) and not torch.equal(ours[0], ours[1])
    texts = mllm.generate_from_pixels(pixels, PROMPTS, max_new_tokens=6)
    decoded = mllm.tokenizer.batch_decode(theirs, skip_special_tokens=True)
    assert texts == [text.strip() for text in decoded]


@pytest.mark.parametrize("num_beams", [1, 2])
def test_entering_at_block_2_reproduces_the_pixel_path(mllm: Qwen3VLMLLM, num_beams: int) -> None:
    x01 = images((64, 128))
    reference = library_inputs(mllm, x01, PROMPTS)
    pixels = mllm.preprocess(x01)
    grid = mllm.visual.grid_of(pixels)
    tokens = entry_tokens(mllm, pixels, 2)  # tap 1 is then computed from the entering tokens themselves
    with torch.no_grad():
        assert torch.equal(mllm.logits(tokens, PROMPTS, grid=grid, start=2), mllm.model(**reference).logits)
    theirs = library_ids(mllm, reference, max_new_tokens=6, num_beams=num_beams)
    assert torch.equal(mllm.generate_ids(tokens, PROMPTS, grid=grid, max_new_tokens=6, num_beams=num_beams), theirs)
    assert mllm.entry_layer == 2


def test_batch_of_two_answers_as_one_at_a_time(mllm: Qwen3VLMLLM) -> None:
    pixels = mllm.preprocess(images((96, 32)))
    grid = mllm.visual.grid_of(pixels)
    tokens = entry_tokens(mllm, pixels, 2)
    batch = mllm.generate_ids(tokens, PROMPTS, grid=grid, max_new_tokens=6)
    single = [mllm.generate_ids(tokens[i : i + 1], [PROMPTS[i]], grid=grid, max_new_tokens=6) for i in range(2)]
    assert [row.tolist() for row in batch] == [row[0].tolist() for row in single]
    # Logits: the tower's merger sees another row count (last bits) and the shorter prompt is left-padded.
    with torch.no_grad():
        logits = mllm.logits(tokens, PROMPTS, grid=grid)
        for i in range(2):
            alone = mllm.logits(tokens[i : i + 1], [PROMPTS[i]], grid=grid)[0]
            torch.testing.assert_close(logits[i, -alone.shape[0]:], alone, atol=1e-5, rtol=0)
    assert mllm.generate(tokens[:1], PROMPTS, grid=grid, max_new_tokens=3)  # one image, two prompts


def test_rope_positions_follow_the_image_grid(mllm: Qwen3VLMLLM) -> None:
    inputs = mllm.prompt_inputs(["Hi"], (4, 8))  # LLM grid 2x4
    positions, deltas = mllm.model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], inputs["image_grid_thw"], inputs["attention_mask"])
    image = inputs["mm_token_type_ids"][0].bool()
    first = int(image.nonzero()[0])
    t, h, w = (positions[axis, 0, image] - first for axis in range(3))
    assert t.tolist() == [0] * 8 and h.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and w.tolist() == [0, 1, 2, 3] * 2
    after = first + 8  # <|vision_end|> resumes at first + max(gh, gw) / 2 on all three axes
    assert positions[:, 0, after].tolist() == [first + 4] * 3
    assert int(deltas[0]) == 4 - 8  # positions saved by the image: max(2, 4) - 2*4


def test_clear_errors(mllm: Qwen3VLMLLM) -> None:
    pixels = mllm.preprocess(images((64, 128), batch=1))
    grid = mllm.visual.grid_of(pixels)
    tokens = entry_tokens(mllm, pixels, 2)
    with pytest.raises(NeckkitError, match=r"patch grid \(4, 4\) must be \[B, 16, 32\]"):
        mllm.generate(tokens, PROMPTS[0], grid=(4, 4), max_new_tokens=2)
    with pytest.raises(NeckkitError, match=r"must be \[B, 32, 32\]"):
        mllm.generate(tokens[:, :-1], PROMPTS[0], grid=grid, max_new_tokens=2)
    with pytest.raises(NeckkitError, match=r"DeepStack taps \[1\] lie before entry block 3"):
        mllm.generate(mllm.visual.blocks(tokens, 2, 3, grid), PROMPTS[0], grid=grid, start=3, max_new_tokens=2)
    with pytest.raises(NeckkitError, match="multiples of 2"):
        mllm.generate(torch.zeros(1, 12, 32), PROMPTS[0], grid=(3, 4), max_new_tokens=2)
    with pytest.raises(NeckkitError, match="may not contain"):
        mllm.generate(tokens, "look: <|image_pad|>", grid=grid, max_new_tokens=2)
    with pytest.raises(NeckkitError, match="top_k"):
        mllm.generate(tokens, PROMPTS[0], grid=grid, top_k=3)
