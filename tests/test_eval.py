"""neckkit eval: a rate sweep over trained necks, with the uncompressed and Reconstruction baselines."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import cli_workspace, invoke
from neckkit.evaluation.report import ROW_FIELDS
from neckkit.samples import sample_images


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    """Two tiny tic + clip-l necks at two rates (d1, and d3 whose joint phase lowers the rate)."""
    with cli_workspace(tmp_path_factory, "eval") as (runner, host, folder):
        for scenario in ("d1", "d3"):
            trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--scenario",
                             scenario, "--out", str(folder / scenario), "--no-progress")
            assert trained.exit_code == 0, trained.output
        yield runner, host, folder


def run_eval(sweep, *args: str):
    runner, host, _ = sweep
    return invoke(runner, host, "eval", "--no-progress", *args)


@pytest.fixture(scope="module")
def swept(sweep):
    """The two-point sweep on the bundled photos, as JSON, plus its output folder."""
    _, _, folder = sweep
    out = folder / "result"
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--neck", str(folder / "d3"), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_a_two_point_sweep_has_every_path_and_writes_json_csv_and_plot(swept) -> None:
    report, out = swept
    rows = report["rows"]
    assert [(row["point"], row["path"]) for row in rows] == [
        ("uncompressed", "uncompressed"), ("d3", "reconstruction"), ("d3", "neck"), ("d1", "reconstruction"), ("d1", "neck"),
    ]  # uncompressed first, then by increasing bpp: d3 trained its codec for a lower rate
    assert report["images"] == report["evaluated"] == 4 and report["failures"] == []
    by = {(row["point"], row["path"]): row for row in rows}
    assert by["d3", "neck"]["bpp"] < by["d1", "neck"]["bpp"]
    assert by["uncompressed", "uncompressed"]["embedding_mse"] == 0 and by["uncompressed", "uncompressed"]["bpp"] is None
    assert by["uncompressed", "uncompressed"]["embedding_cosine"] == pytest.approx(1.0)
    for point in ("d1", "d3"):  # the neck beats Reconstruction on the embedding, as in training's validation
        assert by[point, "neck"]["embedding_cosine"] > by[point, "reconstruction"]["embedding_cosine"]
        assert by[point, "neck"]["psnr"] is None and 0 < by[point, "reconstruction"]["ms_ssim"] < 1
        assert by[point, "neck"]["bpp"] == by[point, "reconstruction"]["bpp"]  # one bitstream, two readers
    assert {p["label"]: p["scenario"] for p in report["points"]} == {"d1": "d1", "d3": "d3"}
    assert set(report["files"]) == {"json", "csv", "bd_csv", "plot"}
    assert report["bd_method"]["primary"] == "pchip" and report["bd_method"]["methods"] == ["pchip", "cubic"]
    # each neck is one point, compared with its own codec's Reconstruction (d3's codec is not the base codec):
    # refused with a reason, never a number
    assert {(e["test"], e["anchor"]) for e in report["bd_rates"]} == {
        ("neck/d1/tic", "reconstruction/tic"), ("neck/d3/tic", "reconstruction/d3/tic"), ("neck/d3/tic", "reconstruction/tic")}
    assert all(e["bd_rate"] is None and "BD-rate needs at least 4" in e["reason"] for e in report["bd_rates"])
    assert report["rate_axis"] == "payload_bpp" and report["plumbing_only"] is True

    saved = json.loads((out / "eval.json").read_text())
    assert saved["rows"] == rows and len(saved["records"]) == 4 * 5
    records = [r for r in saved["records"] if (r["point"], r["path"]) == ("d1", "neck")]
    assert by["d1", "neck"]["embedding_cosine"] == pytest.approx(sum(r["embedding_cosine"] for r in records) / 4)

    with (out / "eval.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(ROW_FIELDS) and len(table) == 5
    assert [(line["point"], line["path"]) for line in table] == [(row["point"], row["path"]) for row in rows]
    assert float(table[4]["bpp"]) == pytest.approx(by["d1", "neck"]["bpp"]) and table[0]["bpp"] == ""

    with Image.open(out / "rate_quality.png") as plot:
        assert plot.format == "PNG" and plot.width > 800 and plot.height > 300


def test_bpp_is_the_size_of_the_nk_file_of_the_crop(sweep, swept) -> None:
    """The record's bpp equals the bytes of a .nk file written by neckkit compress from the same crop."""
    runner, host, folder = sweep
    report, out = swept
    photo = sample_images()[1]
    crop = folder / "crop.png"
    from neckkit.bitstream.images import load_image, save_image
    from neckkit.interfaces.preprocess import resize_center_crop

    save_image(resize_center_crop(load_image(photo), 256, 256), crop)
    nk = folder / "crop.nk"
    compressed = invoke(runner, host, "compress", str(crop), "--neck", str(folder / "d3"), "-o", str(nk))
    assert compressed.exit_code == 0, compressed.output
    records = json.loads((out / "eval.json").read_text())["records"]
    record = next(r for r in records if r["image"] == photo.name and r["point"] == "d3" and r["path"] == "neck")
    # save_image rounds to 8 bits; the tiny codec's bytes do not depend on that rounding here
    assert record["bpp"] == pytest.approx(nk.stat().st_size * 8 / (256 * 256), rel=0.02)


