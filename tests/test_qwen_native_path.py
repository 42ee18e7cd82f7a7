"""Qwen3-VL through a neck at native resolution: train, ask, batch mixed sizes, one region on every path.

Issue 20's "done when": answers for photos of three aspect ratios with (H/16)(W/16) tower tokens and
(H/32)(W/32) LLM tokens; batched answers equal one-at-a-time answers for mixed sizes; the neck path and the
uncompressed baseline see the same region.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import cli_workspace, invoke
from neckkit.bitstream import read_nk
from neckkit.bitstream.coding import compress_image
from neckkit.bitstream.images import load_image
from neckkit.host.options import build_component
from neckkit.interfaces.preprocess import resize_cover_crop
from neckkit.samples import sample_images
from neckkit.serving import Answerer
from neckkit.serving.requests import AskRequest

GREEDY = {"max_new_tokens": 3, "do_sample": False}
SIZES = ((64, 64), (64, 128), (128, 64), (96, 160))  # (H, W): square, wide, tall, 3:5; multiples of 32


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory):
    """A tiny ELIC -> qwen3-vl-vit neck trained by `neckkit train`, and photos cropped to four shapes."""
    with cli_workspace(tmp_path_factory, "qwen") as (runner, host, folder):
        neck = folder / "neck"
        trained = invoke(runner, host, "train", "--codec", "elic", "--encoder", "qwen3-vl-vit", "--tiny",
                         "--max-steps", "2", "--out", str(neck), "--no-progress")
        assert trained.exit_code == 0, trained.output
        photo = load_image(sample_images()[0])
        images = {size: resize_cover_crop(photo, *size) for size in SIZES}
        yield runner, host, folder, neck, images


@pytest.fixture(scope="module")
def answerer(qwen):
    _runner, host, _folder, neck, _images = qwen
    with Answerer.load(host, neck, "qwen3-vl", {"tiny": True}, decode_threads=2) as loaded:
        yield loaded


def test_the_checkpoint_holds_a_native_resolution_neck(qwen) -> None:
    *_, neck, _images = qwen
    meta = json.loads((neck / "best" / "meta.json").read_text()) if (neck / "best").exists() else None
    if meta is None:
        meta = json.loads(next((neck / "checkpoints").glob("*/meta.json")).read_text())
    assert meta["encoder"]["name"] == "qwen3-vl-vit"
    assert meta["neck"]["positions"] == "interpolated" and meta["neck"]["class_token"] is False


def test_answers_through_the_neck_at_three_aspect_ratios_have_the_native_token_counts(answerer, monkeypatch) -> None:
    mllm = answerer.mllm
    seen: list[tuple[tuple[int, ...], tuple[int, int], int]] = []
    generate = mllm.generate

    def recorded(tokens, prompts, **options):
        inputs = mllm.prompt_inputs(prompts, options["grid"])
        image_pads = int((inputs["input_ids"][0] == mllm.image_token_id).sum())
        seen.append((tuple(tokens.shape), options["grid"], image_pads))
        return generate(tokens, prompts, **options)

    monkeypatch.setattr(mllm, "generate", recorded)
    images = {size: torch.rand(1, 3, *size) for size in SIZES[:3]}
    for (height, width), image in images.items():
        result = answerer.answer(AskRequest(image, ["What is this?"], GREEDY))
        assert result.path == "neck" and len(result.answers) == 1 and isinstance(result.answers[0], str)
        assert result.latent_shape[0] == 1 and result.latent_shape[2:] == [height // 16, width // 16]
        assert result.token_grid == [height // 16, width // 16]
        shape, grid, image_pads = seen[-1]
        assert shape[1] == (height // 16) * (width // 16)  # tower tokens
        assert grid == (height // 16, width // 16)
        assert image_pads == (height // 32) * (width // 32)  # LLM tokens


def test_batched_answers_equal_one_at_a_time_for_mixed_sizes(qwen, answerer) -> None:
    *_, images = qwen
    requests = [AskRequest(images[size], [f"Describe the {size[0]}x{size[1]} photo."], GREEDY) for size in SIZES]
    requests.append(AskRequest(images[SIZES[1]], ["What is on the left?"], GREEDY))  # shares a call with [1]
    batched = answerer.answer_batch(requests)
    one_by_one = [answerer.answer(request) for request in requests]
    assert [result.answers for result in batched] == [result.answers for result in one_by_one]
    assert [result.token_grid for result in batched] == [[h // 16, w // 16] for h, w in SIZES] + [[4, 8]]
    assert [result.batch_size for result in batched] == [1, 2, 1, 1, 2]


def test_images_compressed_by_concurrent_requests_all_decode(qwen, answerer) -> None:
    """Images in one batch are compressed in the answerer's threads: with ELIC, two CompressAI encodes at once
    hung or wrote streams that failed to decode about once in 60 batches, so the answerer compresses one at a time."""
    *_, images = qwen
    requests = [AskRequest(images[size], ["Hi"], {"max_new_tokens": 1}) for size in SIZES] * 2
    for _ in range(8):
        results = answerer.answer_batch(requests, return_errors=True)
        assert all(hasattr(result, "answers") for result in results), results


def test_the_neck_path_and_the_baseline_see_the_whole_image_at_the_same_grid(answerer, qwen) -> None:
    """qwen3-vl-vit: the view is the whole image, its latent cells are the patch grid, and the baseline's pixels
    have the same grid (no crop, no resampling on either path)."""
    *_, images = qwen
    encoder = answerer.mllm.visual_encoder
    for (height, width), image in images.items():
        assert encoder.view_box(height, width) == (0, 0, height, width)
        nk = compress_image(answerer.codec, image, name="elic", fingerprint=answerer.codec_fingerprint)
        result = answerer.answer(AskRequest(nk, ["Where?"], GREEDY))
        pixels = encoder.preprocess(image)
        assert encoder.grid_of(pixels) == (height // 16, width // 16) == tuple(result.latent_shape[-2:])
        torch.testing.assert_close(encoder.geometric_preprocess(image), image, rtol=0, atol=0)


def test_a_photo_of_any_size_is_read_at_the_encoders_own_size(answerer) -> None:
    """A 451 x 300 photo (no multiple of 32): its latent is cropped to the image and resampled to the grid Qwen's
    own resize gives it, the grid the uncompressed baseline gets."""
    photo = load_image(sample_images()[1])  # chelsea, 451 x 300
    height, width = photo.shape[-2:]
    result = answerer.answer(AskRequest(photo, ["What animal?"], GREEDY))
    encoder = answerer.mllm.visual_encoder
    assert result.token_grid == list(encoder.token_grid(height, width))
    # The image's own cells: it sits at rows 10..310, columns 30..481 of the 320 x 512 padded image, whose cell
    # edges nearest those are rows 1..19 and columns 2..30 (16-px cells).
    assert tuple(result.latent_shape[-2:]) == (18, 28)
    assert encoder.grid_of(encoder.preprocess(photo)) == tuple(result.token_grid)
    baseline = answerer.answer(AskRequest(photo, ["What animal?"], GREEDY, uncompressed=True))
    assert baseline.path == "uncompressed" and len(baseline.answers) == 1


def test_ask_and_serve_commands_take_a_qwen_neck(qwen) -> None:
    runner, host, folder, neck, images = qwen
    nk = folder / "wide.nk"
    compressed = invoke(runner, host, "compress", str(sample_images()[1]), "--codec", "elic", "--tiny", "-o", str(nk))
    assert compressed.exit_code == 0, compressed.output
    asked = invoke(runner, host, "ask", str(nk), "--neck", str(neck), "--mllm", "qwen3-vl", "--tiny",
                   "--prompt", "What is this?", "--max-new-tokens", "3", "--json")
    assert asked.exit_code == 0, asked.output
    report = json.loads(asked.stdout)
    height, width = read_nk(nk).original_size
    assert (height, width) == (300, 451) and report["path"] == "neck" and report["synthesis_calls"] == 0
    assert report["token_grid"] == [18, 28]  # Qwen's resize: 288 x 448, multiples of 32 nearest the photo's size
    assert report["latent_shape"][2:] == [18, 28]  # the photo's own cells, the codec's padding dropped


def test_serve_answers_concurrent_files_of_mixed_sizes_as_alone(qwen, answerer, tmp_path) -> None:
    """`neckkit serve` with the Qwen neck: files of three sizes posted at once give the answers each gets alone."""
    import concurrent.futures
    import sys

    from test_serve import free_port, post_nk, running_server

    from neckkit.bitstream import encode_nk

    *_, neck, images = qwen
    files = [encode_nk(compress_image(answerer.codec, images[size], name="elic",
                                      fingerprint=answerer.codec_fingerprint)) for size in SIZES[:3]]
    files.append(files[1])
    alone = [answerer.answer(AskRequest(data, ["What is this?"], GREEDY)).answers for data in files]
    command = [sys.executable, "-m", "neckkit", "serve", "--neck", str(neck), "--mllm", "qwen3-vl", "--tiny",
               "--port", str(free_port()), "--max-batch", "8", "--max-wait-ms", "300", "--no-access-log"]
    with running_server(command, tmp_path / "serve.log") as server:
        with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
            replies = list(pool.map(lambda data: post_nk(server, data, "What is this?", max_new_tokens=3), files))
    assert [reply.status_code for reply in replies] == [200] * len(files), [reply.text for reply in replies]
    bodies = [reply.json() for reply in replies]
    assert [body["answers"] for body in bodies] == alone
    assert [body["token_grid"] for body in bodies] == [[h // 16, w // 16] for h, w in SIZES[:3]] + [[4, 8]]


def test_bench_counts_a_native_resolution_neck_at_a_non_square_size(qwen, host) -> None:
    """`neckkit bench --size WIDTHxHEIGHT` on qwen3-vl-vit: the image's own token grid, and the encoder front it
    replaces is exactly the patch embedding, the position table and blocks 0..1."""
    runner, *_ = qwen
    result = invoke(runner, host, "bench", "--codec", "elic", "--encoder", "qwen3-vl-vit", "--tiny", "--size", "96x64",
                    "--repeats", "1", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["height"], report["width"], report["token_grid"], report["size"]) == (64, 96, [4, 6], "96x64")
    _, encoder = build_component(host, "encoder", "qwen3-vl-vit", {"tiny": True})
    visual = encoder.visual
    front = [visual.patch_embed, visual.pos_embed, visual.blocks[0], visual.blocks[1]]
    assert report["encoder_front_params"] == sum(p.numel() for module in front for p in module.parameters())
    assert report["neck_kmac_per_pixel"] > 0 and report["replaced_kmac_per_pixel"] > report["encoder_front_kmac_per_pixel"]
