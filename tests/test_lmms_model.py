"""The lmms-eval model ``neckkit``: offline tasks on all three paths, real bytes per image, the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neckkit.errors import UsageError
from neckkit.host.manager import set_host
from neckkit.host.testing import host_for_tests
from neckkit.lmms.benchmarks import read_rates, run_tasks, task_manager
from neckkit.lmms.model import NeckkitLMM, RouteOptions, _truncate, build_route, rates_path
from neckkit.lmms.tasks import TASK_DIR
from neckkit.samples import sample_images

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
YESNO_QUESTIONS = 8  # --limit: the first eight questions (four photos' worth of MME-style pairs or fewer)


@pytest.fixture(scope="module")
def neck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TIC -> clip-l-336 neck (llava-1.5's encoder), trained by neckkit train."""
    from conftest import cli_workspace, invoke

    with cli_workspace(tmp_path_factory, "lmms") as (runner, host, folder):
        result = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l-336", "--tiny", "--max-steps",
                        "2", "--out", str(folder / "neck"), "--no-progress")
        assert result.exit_code == 0, result.output
        yield folder / "neck"


@pytest.fixture(scope="module")
def offline() -> None:
    patch = pytest.MonkeyPatch()
    for key, value in OFFLINE.items():
        patch.setenv(key, value)
    set_host(host_for_tests())
    yield
    set_host(None)
    patch.undo()


@pytest.fixture(scope="module")
def manager(offline):
    return task_manager([])


@pytest.fixture(scope="module")
def runs(neck: Path, manager, tmp_path_factory: pytest.TempPathFactory):
    """neckkit_yesno and neckkit_caption through each path, with the tiny LLaVA."""
    out = tmp_path_factory.mktemp("lmms-runs")
    routes = {
        "uncompressed": build_route(mllm="llava-1.5", path="uncompressed", tiny=True),
        "reconstruction": build_route(mllm="llava-1.5", path="reconstruction", codec="tic", tiny=True),
        "avif": build_route(mllm="llava-1.5", path="reconstruction", codec="avif", quality=40, tiny=True),
        "neck": build_route(mllm="llava-1.5", path="neck", neck=str(neck), tiny=True),
    }
    results = {name: run_tasks(route, ["neckkit_yesno", "neckkit_caption"], manager, out / name,
                               limit=YESNO_QUESTIONS, batch_size=4, max_new_tokens=4)
               for name, route in routes.items()}
    yield routes, results
    for route in routes.values():
        route.answerer.close()


def rate_rows(run) -> list[dict]:
    return [json.loads(line) for line in Path(run.rates_file).read_text().splitlines()]


def test_every_path_scores_the_local_tasks(runs) -> None:
    _, results = runs
    for name, run in results.items():
        assert set(run.scores) >= {"neckkit_yesno/accuracy", "neckkit_yesno/accuracy_plus", "neckkit_caption/cider",
                                   "neckkit_caption/bleu4"}, name
        assert 0.0 <= run.scores["neckkit_yesno/accuracy"] <= 1.0
        assert run.higher_is_better["neckkit_yesno/accuracy"] is True
        summary = json.loads(Path(run.results_file).read_text())
        assert summary["scores"] == run.scores and summary["path"] == run.path


def test_the_rates_file_has_one_row_per_question_with_real_bytes(runs) -> None:
    routes, results = runs
    captions = len(sample_images())  # one caption document per photo
    for name, run in results.items():
        rows = rate_rows(run)
        assert len(rows) == YESNO_QUESTIONS + captions, name
        assert {row["task"] for row in rows} == {"neckkit_yesno", "neckkit_caption"}
        assert all(row["error"] is None and row["path"] == routes[name].path for row in rows)
        # every photo is cropped to what LLaVA-1.5's encoder sees: 336 x 336, whatever its own size
        assert {(row["coded_height"], row["coded_width"]) for row in rows} == {(336, 336)}
        assert {(row["height"], row["width"]) for row in rows if row["task"] == "neckkit_caption"} == {
            (512, 512), (300, 451), (400, 600), (427, 640)}
        if name == "uncompressed":
            assert all(row["bytes"] is None and row["bpp"] is None for row in rows)
            assert run.rates["benchmark_bpp"] is None
            continue
        for row in rows:
            assert row["bytes"] > 0
            assert row["payload_bpp"] < row["bpp"] == pytest.approx(row["bytes"] * 8 / (336 * 336))
        # each photo is coded once, however many questions it gets
        per_image = {row["image"]: row["bytes"] for row in rows}
        assert all(row["bytes"] == per_image[row["image"]] for row in rows)
        assert run.rates["benchmark_images"] == len(per_image) == captions
        assert run.rates["benchmark_bpp"] == pytest.approx(sum(
            next(r["bpp"] for r in rows if r["image"] == image) for image in per_image) / len(per_image))


def test_the_neck_reads_the_same_file_the_reconstruction_decodes(runs) -> None:
    _, results = runs
    neck = {row["image"]: row["bytes"] for row in rate_rows(results["neck"])}
    reconstruction = {row["image"]: row["bytes"] for row in rate_rows(results["reconstruction"])}
    assert neck == reconstruction  # one crop, one tiny TIC: the same bytes on both paths
    avif = {row["image"]: row["bytes"] for row in rate_rows(results["avif"])}
    assert set(avif) == set(neck) and avif != neck


def test_the_region_is_the_mllm_encoders_own_crop(runs) -> None:
    routes, _ = runs
    image = torch.rand(1, 3, 300, 451, generator=torch.Generator().manual_seed(3))
    for route in routes.values():
        encoder = route.mllm.visual_encoder
        torch.testing.assert_close(route.crop(image), encoder.geometric_preprocess(image), rtol=0, atol=0)
        torch.testing.assert_close(encoder.preprocess(route.crop(image)), encoder.preprocess(image), rtol=0, atol=0)