def test_the_neck_path_embedding_matches_a_direct_computation(sweep, swept) -> None:
    """Independent recomputation of one record: codec latent -> neck -> encoder from entry_layer."""
    from neckkit.bitstream.images import load_image
    from neckkit.interfaces.preprocess import resize_center_crop
    from neckkit.neck.checkpoint import build_neck, load_checkpoint
    from neckkit.serving.machine_path import codec_for_checkpoint, encoder_for_checkpoint

    _, host, folder = sweep
    checkpoint = load_checkpoint(folder / "d1")
    _, codec = codec_for_checkpoint(host, checkpoint)
    _, encoder = encoder_for_checkpoint(host, checkpoint)
    neck = build_neck(checkpoint).eval()
    photo = sample_images()[0]
    image = resize_center_crop(load_image(photo), 256, 256)
    with torch.no_grad():
        reference = encoder.encode(encoder.preprocess(image))
        student = encoder.encode_from(neck(codec.analyze(image).y_hat), checkpoint.meta.entry_layer)
    cosine = torch.nn.functional.cosine_similarity(student, reference).item()
    mse = torch.nn.functional.mse_loss(student, reference).item()
    records = json.loads((swept[1] / "eval.json").read_text())["records"]
    record = next(r for r in records if r["image"] == photo.name and r["point"] == "d1" and r["path"] == "neck")
    assert record["embedding_cosine"] == pytest.approx(cosine, abs=1e-5)
    assert record["embedding_mse"] == pytest.approx(mse, rel=1e-4)


def test_labelled_folders_give_zero_shot_accuracy_and_bad_images_are_counted(sweep, tmp_path: Path) -> None:
    _, _, folder = sweep
    data = tmp_path / "data"
    for name, photo in zip(("astronaut", "cat", "coffee", "rocket"), sample_images(), strict=True):
        (data / name).mkdir(parents=True)
        shutil.copy(photo, data / name / photo.name)
    (data / "cat" / "broken.jpg").write_bytes(b"not an image")
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--data", str(data), "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 5 and report["evaluated"] == 4
    assert report["failures"] == [{"image": "cat/broken.jpg", "point": "read", "error": report["failures"][0]["error"]}]
    assert "not a readable image" in report["failures"][0]["error"]
    assert "1 failure(s) counted" in result.stderr
    for row in report["rows"]:
        assert row["top1"] in (0.0, 0.25, 0.5, 0.75, 1.0) and row["top5"] is None  # four classes: no top-5
    assert {r["image"] for r in json.loads((tmp_path / "out" / "eval.json").read_text())["records"]} == {
        "astronaut/astronaut.jpg", "cat/chelsea.jpg", "coffee/coffee.jpg", "rocket/rocket.jpg"}


