"""llava-1.5 (transformers LlavaForConditionalGeneration): the neck path equals the library's own path.

Tiny models and folders saved by the tests themselves, offline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.loading.weights import fingerprint, seeded_init
from neckkit.plugins.encoders.clip import HFClipEncoder, build_clip
from neckkit.plugins.mllms.llava import HUB_ID, LlavaMLLM, build_llava, meta_size

transformers = pytest.importorskip("transformers")

PROMPTS = ["What is in the image?", "Describe it."]


def tiny_llava() -> LlavaMLLM:
    """``llava-1.5 --tiny`` as neckkit builds it: the factory under ``seeded_init(0)`` (the default seed)."""
    with seeded_init(0):
        return build_llava(tiny=True)


@pytest.fixture(scope="module")
def mllm() -> LlavaMLLM:
    return tiny_llava()


@pytest.fixture(scope="module")
def library_inputs(mllm: LlavaMLLM) -> dict[str, torch.Tensor]:
    """Two images and two prompts through the library's own processor (image expansion, padding)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), rng.integers(0, 256, (360, 340, 3), dtype=np.uint8)]
    texts = [mllm.format_prompt(prompt) for prompt in PROMPTS]
    return dict(mllm.processor(images=images, text=texts, return_tensors="pt", padding=True))


def entry_tokens(mllm: LlavaMLLM, pixels: torch.Tensor) -> torch.Tensor:
    """The neck path with the neck replaced by the encoder's own first blocks."""
    encoder = mllm.visual_encoder
    with torch.no_grad():
        return encoder.blocks(encoder.embed(pixels), 0, encoder.entry_layer)


def library_answers(mllm: LlavaMLLM, inputs: dict[str, torch.Tensor], **options) -> list[str]:
    with torch.no_grad():
        output = mllm.model.generate(**inputs, do_sample=False, pad_token_id=mllm.tokenizer.pad_token_id, **options)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in mllm.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def test_neck_path_logits_equal_the_library_forward(mllm: LlavaMLLM, library_inputs: dict[str, torch.Tensor]) -> None:
    pixels = library_inputs["pixel_values"]
    ours_inputs = mllm.text_inputs(PROMPTS, mllm.visual_encoder.grid**2)
    assert torch.equal(ours_inputs["input_ids"], library_inputs["input_ids"])
    assert torch.equal(ours_inputs["attention_mask"], library_inputs["attention_mask"])
    with torch.no_grad():
        ours = mllm.logits(entry_tokens(mllm, pixels), PROMPTS)
        theirs = mllm.model(**library_inputs).logits
    assert ours.shape == (2, library_inputs["input_ids"].shape[1], len(mllm.tokenizer))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours[0, -1], ours[1, -1])  # the two images and prompts are told apart


@pytest.mark.parametrize("num_beams", [1, 2])
def test_neck_path_answers_equal_the_library_generate(
    mllm: LlavaMLLM, library_inputs: dict[str, torch.Tensor], num_beams: int
) -> None:
    pixels = library_inputs["pixel_values"]
    theirs = library_answers(mllm, library_inputs, max_new_tokens=8, num_beams=num_beams)
    ours = mllm.generate(entry_tokens(mllm, pixels), PROMPTS, max_new_tokens=8, num_beams=num_beams)
    assert ours == theirs and len(ours) == 2
    assert mllm.generate_from_pixels(pixels, PROMPTS, max_new_tokens=8, num_beams=num_beams) == theirs
    if num_beams == 1:
        again = mllm.generate(entry_tokens(mllm, pixels), PROMPTS, max_new_tokens=8)
        assert again == ours  # greedy decoding is deterministic


def test_tokens_from_any_entry_layer_give_the_same_logits(
    mllm: LlavaMLLM, library_inputs: dict[str, torch.Tensor]
) -> None:
    pixels = library_inputs["pixel_values"][:1]
    encoder = mllm.visual_encoder
    with torch.no_grad():
        embedded = encoder.embed(pixels)
        reference = mllm.logits(embedded, PROMPTS[0], start=0)
        for start in (1, 2, 3):  # hidden state -2 of 4 blocks is the input of block 3
            tokens = encoder.blocks(embedded, 0, start)
            torch.testing.assert_close(mllm.logits(tokens, PROMPTS[0], start=start), reference)
        with pytest.raises(NeckkitError, match="feature layer -2"):
            mllm.logits(encoder.blocks(embedded, 0, 4), PROMPTS[0], start=4)


