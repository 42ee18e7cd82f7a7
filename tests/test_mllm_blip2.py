"""The ``blip2`` MLLM: neck tokens through transformers' own BLIP-2 path, tiny and offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.loading.weights import seeded_init
from neckkit.plugins.encoders.blip2 import HUB_ID, build_blip2_vision
from neckkit.plugins.mllms.blip2 import (
    Blip2MLLM,
    build_blip2,
    byte_tokenizer,
    format_prompt,
    generation_kwargs,
    meta_size,
)

transformers = pytest.importorskip("transformers")

QUESTION = "what is in the picture?"


def liven(mllm: Blip2MLLM, seed: int = 6) -> Blip2MLLM:
    """Make a tiny model's answers depend on the image: at init (std 0.02, 32 wide) the language model's
    logits are nearly flat and greedy decoding repeats one token whatever the image. Matrices are
    scaled up and layer-norm affines drawn at random (init 1 / 0 would hide a missing norm)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in mllm.model.named_parameters():
            if parameter.dim() >= 2 and not name.startswith("vision_model."):
                parameter.mul_(8)
            elif "norm" in name.lower():
                base = 1.0 if name.endswith("weight") else 0.0
                parameter.copy_(base + 0.5 * torch.randn(parameter.shape, generator=generator))
    return mllm


def seeded(factory, **options):  # noqa: ANN001, ANN003, ANN201
    """Build as neckkit does: the factory under ``seeded_init(0)`` (the default seed)."""
    with seeded_init(0):
        return factory(**options)


@pytest.fixture(scope="module")
def tiny() -> Blip2MLLM:
    """The factory's tiny model, untouched."""
    return seeded(build_blip2, tiny=True)


@pytest.fixture(scope="module")
def lively() -> Blip2MLLM:
    return liven(seeded(build_blip2, tiny=True))


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def entering(mllm: Blip2MLLM, pixels: torch.Tensor, start: int) -> torch.Tensor:
    """Tokens entering block ``start``, as a neck would produce them."""
    encoder = mllm.visual_encoder
    with torch.no_grad():
        return encoder.blocks(encoder.embed(pixels), 0, start)