def test_a_codec_point_gives_reconstruction_only(sweep, tmp_path: Path) -> None:
    result = run_eval(sweep, "--codec", "tic", "--tiny", "--encoder", "clip-l", "--limit", "2", "--out", str(tmp_path / "q"),
                      "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert sorted((row["point"], row["path"]) for row in rows) == [("tic", "reconstruction"), ("uncompressed", "uncompressed")]
    assert all(row["images"] == 2 for row in rows)


def test_tiny_quality_points_are_refused_not_printed_as_identical_rows(sweep, tmp_path: Path) -> None:
    """Every quality of a tiny codec is the same random model: two rows q1 and q2 would claim to differ."""
    result = run_eval(sweep, "--codec", "tic", "--tiny", "--encoder", "clip-l", "--quality", "1", "--quality", "2",
                      "--out", str(tmp_path / "q"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: codec 'tic' (plugin 'neckkit.plugins.codecs'): --tiny and --quality exclude each other "
        "(a tiny model is the same random model at every quality)"
    ]
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    ("args", "message", "exit_code"),
    [
        (("--captions", "x.json"), "--captions and --questions are answered by an MLLM", 2),
        ((), "nothing to evaluate", 2),
        (("--codec", "tic", "--tiny"), "pass --encoder NAME", 2),
        (("--quality", "1"), "--quality needs --codec", 2),
        (("--neck", "{folder}/d1", "--rate", "bits"), "--rate must be file, payload or estimated", 2),
        (("--neck", "{folder}/d1", "--encoder", "clip-l-336"), "not the encoder the necks were trained for", 1),
        (("--neck", "{folder}/nowhere"), "nowhere", 1),
    ],
)
def test_bad_requests_are_one_line_errors(sweep, args: tuple[str, ...], message: str, exit_code: int) -> None:
    """Usage errors (a flag missing or misused) exit 2, the rest 1 (docs/cli.md, "Errors")."""
    folder = sweep[2]
    result = run_eval(sweep, *(arg.format(folder=folder) for arg in args))
    assert result.exit_code == exit_code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


@pytest.mark.parametrize(("rate", "field"), [("file", "bpp"), ("estimated", "estimated_bpp"), ("payload_bpp", "payload_bpp")])
def test_the_rate_axis_is_named_in_eval_json_and_bd_rates(sweep, tmp_path: Path, rate: str, field: str) -> None:
    """--rate picks the axis of plots and BD-rates; every row keeps all three rates."""
    from neckkit.evaluation.rate_axis import rate_axis

    folder = sweep[2]
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--neck", str(folder / "d3"), "--rate", rate, "--limit", "1",
                      "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rate_axis"] == field and report["rate_axis_description"] == rate_axis(field).description
    assert report["bd_rates"] and {e["rate_axis"] for e in report["bd_rates"]} == {field}
    assert all(row[name] > 0 for row in report["rows"][1:] for name in ("bpp", "payload_bpp", "estimated_bpp"))
    with (tmp_path / "out" / "bd_rate.csv").open(newline="") as handle:
        assert {line["rate_axis"] for line in csv.DictReader(handle)} == {field}


def test_existing_results_are_kept_unless_overwrite(sweep, tmp_path: Path) -> None:
    folder = sweep[2]
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text("earlier results")
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--out", str(out), "--limit", "1")
    assert result.exit_code == 1 and "already holds evaluation results" in result.output
    assert (out / "eval.json").read_text() == "earlier results"
    again = run_eval(sweep, "--neck", str(folder / "d1"), "--out", str(out), "--limit", "1", "--overwrite")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "eval.json").read_text())["evaluated"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["bd_rate.csv", "eval.csv", "eval.json", "rate_quality.png"]  # no temporaries


def test_an_overwrite_that_dies_while_rendering_keeps_the_whole_old_set(
    sweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neckkit.evaluation.report as report

    folder, out = sweep[2], tmp_path / "out"
    assert run_eval(sweep, "--neck", str(folder / "d1"), "--out", str(out), "--limit", "1").exit_code == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(old) == ["bd_rate.csv", "eval.csv", "eval.json", "rate_quality.png"]

    def dies(*args: object, **kwargs: object) -> None:  # eval.json and the CSVs are already written by now
        raise KeyboardInterrupt("killed while drawing the plot")

    monkeypatch.setattr(report, "plot_rate_quality", dies)
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--neck", str(folder / "d3"), "--out", str(out),
                      "--limit", "1", "--overwrite")
    assert result.exit_code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # not new eval.json beside the old plot


def test_a_killed_runs_staging_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    from neckkit.files import staged_files

    (tmp_path / ".staged-abc.tmp").mkdir()
    (tmp_path / ".staged-abc.tmp" / "eval.json").write_text("half")
    (tmp_path / "eval.json").write_text("old")
    with staged_files(tmp_path) as staging:
        (staging / "eval.json").write_text("new")
        assert (tmp_path / "eval.json").read_text() == "old"  # nothing moves before the block ends
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
    assert (tmp_path / "eval.json").read_text() == "new"


def test_captions_naming_unknown_images_are_refused(sweep, tmp_path: Path) -> None:
    folder = sweep[2]
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"coffee.jpg": ["a cup"], "zebra.jpg": ["a zebra"]}))
    result = run_eval(sweep, "--neck", str(folder / "d1"), "--captions", str(captions), "--mllm", "llava-1.5", "--tiny")
    assert result.exit_code == 1 and "'zebra.jpg'" in result.output


