"""The served path as one object: loaded once, many requests, batches equal to one request at a time."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from test_ask import ask, served  # noqa: F401  (the tiny clip-l-336 neck and a .nk of the coffee photo)

from neckkit.bitstream import read_nk
from neckkit.bitstream.images import load_image
from neckkit.errors import NeckkitError
from neckkit.samples import sample_images
from neckkit.serving import Answerer, AskRequest, AskResult
from neckkit.serving.errors import AnswerFailed
from neckkit.serving.machine_path import SynthesisCounter
from neckkit.serving.requests import REPORT_FIELDS

GREEDY = {"max_new_tokens": 4, "num_beams": 1, "do_sample": False}


@pytest.fixture(scope="module")
def answerer(served):  # noqa: F811
    _runner, host, neck, *_ = served
    with Answerer.load(host, neck, "llava-1.5", {"tiny": True}, decode_threads=2) as loaded:
        yield loaded


def request(source, *prompts: str, **generation) -> AskRequest:
    return AskRequest(source, list(prompts), {**GREEDY, **generation})


def recording_generate(answerer: Answerer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, list[str]]]:
    """Record the tokens and prompts every ``generate`` call gets (the tiny LLM's answers vary little)."""
    calls: list[tuple[torch.Tensor, list[str]]] = []
    generate = answerer.mllm.generate

    def recorded(tokens, prompts, **options):
        calls.append((tokens.detach().clone(), list(prompts)))
        return generate(tokens, prompts, **options)

    monkeypatch.setattr(answerer.mllm, "generate", recorded)
    return calls


def test_a_batch_gives_the_answers_of_one_request_at_a_time(
    answerer: Answerer, served, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    *_, nk, photo = served
    other_photo = sample_images()[1]  # chelsea, 451 x 300: another latent shape than the coffee photo
    requests = [
        request(nk, "What is this?"),
        request(nk.read_bytes(), "Describe it.", "Is there a cup in the picture, and what colour is it?"),
        request(load_image(photo), "What is on the table?"),  # the same photo: the same latent, compressed here
        request(other_photo, "What animal is this?"),
        request(read_nk(nk), "What is this?", max_new_tokens=2),  # other generation options: a batch of its own
    ]
    calls = recording_generate(answerer, monkeypatch)
    batched = answerer.answer_batch(requests)
    batch_calls = list(calls)
    one_by_one = [answerer.answer(item) for item in requests]
    single_calls = calls[len(batch_calls):]
    # The batch of three: each row holds the tokens and prompt its request had alone.
    tokens, prompts = batch_calls[0]
    assert prompts == [prompt for item in requests[:3] for prompt in item.prompts] and tokens.shape[0] == 4
    single_tokens = torch.cat([call[0].expand(len(call[1]), -1, -1) for call in single_calls[:3]])
    torch.testing.assert_close(tokens, single_tokens, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(single_calls[0][0], single_calls[3][0])  # another photo: other tokens
    assert [result.answers for result in batched] == [result.answers for result in one_by_one]
    assert [result.batch_size for result in batched] == [3, 3, 3, 1, 1]
    assert [len(result.answers) for result in batched] == [1, 2, 1, 1, 1]
    assert all(result.synthesis_calls == 0 and result.path == "neck" for result in batched)
    assert [result.compressed_here for result in batched] == [False, False, True, True, False]
    assert batched[0].latent_shape == batched[2].latent_shape != batched[3].latent_shape
    assert batched[2].bpp == pytest.approx(batched[0].bpp)


def test_a_result_has_exactly_the_fields_of_ask_json(answerer: Answerer, served) -> None:  # noqa: F811
    *_, nk, photo = served
    code, output = ask(served, str(nk), "--mllm", "llava-1.5", "--prompt", "What is this?", "--json")
    assert code == 0, output
    printed = json.loads(output)
    result = answerer.answer(request(nk, "What is this?"))
    report = result.as_dict()
    assert list(report) == list(printed) == list(REPORT_FIELDS)  # what ask --server keeps of a reply
    assert {key: report[key] for key in ("source", "answers", "bpp", "payload_bpp", "latent_shape")} == {
        key: printed[key] for key in ("source", "answers", "bpp", "payload_bpp", "latent_shape")
    }
    assert set(printed["seconds"]) == set(report["seconds"]) | set(answerer.load_seconds)
    code, output = ask(served, str(photo), "--mllm", "llava-1.5", "--prompt", "a?", "--uncompressed", "--json")
    assert code == 0, output
    baseline = answerer.answer(AskRequest(photo, ["a?"], GREEDY, uncompressed=True))
    assert list(baseline.as_dict()) == list(json.loads(output)) and baseline.as_dict()["bpp"] is None
    assert baseline.answers == json.loads(output)["answers"]


def test_errors_stay_with_their_request(answerer: Answerer, served, tmp_path: Path) -> None:  # noqa: F811
    *_, nk, _photo = served
    damaged = bytearray(nk.read_bytes())
    damaged[:4] = b"XXXX"
    requests = [request(bytes(damaged), "x?"), request(nk, "What is this?"), request(tmp_path / "missing.nk", "x?")]
    results = answerer.answer_batch(requests, return_errors=True)
    assert isinstance(results[0], NeckkitError) and isinstance(results[2], NeckkitError)
    assert "does not exist" in str(results[2])
    assert isinstance(results[1], AskResult) and results[1].answers == answerer.answer(requests[1]).answers
    with pytest.raises(NeckkitError):
        answerer.answer_batch(requests)
    with pytest.raises(NeckkitError, match="needs an image"):
        answerer.answer(AskRequest(nk.read_bytes(), ["x?"], GREEDY, uncompressed=True))
    with pytest.raises(NeckkitError, match="at least one prompt"):
        AskRequest(nk, [])


def test_a_request_that_breaks_the_model_call_fails_alone(
    answerer: Answerer, served, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    *_, nk, _photo = served
    requests = [request(nk, prompt) for prompt in ("What is this?", "BOOM?", "Describe it.", "What colour?")]
    expected = [answerer.answer(item).answers for item in requests if item.prompts != ("BOOM?",)]
    generate = answerer.mllm.generate

    def fragile(tokens, prompts, **options):
        if "BOOM?" in prompts:
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return generate(tokens, prompts, **options)

    monkeypatch.setattr(answerer.mllm, "generate", fragile)
    results = answerer.answer_batch(requests, return_errors=True)
    assert [result.answers for result in results if isinstance(result, AskResult)] == expected
    assert isinstance(results[1], AnswerFailed) and "TypeError: TextEncodeInput" in str(results[1])
    with pytest.raises(TypeError, match="TextEncodeInput"):
        answerer.answer_batch(requests)


def test_concurrent_calls_from_threads_give_the_sequential_answers(answerer: Answerer, served) -> None:  # noqa: F811
    *_, nk, _photo = served
    requests = [request(nk, f"Question number {index}?") for index in range(4)]
    expected = [answerer.answer(item).answers for item in requests]
    got: dict[int, list[str]] = {}

    def ask_one(index: int) -> None:
        got[index] = answerer.answer(requests[index]).answers

    threads = [threading.Thread(target=ask_one, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [got.get(index) for index in range(len(requests))] == expected


def test_an_uncompressed_only_answerer_refuses_bitstreams(answerer: Answerer, served) -> None:  # noqa: F811
    *_, nk, photo = served
    with Answerer(answerer.checkpoint, answerer.mllm_name, answerer.mllm) as baseline:  # the loaded MLLM, no neck
        assert baseline.codec is None and baseline.neck is None
        with pytest.raises(NeckkitError, match="uncompressed baseline only"):
            baseline.answer(request(nk, "x?"))
        assert len(baseline.answer(AskRequest(photo, ["a?", "b?"], GREEDY, uncompressed=True)).answers) == 2


def test_synthesis_calls_are_counted_per_thread(host) -> None:
    codec = host.components("codec").get("tic").build(tiny=True).eval()
    counter = SynthesisCounter(codec)
    seen_elsewhere: list[int] = []
    with torch.no_grad():
        y_hat = codec.analyze(torch.rand(1, 3, 128, 128)).y_hat
        codec.synthesize(y_hat)
    thread = threading.Thread(target=lambda: seen_elsewhere.append(counter.calls))
    thread.start()
    thread.join()
    assert counter.calls == 8 and seen_elsewhere == [0]  # TIC's eight synthesis stages, in this thread only
    counter.close()
    with torch.no_grad():
        codec.synthesize(y_hat)
    assert counter.calls == 8
