"""``neckkit eval --tasks``: lmms-eval benchmarks on every rate point and path, beside the sweep's own metrics."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from conftest import cli_workspace, invoke
from neckkit.evaluation.bd_rate import bd_table

TASK = "neckkit_yesno"
SCORE = f"{TASK}/accuracy"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_DATASETS_OFFLINE", "1")
    with cli_workspace(tmp_path_factory, "eval-tasks") as (runner, host, folder):
        trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l-336", "--tiny", "--no-progress",
                         "--max-steps", "2", "--out", str(folder / "neck"))
        assert trained.exit_code == 0, trained.output
        yield runner, host, folder
    patch.undo()


@pytest.fixture(scope="module")
def evaluated(workspace):
    runner, host, folder = workspace
    out = folder / "eval"
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--codec", "avif", "--quality", "10",
                    "--quality", "60", "--mllm", "llava-1.5", "--tiny", "--tasks", TASK, "--task-limit", "4",
                    "--max-new-tokens", "3", "--limit", "1", "--anchor", "reconstruction/avif", "--no-progress",
                    "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "eval.json").read_text())


def test_every_row_gets_the_benchmark_score_and_its_images_rate(evaluated) -> None:
    out, report = evaluated
    rows = {(row["point"], row["path"]): row for row in report["rows"]}
    assert set(rows) == {("uncompressed", "uncompressed"), ("neck", "reconstruction"), ("neck", "neck"),
                         ("avif q10", "reconstruction"), ("avif q60", "reconstruction")}
    for key, row in rows.items():
        assert 0.0 <= row[SCORE] <= 1.0, key
        assert row["benchmark_images"] == 1, key  # the first 4 questions are all about the astronaut
    assert rows[("uncompressed", "uncompressed")]["benchmark_payload_bpp"] is None
    assert rows[("avif q10", "reconstruction")]["benchmark_payload_bpp"] < rows[("avif q60", "reconstruction")][
        "benchmark_payload_bpp"]
    # the neck and its codec's Reconstruction read the same files: the same rate
    assert rows[("neck", "neck")]["benchmark_bpp"] == rows[("neck", "reconstruction")]["benchmark_bpp"] > 0
    benchmarks = report["benchmarks"]
    assert benchmarks["tasks"] == [TASK] and benchmarks["rate_field"] == "benchmark_payload_bpp"
    assert benchmarks["columns"][SCORE] is True
    assert len(benchmarks["runs"]) == 5  # one lmms-eval run per distinct (point, path)
    for run in benchmarks["runs"]:
        assert (out / "lmms" / run["results_file"]).is_file() and (out / "lmms" / run["rates_file"]).is_file()
        assert 0 < run["seconds"] <= benchmarks["seconds"]
    assert report["seconds_by_stage"]["benchmarks"] == benchmarks["seconds"]


def test_the_csv_and_the_bd_table_carry_the_benchmark_metric(evaluated) -> None:
    out, report = evaluated
    with (out / "eval.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert SCORE in rows[0] and "benchmark_payload_bpp" in rows[0]
    assert all(row[SCORE] != "" for row in rows)
    entries = [e for e in report["bd_rates"] if e["metric"] == SCORE]
    assert {(e["test"], e["anchor"]) for e in entries} == {("neck/d1/tic", "reconstruction/tic"),
                                                           ("neck/d1/tic", "reconstruction/avif")}
    assert {e["rate_axis"] for e in entries} == {"benchmark_payload_bpp"}
    for entry in entries:  # one neck point is no curve: refused with the reason, never a silent gap
        assert entry["bd_rate"] is None and "point(s); BD-rate needs at least 4" in entry["reason"]
    with (out / "bd_rate.csv").open() as handle:
        assert any(row["metric"] == SCORE for row in csv.DictReader(handle))


def test_benchmark_scores_make_bd_rates_on_the_benchmark_images_rates() -> None:
    """Four rate points per curve: BD-rate and BD-quality of a neck curve against an AVIF curve on a score."""
    def rows(path: str, codec: str, rates: list[float], scores: list[float]) -> list[dict]:
        return [{"point": f"{codec}{i}", "path": path, "codec": codec, "scenario": "d1" if path == "neck" else None,
                 "benchmark_payload_bpp": rate, SCORE: score} for i, (rate, score) in enumerate(zip(rates, scores, strict=True))]

    table = rows("neck", "tic", [0.1, 0.2, 0.4, 0.8], [0.5, 0.6, 0.7, 0.8]) + rows(
        "reconstruction", "avif", [0.2, 0.4, 0.8, 1.6], [0.5, 0.6, 0.7, 0.8])
    entries = bd_table(table, "benchmark_payload_bpp", ["reconstruction/avif"], metrics={SCORE: True})
    primary = next(e for e in entries if e["anchor"] == "reconstruction/avif" and e["method"] == "pchip")
    assert primary["bd_rate"] == pytest.approx(-50.0, abs=1e-6)  # the neck needs half the bits at every score
    assert primary["bd_quality"] > 0 and primary["reason"] is None


def test_tasks_need_an_mllm_and_known_names(workspace) -> None:
    runner, host, folder = workspace
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--tasks", TASK, "--out", str(folder / "x"))
    assert result.exit_code == 2 and "--tasks are answered by an MLLM" in result.output
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--mllm", "llava-1.5", "--tiny",
                    "--tasks", "neckkit_yesnoo", "--out", str(folder / "x"))
    assert result.exit_code == 1 and "lmms-eval has no task 'neckkit_yesnoo' (did you mean neckkit_yesno" in result.output
    assert not (folder / "x").exists()


def test_without_lmms_eval_one_line_names_the_extra(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, host, folder = workspace
    monkeypatch.setitem(sys.modules, "lmms_eval", None)  # import fails as if not installed
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--mllm", "llava-1.5", "--tiny",
                    "--tasks", TASK, "--out", str(folder / "y"))
    assert result.exit_code == 1
    assert 'install the benchmark extra: pip install "neckkit[lmms]"' in result.output
    assert not (folder / "y").exists()