def library_inputs(mllm: Blip2MLLM, pixels: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
    """What a transformers user passes: the processor's own output for images and (formatted) text."""
    images = [image for image in torch.rand(len(texts), 3, 40, 56, generator=torch.Generator().manual_seed(9))]
    encoding = mllm.processor(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")
    return {"pixel_values": pixels, "input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}


def library_answers(mllm: Blip2MLLM, inputs: dict[str, torch.Tensor], **kwargs) -> list[str]:
    with torch.no_grad():
        sequences = mllm.model.generate(**inputs, **kwargs)
    new = sequences[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in mllm.processor.batch_decode(new, skip_special_tokens=True)]


# -- identity with the library ------------------------------------------------------------------


@pytest.mark.parametrize("start", [2, 0, 4])
def test_logits_equal_library_forward(lively: Blip2MLLM, pixels: torch.Tensor, start: int) -> None:
    texts = ["Question: what is in the picture? Answer:", "Question: hi Answer:"]  # different lengths: left padding
    inputs = library_inputs(lively, pixels[:2], texts)
    with torch.no_grad():
        theirs = lively.model(**inputs).logits
        ours = lively.logits(entering(lively, pixels[:2], start), [QUESTION, "hi"], start=start)
    assert ours.shape == theirs.shape == (2, inputs["input_ids"].shape[1], lively.model.config.text_config.vocab_size)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert not torch.allclose(ours[0, -1], ours[1, -1], atol=1e-3)


def test_greedy_generate_equals_library_generate(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    inputs = library_inputs(lively, pixels[:2], [""] * 2)  # captioning: image tokens and BOS only
    theirs = library_answers(lively, inputs, max_new_tokens=12, do_sample=False)
    ours = lively.generate(entering(lively, pixels[:2], 2), "", max_new_tokens=12)
    assert ours == theirs
    assert len(ours) == 2 and all(ours) and ours[0] != ours[1]  # the answers depend on the image


def test_vqa_generate_equals_library_generate(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    inputs = library_inputs(lively, pixels[:2], [format_prompt(QUESTION)] * 2)
    assert lively.generate(entering(lively, pixels[:2], 2), QUESTION, max_new_tokens=8) == library_answers(
        lively, inputs, max_new_tokens=8, do_sample=False
    )


def test_beam_search_equals_library(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    inputs = library_inputs(lively, pixels[:2], [""] * 2)
    theirs = library_answers(lively, inputs, max_new_tokens=6, num_beams=3, do_sample=False)
    assert lively.generate(entering(lively, pixels[:2], 2), "", max_new_tokens=6, num_beams=3) == theirs


def test_generate_from_pixels_is_the_library_path(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    inputs = library_inputs(lively, pixels[:2], [format_prompt(QUESTION)] * 2)
    answers = lively.generate_from_pixels(pixels[:2], QUESTION, max_new_tokens=8)
    assert answers == library_answers(lively, inputs, max_new_tokens=8, do_sample=False)
    assert answers == lively.generate(entering(lively, pixels[:2], 0), QUESTION, start=0, max_new_tokens=8)
    torch.testing.assert_close(lively.logits_from_pixels(pixels[:2], QUESTION), lively.model(**inputs).logits)


def test_greedy_is_deterministic(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    tokens = entering(lively, pixels, 2)
    first = lively.generate(tokens, "", max_new_tokens=10)
    assert lively.generate(tokens, "", max_new_tokens=10) == first
    assert liven(seeded(build_blip2, tiny=True)).generate(tokens, "", max_new_tokens=10) == first


def test_vision_forward_is_restored(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    vision = lively.model.vision_model
    with pytest.raises(ZeroDivisionError), lively.vision_outputs(torch.zeros(1, 257, 32)):
        raise ZeroDivisionError
    assert "forward" not in vision.__dict__
    lively.generate(entering(lively, pixels[:1], 2), "", max_new_tokens=2)
    assert "forward" not in vision.__dict__
    with torch.no_grad():  # the vision model works on pixels again
        torch.testing.assert_close(
            vision(pixels[:1]).last_hidden_state,
            lively.image_embeds(entering(lively, pixels[:1], 0), start=0),
        )


def test_sampling_and_float32_tokens_into_bfloat16_model(pixels: torch.Tensor) -> None:
    mllm = seeded(build_blip2, tiny=True, dtype="bfloat16")
    assert mllm.model.vision_model.post_layernorm.weight.dtype == torch.bfloat16
    assert mllm.model.language_model.lm_head.weight.dtype == torch.bfloat16
    tokens = entering(seeded(build_blip2, tiny=True), pixels[:2], 2)  # a float32 neck's output
    answers = mllm.generate(tokens, "hi", max_new_tokens=4, do_sample=True, temperature=0.7, top_p=0.9)
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)


def test_float16_keeps_qformer_in_float32_like_from_pretrained() -> None:
    mllm = seeded(build_blip2, tiny=True, dtype="float16")
    assert mllm.model.query_tokens.dtype == torch.float32
    assert {p.dtype for p in mllm.model.qformer.parameters()} == {torch.float32}
    assert mllm.model.language_projection.weight.dtype == torch.float16


# -- the tiny model ---------------------------------------------------------------------------------


def test_tiny_vision_is_the_tiny_eva_g_blip2_encoder(tiny: Blip2MLLM) -> None:
    encoder = seeded(build_blip2_vision, tiny=True)
    ours, theirs = tiny.model.vision_model.state_dict(), encoder.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
    assert tiny.model.config.vision_config.to_dict() == encoder.model.config.to_dict()


def test_visual_encoder_shares_the_vision_model(tiny: Blip2MLLM) -> None:
    encoder = tiny.visual_encoder
    assert encoder.model is tiny.model.vision_model
    assert (tiny.encoder, tiny.feature_layer, encoder.entry_layer, encoder.num_layers) == ("eva-g-blip2", -1, 2, 4)
    assert not any(key.startswith("_visual_encoder") for key in tiny.state_dict())  # registered once, as model.*
    assert sum(1 for _ in tiny.parameters()) == sum(1 for _ in tiny.model.parameters())


def test_tiny_builds_are_identical_and_leave_global_rng_alone(tiny: Blip2MLLM, host: PluginHost) -> None:
    state = torch.random.get_rng_state()
    again = host.components("mllm").get("blip2").build(tiny=True)  # the core seeds the build (default 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, tensor in tiny.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    assert tiny.model.query_tokens.std() > 0.01  # drawn N(0, 0.02) as in BLIP-2, not left at zero


def test_entry_layer_option(tiny: Blip2MLLM) -> None:
    assert seeded(build_blip2, tiny=True, entry_layer=3).entry_layer == 3
    with pytest.raises(NeckkitError, match=r"entry_layer must be in 0\.\.4"):
        seeded(build_blip2, tiny=True, entry_layer=5)


def test_byte_tokenizer_round_trips_any_text() -> None:
    tokenizer = byte_tokenizer()
    text = "Question: what's this — ünïcode 猫? Answer:"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 2 and tokenizer.pad_token_id == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.padding_side == "left"


# -- prompts and batching ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("", ""),
        ("  ", ""),
        ("how many cats?", "Question: how many cats? Answer:"),
        (" how many cats? ", "Question: how many cats? Answer:"),
        ("Question: how many? Answer:", "Question: how many? Answer:"),
        ("a photo of", "Question: a photo of Answer:"),
        ("Describe it. Answer:", "Describe it. Answer:"),
    ],
)
def test_format_prompt(prompt: str, expected: str) -> None:
    assert format_prompt(prompt) == expected


def test_text_inputs_equal_the_processor_with_images(tiny: Blip2MLLM, pixels: torch.Tensor) -> None:
    prompts = [QUESTION, "", "hi"]
    ours = tiny.text_inputs(prompts)
    theirs = library_inputs(tiny, pixels, [format_prompt(p) for p in prompts])
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    image_id = tiny.model.config.image_token_id
    assert (ours["input_ids"][:, : tiny.num_query_tokens] == image_id).all()
    assert (ours["input_ids"] == image_id).sum(1).tolist() == [tiny.num_query_tokens] * 3


def test_batch_shapes(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    tokens = entering(lively, pixels, 2)
    assert len(lively.generate(tokens, QUESTION, max_new_tokens=3)) == 3  # B images, one prompt
    assert len(lively.generate(tokens, [QUESTION], max_new_tokens=3)) == 3
    assert len(lively.generate(tokens[:1], ["a?", "bb?", ""], max_new_tokens=3)) == 3  # one image, N prompts
    assert len(lively.generate(tokens, ["a?", "bb?", ""], max_new_tokens=3)) == 3  # B and B
    assert lively.logits(tokens[:1], ["a?", "bb?"]).shape[0] == 2
    with pytest.raises(NeckkitError, match="got 3 images and 2 prompts; pass one prompt, one image"):
        lively.generate(tokens, ["a?", "b?"])
    with pytest.raises(NeckkitError, match="non-empty list of strings"):
        lively.generate(tokens, [])


def test_batched_answers_equal_one_at_a_time(lively: Blip2MLLM, pixels: torch.Tensor) -> None:
    tokens = entering(lively, pixels, 2)
    prompts = [QUESTION, "", "is it red?"]  # different lengths: left padding must not change answers
    batched = lively.generate(tokens, prompts, max_new_tokens=8)
    alone = [lively.generate(tokens[i : i + 1], prompts[i], max_new_tokens=8)[0] for i in range(3)]
    assert batched == alone
    one_image = lively.generate(tokens[:1], prompts, max_new_tokens=8)
    assert one_image == [lively.generate(tokens[:1], p, max_new_tokens=8)[0] for p in prompts]


def test_generation_options() -> None:
    assert generation_kwargs({}) == {"max_new_tokens": 30, "num_beams": 1, "do_sample": False}
    greedy = generation_kwargs({"max_new_tokens": 5, "temperature": 0.5, "num_beams": 2})
    assert greedy == {"max_new_tokens": 5, "num_beams": 2, "do_sample": False}  # temperature means nothing greedy
    assert generation_kwargs({"do_sample": True, "temperature": 0.5, "top_p": 0.9})["top_p"] == 0.9
    with pytest.raises(NeckkitError, match="unknown generation option 'top_k' for blip2"):
        generation_kwargs({"top_k": 3})


def test_bad_tokens_and_start(tiny: Blip2MLLM) -> None:
    with pytest.raises(NeckkitError, match=r"expected visual tokens \[B, T, 32\], got \[1, 257, 16\]"):
        tiny.generate(torch.zeros(1, 257, 16), "hi")
    with pytest.raises(NeckkitError, match="blocks 0..4; got start=5"):
        tiny.generate(torch.zeros(1, 257, 32), "hi", start=5)


# -- weights ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tiny: Blip2MLLM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blip2-tiny")
    tiny.model.save_pretrained(path)
    tiny.processor.save_pretrained(path)
    return path


def test_saved_folder_loads_offline_with_every_tensor_equal(tiny: Blip2MLLM, folder: Path, pixels: torch.Tensor) -> None:
    loaded = build_blip2(weights=str(folder))
    ours, theirs = loaded.model.state_dict(), tiny.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name
    assert loaded.visual_encoder.model is loaded.model.vision_model
    assert loaded.processor.num_query_tokens == tiny.num_query_tokens
    assert torch.equal(loaded.text_inputs([QUESTION, ""])["input_ids"], tiny.text_inputs([QUESTION, ""])["input_ids"])
    tokens = entering(tiny, pixels[:2], 2)
    assert loaded.generate(tokens, "", max_new_tokens=5) == tiny.generate(tokens, "", max_new_tokens=5)


def test_loading_in_bfloat16(folder: Path) -> None:
    loaded = build_blip2(weights=str(folder), dtype="bfloat16")
    assert loaded.model.language_model.lm_head.weight.dtype == torch.bfloat16
    assert loaded.visual_encoder.model.post_layernorm.weight.dtype == torch.bfloat16


def test_weights_and_tiny_are_exclusive(folder: Path) -> None:
    with pytest.raises(NeckkitError, match=r"^build_blip2\(\): tiny and weights exclude each other"):
        build_blip2(weights=str(folder), tiny=True)


def test_folder_without_processor_is_one_line(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model-only"
    shutil.copytree(folder, copy)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (copy / name).unlink(missing_ok=True)
    with pytest.raises(NeckkitError) as error:
        build_blip2(weights=str(copy))
    message = str(error.value)
    assert "\n" not in message and "processor_config.json not found" in message and "Blip2Processor" in message


def test_folder_without_safetensors_is_one_line(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no-tensors"
    shutil.copytree(folder, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(NeckkitError, match="model.safetensors .*not found") as error:
        build_blip2(weights=str(copy))
    assert "\n" not in str(error.value)


def test_other_model_type_is_refused(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "llava"
    shutil.copytree(folder, copy)
    (copy / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(NeckkitError, match="model_type 'llava' in config.json; expected 'blip-2'"):
        build_blip2(weights=str(copy))


@pytest.mark.parametrize(
    ("weights", "match"),
    [("/nowhere/blip2", "does not exist"), ("not a repo!", "neither a local folder nor a hub id")],
)
def test_bad_weights_are_one_line(weights: str, match: str, hub_cache: Path) -> None:
    with pytest.raises(NeckkitError, match=match) as error:
        build_blip2(weights=weights)
    assert "\n" not in str(error.value)


def test_missing_hub_weights_offline_is_one_clear_line(hub_cache: Path) -> None:
    with pytest.raises(NeckkitError) as error:
        build_blip2()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"cannot load BLIP-2 {HUB_ID!r} from the Hugging Face cache (HF_HUB_OFFLINE is set)")
    assert f"hf download {HUB_ID}" in message and "--mllm-weights" in message and "--tiny" in message


def test_cached_hub_id_loads_offline(hub_cache: Path, folder: Path, tiny: Blip2MLLM) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--neckkit-test--tiny-blip2-opt"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    loaded = build_blip2(weights="neckkit-test/tiny-blip2-opt")
    for name, tensor in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


# -- registration and size ------------------------------------------------------------------------------


def test_builtin_plugin_registers_blip2(host) -> None:
    component = host.components("mllm").get("blip2")
    assert component.plugin == "neckkit.plugins.mllms" and component.info.tiny
    assert component.info.pretrained == (HUB_ID,)
    assert set(component.info.options) == {"weights", "tiny", "random_init", "entry_layer", "dtype", "device_map"}
    built = component.build(tiny=True, entry_layer=1)
    assert isinstance(built, Blip2MLLM) and built.entry_layer == 1
    with pytest.raises(NeckkitError, match="does not accept option 'quality'"):
        component.build(tiny=True, quality=3)


def test_random_init_is_the_real_architecture_on_the_meta_device() -> None:
    with torch.device("meta"):  # no memory: just the wiring of config, tokenizer and processor
        mllm = build_blip2(random_init=True)
    config, encoder = mllm.model.config, mllm.visual_encoder
    assert (encoder.width, encoder.num_layers, encoder.grid, config.num_query_tokens) == (1408, 39, 16, 32)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (2560, 32)
    assert config.image_token_id == mllm.tokenizer.convert_tokens_to_ids("<image>") < config.text_config.vocab_size
    assert mllm.processor.num_query_tokens == 32 and config.text_config.eos_token_id == mllm.tokenizer.eos_token_id


def test_meta_size_is_blip2_opt_2_7b() -> None:
    size = meta_size()
    parameters = size["parameters"]
    assert parameters["vision"] == 985_952_256  # ViT-g/14: 39 blocks of 1408
    assert parameters["projection"] == 768 * 2560 + 2560
    assert parameters["language_model"] == 2_651_596_800  # OPT-2.7b, output layer tied to the input embedding
    assert parameters["qformer"] == 105_162_240  # Q-Former and its 32 query tokens
    assert parameters["total"] == 3_744_679_936 == sum(v for k, v in parameters.items() if k != "total")
    assert size["bytes"] == 2 * parameters["total"] and size["dtype"] == "bfloat16"
    assert meta_size("float16")["bytes"] == 2 * parameters["total"] + 2 * parameters["qformer"]  # Q-Former in fp32