def test_tiny_vision_tower_is_the_tiny_clip_l_336_encoder(mllm: LlavaMLLM) -> None:
    with seeded_init(0):  # as neckkit builds every component
        clip = build_clip("clip-l-336", tiny=True)
    tower, reference = mllm.model.model.vision_tower.state_dict(), clip.model.vision_model.state_dict()
    assert tower.keys() == reference.keys()
    assert all(torch.equal(tower[key], reference[key]) for key in reference)
    # the encoder wraps LLaVA's own modules, shared, not copied
    encoder = mllm.visual_encoder
    assert isinstance(encoder, HFClipEncoder) and encoder.vision_model is mllm.model.model.vision_tower
    assert (mllm.encoder, mllm.feature_layer, encoder.entry_layer, encoder.grid) == ("clip-l-336", -2, 2, 24)
    assert (encoder.width, encoder.image_size, encoder.num_layers) == (clip.width, clip.image_size, clip.num_layers)
    pixels = clip.preprocess(torch.rand(1, 3, 350, 336, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():  # tokens from the encoder plugin (as a neck trained for it) serve LLaVA unchanged
        from_plugin = clip.blocks(clip.embed(pixels), 0, 2)
        torch.testing.assert_close(from_plugin, entry_tokens(mllm, pixels), atol=0, rtol=0)


def test_bare_clip_vision_model_encoder_matches_the_library(mllm: LlavaMLLM) -> None:
    encoder = mllm.visual_encoder
    pixels = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        output = encoder.vision_model(pixel_values=pixels, output_hidden_states=True)
        torch.testing.assert_close(encoder.encode(pixels), output.pooler_output)
        states = encoder.hidden_states(encoder.embed(pixels), 0)
    for ours, theirs in zip(states, output.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs)
    assert encoder.embed_dim == encoder.width and encoder.text_tower() is None and not encoder.has_text_tower
    with pytest.raises(NeckkitError, match="no text tower"):
        encoder.encode_text(["a photo"])


def test_two_tiny_builds_are_identical(mllm: LlavaMLLM) -> None:
    assert fingerprint(tiny_llava().model) == fingerprint(mllm.model)
    assert set(mllm.state_dict()) == {f"model.{key}" for key in mllm.model.state_dict()}  # encoder not duplicated


def test_saved_folder_loads_offline_with_every_tensor_equal(mllm: LlavaMLLM, tmp_path: Path) -> None:
    mllm.model.save_pretrained(tmp_path)
    mllm.processor.save_pretrained(tmp_path)
    loaded = build_llava(weights=str(tmp_path))
    ours, theirs = mllm.model.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert loaded.format_prompt("Hi?") == mllm.format_prompt("Hi?")
    tokens = entry_tokens(mllm, torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(2)))
    assert loaded.generate(tokens, "Hi?", max_new_tokens=6) == mllm.generate(tokens, "Hi?", max_new_tokens=6)


def test_missing_weights_offline_give_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NeckkitError) as error:
        build_llava(weights="neckkit-tests/no-such-llava")
    message = str(error.value)
    assert (
        "\n" not in message
        and "neckkit-tests/no-such-llava" in message
        and "hf download neckkit-tests/no-such-llava" in message
    )
    assert "HF_HUB_OFFLINE" in message
    with pytest.raises(NeckkitError, match="does not exist") as error:
        build_llava(weights=str(tmp_path / "absent"))
    assert "\n" not in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeckkitError, match="local folder") as error:
        build_llava(weights=str(tmp_path / "empty"))
    assert "\n" not in str(error.value)
    with pytest.raises(NeckkitError, match=r"^build_llava\(\): tiny and weights exclude each other"):
        build_llava(weights="x/y", tiny=True)