def test_read_rates_counts_each_image_once_and_skips_failures(tmp_path: Path) -> None:
    rows = [{"image": "a", "bpp": 1.0, "payload_bpp": 0.5, "error": None},
            {"image": "a", "bpp": 1.0, "payload_bpp": 0.5, "error": None},
            {"image": "b", "bpp": 3.0, "payload_bpp": 2.5, "error": None},
            {"image": "", "bpp": None, "payload_bpp": None, "error": "broken"}]
    path = tmp_path / "rates.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert read_rates(path) == {"benchmark_images": 2, "benchmark_questions": 4, "benchmark_failures": 1,
                                "benchmark_bpp": 2.0, "benchmark_payload_bpp": 1.5}


def test_model_args_are_checked_before_anything_loads(offline) -> None:
    with pytest.raises(UsageError, match="neckkit model_args: path: Input should be 'uncompressed', 'reconstruction' "
                                         "or 'neck'"):
        build_route(mllm="llava-1.5", path="pixels", tiny=True)
    with pytest.raises(UsageError, match=r"neckkit model_args: qualty: Extra inputs are not permitted \(names: mllm, "):
        NeckkitLMM(mllm="llava-1.5", path="reconstruction", codec="jpeg", qualty="50")
    options = RouteOptions.parse({"path": "reconstruction", "codec": "jpeg", "quality": "50", "tiny": "true",
                                  "mllm_opt": "dtype=bfloat16;device_map=cuda"})
    assert (options.quality, options.tiny, options.mllm_opt) == (50, True, ["dtype=bfloat16", "device_map=cuda"])
    with pytest.raises(UsageError, match="path=neck needs neck=RUN"):
        build_route(mllm="llava-1.5", path="neck", tiny=True)
    with pytest.raises(UsageError, match="path=reconstruction needs codec=NAME"):
        build_route(mllm="llava-1.5", path="reconstruction", tiny=True)


def test_unsupported_request_types_say_what_is_supported(runs) -> None:
    routes, _ = runs
    model = NeckkitLMM(route=routes["uncompressed"])
    with pytest.raises(NotImplementedError, match="generate_until tasks only"):
        model.loglikelihood([])
    with pytest.raises(NotImplementedError, match="single-round"):
        model.generate_until_multi_round([])


def test_a_document_with_two_images_is_answered_empty_and_counted(runs, tmp_path: Path) -> None:
    from PIL import Image

    routes, _ = runs
    rates = tmp_path / "rates.jsonl"
    model = NeckkitLMM(route=routes["uncompressed"], rates_file=str(rates))
    model.task_dict = {"two": {"test": [{"q": "?"}, {"q": "!"}]}}
    photo = Image.new("RGB", (32, 32))

    class Request:
        def __init__(self, doc_id: int, visuals: list) -> None:
            self.args = ("Which is brighter?", {"max_new_tokens": 2}, lambda doc: visuals, doc_id, "two", "test")

    answers = model.generate_until([Request(0, [photo, photo]), Request(1, [photo])])
    assert answers[0] == "" and isinstance(answers[1], str)
    rows = [json.loads(line) for line in rates.read_text().splitlines()]
    assert rows[0]["error"].startswith("two document 0: the neckkit model reads exactly one image per question, "
                                       "got 2 visual(s) (Image, Image)")
    assert rows[1]["error"] is None and (rows[1]["coded_height"], rows[1]["coded_width"]) == (336, 336)
    assert read_rates(rates)["benchmark_failures"] == 1


def test_answers_stop_at_the_tasks_stop_sequences() -> None:
    assert _truncate("Yes\nbecause", ["\n"]) == "Yes"
    assert _truncate("A cat. ASSISTANT: more", ["ASSISTANT:", "\n"]) == "A cat. "
    assert _truncate("no stop here", []) == "no stop here"


def test_each_process_writes_its_own_rates_file(tmp_path: Path) -> None:
    assert rates_path(tmp_path / "r.jsonl", 0, 1) == tmp_path / "r.jsonl"
    assert rates_path(tmp_path / "r.jsonl", 3, 4) == tmp_path / "r.rank3.jsonl"


def test_python_m_lmms_eval_finds_the_model_through_its_entry_point(tmp_path: Path) -> None:
    """The documented command, from another folder, offline: results and the rates sidecar."""
    rates = tmp_path / "rates.jsonl"
    args = ",".join(["mllm=llava-1.5", "path=reconstruction", "codec=jpeg", "quality=50", "tiny=true",
                     f"rates_file={rates}", "max_new_tokens=3"])
    command = [sys.executable, "-m", "lmms_eval", "--model", "neckkit", "--model_args", args, "--tasks",
               "neckkit_yesno", "--include_path", str(TASK_DIR), "--limit", "4", "--batch_size", "4",
               "--output_path", str(tmp_path / "out")]
    env = {**os.environ, **OFFLINE, "NECKKIT_LOAD_PLUGINS": ""}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted((tmp_path / "out").rglob("*_results.json"))
    assert results, f"lmms-eval wrote no results: {done.stderr[-3000:]}"
    scores = json.loads(results[-1].read_text())["results"]["neckkit_yesno"]
    assert 0.0 <= scores["accuracy,none"] <= 1.0
    rows = [json.loads(line) for line in rates.read_text().splitlines()]
    assert len(rows) == 4 and all(row["codec"] == "jpeg" and row["bytes"] > 0 for row in rows)
