"""A rate-conditioned neck served: each file's level reaches the neck, and files at two levels share one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import cli_workspace, invoke
from neckkit.bitstream import read_nk
from neckkit.errors import NeckkitError
from neckkit.samples import sample_images
from neckkit.serving import Answerer, AskRequest

GREEDY = {"max_new_tokens": 3, "num_beams": 1, "do_sample": False}
CODEC = ["--codec", "mbt2018-mean-vbr", "--tiny"]


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory: pytest.TempPathFactory):
    """A tiny adaln neck trained on levels 1..6 of mbt2018-mean-vbr, and chelsea.jpg compressed at levels 1, 2.5, 6."""
    with cli_workspace(tmp_path_factory, "levels") as (runner, host, folder):
        result = invoke(runner, host, "train", *CODEC, "--encoder", "clip-l-336", "--tiny", "--no-progress",
                        "--neck-conditioning", "adaln", "--levels", "1,2,3,4,5,6", "--max-steps", "2",
                        "--set", "checkpoint_every=2", "--out", str(folder / "run"))
        assert result.exit_code == 0, result.output
        files = {}
        for level in ("1", "2.5", "6", "7"):
            target = folder / f"chelsea-{level}.nk"
            made = invoke(runner, host, "compress", str(sample_images()[1]), *CODEC, "--level", level, "-o", str(target))
            assert made.exit_code == 0, made.output
            files[float(level)] = target
        yield host, folder / "run", files


def test_files_at_two_levels_share_a_batch_and_each_gets_its_own_level(conditioned, monkeypatch) -> None:  # noqa: ANN001
    host, run, files = conditioned
    with Answerer.load(host, run, "llava-1.5", {"tiny": True}, decode_threads=1) as answerer:
        with torch.no_grad():  # a few steps leave the modulation near zero: make the level matter visibly
            for parameter in answerer.neck.transformer.modulation.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)) * 0.2)
        seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        forward = answerer.neck.forward

        def recorded(y_hat, level=None):  # noqa: ANN001, ANN202
            tokens = forward(y_hat, level)
            seen.append((tokens.detach().clone(), None if level is None else level.detach().clone()))
            return tokens

        monkeypatch.setattr(answerer.neck, "forward", recorded)
        requests = [AskRequest(files[level], ["What is this?"], GREEDY) for level in (1.0, 6.0, 2.5)]
        batched = answerer.answer_batch(requests)
        one_by_one = [answerer.answer(item) for item in requests]
    assert [result.batch_size for result in batched] == [3, 3, 3]
    assert [result.level for result in batched] == [1, 6, 2.5]
    assert [result.as_dict()["level"] for result in one_by_one] == [1, 6, 2.5]
    batch_tokens, batch_levels = seen[0]
    assert batch_levels.tolist() == [1.0, 6.0, 2.5]
    singles = torch.cat([tokens for tokens, _ in seen[1:]])
    torch.testing.assert_close(batch_tokens, singles, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(singles[0], singles[1], atol=1e-4)  # the level changes what the neck says
    assert [result.answers for result in batched] == [result.answers for result in one_by_one]


def test_a_level_outside_the_conditioned_range_is_refused_for_that_request_only(conditioned) -> None:  # noqa: ANN001
    host, run, files = conditioned
    with Answerer.load(host, run, "llava-1.5", {"tiny": True}, decode_threads=1) as answerer:
        refused, answered = answerer.answer_batch([AskRequest(files[7.0], ["What is this?"], GREEDY),
                                                   AskRequest(files[6.0], ["What is this?"], GREEDY)], return_errors=True)
        assert isinstance(refused, NeckkitError) and answered.level == 6 and answered.batch_size == 1
        with pytest.raises(NeckkitError, match=r"chelsea-7\.nk: this neck is conditioned on rate levels 1\.\.6 "
                                               r"\(adaln\); level 7 is outside them$"):
            answerer.answer(AskRequest(files[7.0], ["What is this?"], GREEDY))
        assert answerer.answer(AskRequest(files[6.0], ["What is this?"], GREEDY)).level == 6
    assert read_nk(files[7.0]).level == 7


def test_ask_compresses_an_image_at_the_given_level(conditioned, tmp_path: Path) -> None:  # noqa: ANN001
    import json

    from typer.testing import CliRunner

    host, run, _ = conditioned
    result = invoke(CliRunner(), host, "ask", str(sample_images()[1]), "--neck", str(run), "--mllm", "llava-1.5",
                    "--tiny", "-p", "What is this?", "--max-new-tokens", "2", "--level", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["level"] == 3
    refused = invoke(CliRunner(), host, "ask", str(sample_images()[1]), "--neck", str(run), "--mllm", "llava-1.5",
                     "--tiny", "-p", "What is this?", "--level", "3", "--uncompressed")
    assert refused.exit_code != 0 and "--level is for an image compressed here" in refused.stderr