def test_default_hub_id_missing_offline_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(HUB_ID, "config.json"), str):
        pytest.skip(f"{HUB_ID} is in the local cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NeckkitError) as error:
        build_llava()
    assert "\n" not in str(error.value) and f"hf download {HUB_ID}" in str(error.value)


def test_batching_gives_one_answer_per_image_or_prompt(mllm: LlavaMLLM) -> None:
    pixels = torch.randn(3, 3, 336, 336, generator=torch.Generator().manual_seed(4))
    tokens = entry_tokens(mllm, pixels)
    options = dict(max_new_tokens=3)
    assert len(mllm.generate(tokens, "What?", **options)) == 3  # B images, one prompt
    several = mllm.generate(tokens[:1], ["What?", "Where?", "Why?", "Who?"], **options)  # one image, P prompts
    assert len(several) == 4
    assert len(mllm.generate(tokens, ["a?", "b?", "c?"], **options)) == 3  # B images, B prompts
    assert len(mllm.generate_from_pixels(pixels[:1], ["a?", "b?"], **options)) == 2
    with torch.no_grad():
        assert mllm.logits(tokens[:1], ["a?", "bb?"]).shape[0] == 2
    with pytest.raises(NeckkitError, match="3 images and 2 prompts"):
        mllm.generate(tokens, ["a?", "b?"], **options)
    with pytest.raises(NeckkitError, match="does not take generation option"):
        mllm.generate(tokens, "a?", length_penalty=2.0)
    sampled = mllm.generate(tokens[:1], "a?", max_new_tokens=3, do_sample=True, temperature=0.7, top_p=0.9)
    assert len(sampled) == 1


def test_prompt_format_is_llava_1_5_chat(mllm: LlavaMLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "USER: <image>\nWhat is this? ASSISTANT:"
    assert mllm.processor.chat_template
    assert mllm.format_prompt("What is this?") == expected
    monkeypatch.setattr(mllm.processor, "chat_template", None)  # a processor without a template
    assert mllm.format_prompt("What is this?") == expected
    ids = mllm.text_inputs(["What is this?"], 5)["input_ids"][0].tolist()
    image_id = mllm.tokenizer.convert_tokens_to_ids("<image>")
    assert ids[0] == mllm.tokenizer.bos_token_id
    assert ids.count(image_id) == 5 and mllm.model.config.image_token_index == image_id
    assert mllm.tokenizer.decode(ids, skip_special_tokens=True) == "USER: \nWhat is this? ASSISTANT:"


def test_registered_as_a_builtin_mllm(host: PluginHost) -> None:
    component = host.components("mllm").get("llava-1.5")
    assert component.plugin == "neckkit.plugins.mllms" and component.info.tiny
    assert component.info.pretrained == (HUB_ID,)
    assert {"weights", "tiny", "random_init", "entry_layer", "dtype", "device_map"} <= set(component.info.options)
    built = component.build(tiny=True, entry_layer=1)
    assert isinstance(built, LlavaMLLM) and built.visual_encoder.entry_layer == 1


def test_meta_device_size_of_llava_1_5_7b() -> None:
    sizes = meta_size("bfloat16")
    assert sizes == {
        "vision": 303_507_456,
        "projector": 20_979_712,
        "language_model": 6_738_939_904,
        "total": 7_063_427_072,
        "dtype": "bfloat16",
        "bytes": 14_126_854_144,
    }
    assert meta_size("float32")["bytes"] == 4 * sizes["total"]


@pytest.mark.skipif(not os.environ.get("NECKKIT_TEST_GPU") or not torch.cuda.is_available(), reason="GPU check only")
def test_tiny_on_gpu_in_bfloat16_matches_library(library_inputs: dict[str, torch.Tensor]) -> None:
    mllm = build_llava(tiny=True, dtype="bfloat16", device_map="cuda")
    inputs = {key: value.cuda() for key, value in library_inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].bfloat16()
    theirs = library_answers(mllm, inputs, max_new_tokens=8)
    assert mllm.generate(entry_tokens(mllm, inputs["pixel_values"]), PROMPTS, max_new_tokens=8) == theirs
