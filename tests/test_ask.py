"""neckkit ask: bitstream -> latent -> neck -> the MLLM's encoder and LLM, with no reconstruction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_workspace, invoke
from neckkit.bitstream.container import read_nk
from neckkit.samples import sample_images


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A tiny clip-l-336 neck trained by neckkit train, and a photo compressed with its codec."""
    with cli_workspace(tmp_path_factory, "ask") as (runner, host, folder):
        neck, nk, photo = folder / "neck", folder / "photo.nk", sample_images()[2]
        trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l-336", "--tiny", "--max-steps", "2",
                         "--out", str(neck), "--no-progress")
        assert trained.exit_code == 0, trained.output
        compressed = invoke(runner, host, "compress", str(photo), "--codec", "tic", "--tiny", "-o", str(nk))
        assert compressed.exit_code == 0, compressed.output
        yield runner, host, neck, nk, photo


def ask(served, *args: str) -> tuple[int, str]:
    runner, host, neck, *_ = served
    result = invoke(runner, host, "ask", *args, "--neck", str(neck), "--tiny", "--max-new-tokens", "4")
    # stdout holds the answers; stderr the error line, or the tiny models' placeholder notice on success
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_ask_reads_a_bitstream_without_reconstructing(served) -> None:
    *_, nk, _photo = served
    code, output = ask(served, str(nk), "--mllm", "llava-1.5", "--prompt", "What is this?", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["path"] == "neck" and report["synthesis_calls"] == 0
    height, width = read_nk(nk).original_size
    assert report["codec"] == "tic" and report["bpp"] == pytest.approx(nk.stat().st_size * 8 / (height * width))
    assert len(report["answers"]) == 1 and isinstance(report["answer"], str)
    assert {"read", "entropy_decode", "load_neck", "neck", "mllm"} <= set(report["seconds"])
    assert len(report["latent_shape"]) == 4 and report["latent_shape"][0] == 1


def test_an_image_is_compressed_first_and_gives_the_same_answer(served) -> None:
    *_, nk, photo = served
    from_nk = json.loads(ask(served, str(nk), "--mllm", "llava-1.5", "--prompt", "Describe it.", "--json")[1])
    code, output = ask(served, str(photo), "--mllm", "llava-1.5", "--prompt", "Describe it.", "--json")
    assert code == 0, output
    from_image = json.loads(output)
    assert from_image["answers"] == from_nk["answers"] and from_image["synthesis_calls"] == 0
    assert from_image["bpp"] == pytest.approx(from_nk["bpp"])


def test_several_prompts_and_the_uncompressed_baseline(served) -> None:
    *_, photo = served
    code, output = ask(served, str(photo), "--mllm", "llava-1.5", "--prompt", "a?", "--prompt", "b?", "--uncompressed", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["path"] == "uncompressed" and report["bpp"] is None and len(report["answers"]) == 2


def test_a_neck_for_another_encoder_or_codec_is_refused(served, tmp_path: Path) -> None:
    runner, host, neck, nk, photo = served
    code, output = ask(served, str(nk), "--mllm", "blip2", "--prompt", "x")
    assert code == 1
    assert "trained for encoder 'clip-l-336', but MLLM 'blip2' reads encoder 'eva-g-blip2'" in output
    other = tmp_path / "elic.nk"
    assert invoke(runner, host, "compress", str(photo), "--codec", "elic", "--tiny", "-o", str(other)).exit_code == 0
    code, output = ask(served, str(other), "--mllm", "llava-1.5", "--prompt", "x")
    assert code == 1 and "was compressed with codec 'elic', but the neck in" in output
    code, output = ask(served, str(tmp_path / "missing.nk"), "--mllm", "llava-1.5", "--prompt", "x")
    assert code == 1 and output.startswith("Error:") and len(output.strip().splitlines()) == 1