def neck336(sweep) -> Path:
    """A tiny clip-l-336 neck (LLaVA-1.5's encoder), trained once per module."""
    runner, host, folder = sweep
    neck = folder / "neck336"
    if not neck.exists():
        trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l-336", "--tiny", "--max-steps", "2",
                         "--out", str(neck), "--no-progress")
        assert trained.exit_code == 0, trained.output
    return neck


def test_an_mllm_captions_and_answers_on_every_path(sweep, tmp_path: Path) -> None:
    """Tiny LLaVA-1.5 over a clip-l-336 neck: captions scored with BLEU/CIDEr, answers with VQA accuracy."""
    from neckkit.evaluation.text_metrics import score_captions, vqa_accuracy

    runner, host, folder = sweep
    neck = neck336(sweep)
    references = {"coffee.jpg": ["a cup of coffee on a saucer", "coffee with milk foam"],
                  "chelsea.jpg": ["a tabby cat looking to the side", "a cat with green eyes"]}
    captions, questions = tmp_path / "captions.json", tmp_path / "questions.json"
    captions.write_text(json.dumps(references))
    questions.write_text(json.dumps([{"image": "rocket.jpg", "question": "What is this?", "answers": ["rocket"] * 10}]))
    result = run_eval(sweep, "--neck", str(neck), "--mllm", "llava-1.5", "--tiny", "--captions", str(captions),
                      "--questions", str(questions), "--max-new-tokens", "4", "--caption-tokenizer", "simple",
                      "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mllm"] == "llava-1.5" and report["caption_scoring"]["tokenizer"] == "simple"
    records = json.loads((tmp_path / "out" / "eval.json").read_text())["records"]
    assert {row["path"] for row in report["rows"]} == {"uncompressed", "reconstruction", "neck"}
    for row in report["rows"]:
        mine = [r for r in records if (r["point"], r["path"]) == (row["point"], row["path"])]
        candidates = {r["image"]: r["caption"] for r in mine if "caption" in r}
        assert set(candidates) == set(references) and all(isinstance(text, str) for text in candidates.values())
        expected = score_captions(candidates, {key: references[key] for key in candidates}, tokenizer="simple",
                                  meteor=False, spice=False)
        assert row["bleu4"] == pytest.approx(expected.bleu4) and row["cider"] == pytest.approx(expected.cider)
        answered = [r for r in mine if "answers" in r]
        assert [r["image"] for r in answered] == ["rocket.jpg"]
        assert row["vqa_accuracy"] == pytest.approx(vqa_accuracy(answered[0]["answers"][0], ["rocket"] * 10))


def _same_rows(batched: list[dict], single: list[dict]) -> None:
    """Rows (or records) equal: rates and texts exactly, float scores to 1e-5 (batched kernels may differ in the last bits)."""
    assert len(batched) == len(single)
    for ours, theirs in zip(batched, single, strict=True):
        assert ours.keys() == theirs.keys()
        for name, value in ours.items():
            if name in ("bpp", "payload_bpp") or not isinstance(value, float):
                assert value == theirs[name], (name, ours["point"], ours["path"])
            else:
                assert value == pytest.approx(theirs[name], rel=1e-5, abs=1e-6), (name, ours["point"], ours["path"])


def test_batched_rows_equal_one_image_at_a_time_and_shared_codecs_are_built_once(sweep, tmp_path: Path) -> None:
    """--batch-size 4 against 1, with two points sharing one codec (the same d1 neck twice) and d3's own codec."""
    _, _, folder = sweep
    necks = ["--neck", str(folder / "d1"), "--neck", str(folder / "d1"), "--neck", str(folder / "d3")]
    reports = {}
    for batch in (1, 4):
        result = run_eval(sweep, *necks, "--batch-size", str(batch), "--out", str(tmp_path / f"b{batch}"), "--json")
        assert result.exit_code == 0, result.output
        reports[batch] = json.loads((tmp_path / f"b{batch}" / "eval.json").read_text())
    assert reports[4]["batch_size"] == 4 and set(reports[4]["seconds_by_stage"]) == {"load", "evaluate", "score"}
    assert [p["label"] for p in reports[4]["points"]] == ["d1", "d1#2", "d3"]
    _same_rows(reports[4]["rows"], reports[1]["rows"])
    key = lambda r: (r["image"], r["point"], r["path"])  # noqa: E731
    _same_rows(sorted(reports[4]["records"], key=key), sorted(reports[1]["records"], key=key))
    by_point = {(r["point"], r["path"]): r for r in reports[4]["rows"]}
    assert by_point[("d1", "neck")]["embedding_mse"] == by_point[("d1#2", "neck")]["embedding_mse"]


def test_evaluator_codes_each_shared_codec_once_per_batch(sweep) -> None:
    """Two points on one codec object: one analyze and one compress per batch, not one per point and image."""
    from neckkit.evaluation.sweep import Evaluator, RatePoint
    from neckkit.neck.checkpoint import build_neck, load_checkpoint
    from neckkit.serving.machine_path import codec_for_checkpoint, encoder_for_checkpoint

    _, host, folder = sweep
    checkpoint = load_checkpoint(folder / "d1")
    _, codec = codec_for_checkpoint(host, checkpoint)
    _, encoder = encoder_for_checkpoint(host, checkpoint)
    calls = {"analyze": 0, "compress": 0}
    for name in calls:
        original = getattr(codec, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(codec, name, counted)
    neck = build_neck(checkpoint).eval()
    points = [RatePoint(label, "tic", codec, dict(checkpoint.meta.codec.options), neck, checkpoint.meta.entry_layer)
              for label in ("a", "b")]
    evaluator = Evaluator(points, encoder.eval())
    evaluator.evaluate_batch(["x", "y", "z"], torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    assert calls == {"analyze": 1, "compress": 1} and not evaluator.failures
    assert len(evaluator.records) == 3 + 3 * 2 * 2  # uncompressed, then (reconstruction, neck) per point


def test_a_batch_with_a_failing_image_is_retried_image_by_image(sweep) -> None:
    """One bad image in a batch fails alone: the others are evaluated, the failure names it."""
    from neckkit.evaluation.sweep import Evaluator, RatePoint
    from neckkit.neck.checkpoint import build_neck, load_checkpoint
    from neckkit.serving.machine_path import codec_for_checkpoint, encoder_for_checkpoint

    _, host, folder = sweep
    checkpoint = load_checkpoint(folder / "d1")
    _, codec = codec_for_checkpoint(host, checkpoint)
    _, encoder = encoder_for_checkpoint(host, checkpoint)
    point = RatePoint("a", "tic", codec, dict(checkpoint.meta.codec.options), build_neck(checkpoint).eval(),
                      checkpoint.meta.entry_layer)
    evaluator = Evaluator([point], encoder.eval())
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    images[1, 0, 0, 0] = float("nan")
    original = codec.analyze

    def refuse_nan(x):
        if torch.isnan(x).any():
            raise ValueError("NaN pixels")
        return original(x)

    codec.analyze = refuse_nan
    evaluator.evaluate_batch(["good1", "bad", "good2"], images)
    assert evaluator.failures == [{"image": "bad", "point": "a", "error": "ValueError: NaN pixels"}]
    assert sorted({r["image"] for r in evaluator.records if r["path"] == "neck"}) == ["good1", "good2"]


def test_batched_captions_and_answers_equal_one_image_at_a_time(sweep, tmp_path: Path) -> None:
    """Greedy captions and answers (prompts of different lengths in one batch) equal those of batch 1."""
    runner, host, folder = sweep
    neck = neck336(sweep)
    captions, questions = tmp_path / "captions.json", tmp_path / "questions.json"
    captions.write_text(json.dumps({name: ["a photo"] for name in ("coffee.jpg", "chelsea.jpg", "rocket.jpg")}))
    questions.write_text(json.dumps([{"image": "rocket.jpg", "question": "What is this?", "answers": ["rocket"] * 10},
                                     {"image": "coffee.jpg", "question": "What colour is the cup on the table?",
                                      "answers": ["white"] * 10}]))
    records = {}
    for batch in (1, 4):
        out = tmp_path / f"b{batch}"
        result = run_eval(sweep, "--neck", str(neck), "--mllm", "llava-1.5", "--tiny", "--captions", str(captions),
                          "--questions", str(questions), "--max-new-tokens", "4", "--caption-tokenizer", "simple",
                          "--batch-size", str(batch), "--out", str(out))
        assert result.exit_code == 0, result.output
        records[batch] = {(r["image"], r["point"], r["path"]): r for r in json.loads((out / "eval.json").read_text())["records"]}
    assert records[4].keys() == records[1].keys()
    for key, record in records[4].items():
        assert record.get("caption") == records[1][key].get("caption"), key
        assert record.get("answers") == records[1][key].get("answers"), key
    assert sum("answers" in r for r in records[4].values()) == 2 * 3  # two images on three paths
