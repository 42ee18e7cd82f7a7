"""The offline BD-rate recipe of docs/evaluation.md, run as documented: tiny d3 necks at four lambdas for two
codecs, compared by ``neckkit eval`` (about 30 s here; the documented shell commands take under 2 minutes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import cli_workspace, invoke

DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
CODECS = {  # codec -> (run name, the d3 lambdas of the recipe)
    "tic": ("tic", ("0.000001", "0.00001", "0.00003", "0.0001")),
    "bmshj2018-hyperprior": ("bmshj", ("0.000001", "0.00001", "0.00002", "0.00003")),
}
JOINT = ("--set", "scenarios.joint_only=true", "--set", "scenarios.phase2_lr=0.001", "--max-steps", "10")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory):
    """The recipe's eval.json (without records) and its stderr."""
    with cli_workspace(tmp_path_factory, "bd") as (runner, host, folder):
        runs, necks = folder / "runs", []
        for codec, (short, lambdas) in CODECS.items():
            base = runs / f"{short}-d1"
            trained = invoke(runner, host, "train", "--codec", codec, "--encoder", "clip-l", "--tiny", "--out", str(base),
                             "--no-progress")
            assert trained.exit_code == 0, trained.output
            for rate_lambda in lambdas:
                out = runs / f"{short}-{rate_lambda}"
                trained = invoke(runner, host, "train", "--codec", codec, "--encoder", "clip-l", "--tiny", "--scenario", "d3",
                                 "--lambda", rate_lambda, "--init", str(base), *JOINT, "--out", str(out), "--no-progress")
                assert trained.exit_code == 0, trained.output
                necks += ["--neck", str(out)]
        result = invoke(runner, host, "eval", *necks, "--anchor", "neck/d3/tic", "--out", str(folder / "evals"),
                        "--no-progress", "--json")
        assert result.exit_code == 0, result.output
        yield json.loads(result.stdout), result.stderr


def test_the_documented_commands_are_the_ones_tested() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for _, lambdas in CODECS.values():
        assert f"for l in {' '.join(lambdas)}; do" in text
    assert "--set scenarios.joint_only=true --set scenarios.phase2_lr=0.001 --max-steps 10" in text
    assert "--anchor neck/d3/tic" in text


def test_the_offline_recipe_gives_finite_bd_rates(recipe) -> None:
    report, _ = recipe
    assert report["rate_axis"] == "payload_bpp" and "container header" in report["rate_axis_description"]
    entries = [e for e in report["bd_rates"] if (e["test"], e["anchor"]) == ("neck/d3/bmshj2018-hyperprior", "neck/d3/tic")]
    assert {(e["metric"], e["method"]) for e in entries} == {
        (metric, method) for metric in ("embedding_cosine", "embedding_mse") for method in ("pchip", "cubic")}
    for entry in entries:
        assert entry["reason"] is None and entry["rate_axis"] == "payload_bpp"
        assert math.isfinite(entry["bd_rate"]) and -100 < entry["bd_rate"] and math.isfinite(entry["bd_quality"])
    necks = [row for row in report["rows"] if row["path"] == "neck" and row["codec"] == "tic"]
    assert sorted(row["rate_lambda"] for row in necks) == [row["rate_lambda"] for row in necks]  # rate rises with lambda


def test_each_d3_sweep_is_compared_with_its_own_codecs_reconstructions(recipe) -> None:
    """No base codec here: each neck curve's default anchor is its retrained codecs' Reconstruction curve. The
    neck is far above it (no shared quality: no BD-rate, said why), and BD-quality is a number."""
    report, _ = recipe
    anchors = {e["test"]: set() for e in report["bd_rates"]}
    for entry in report["bd_rates"]:
        anchors[entry["test"]].add(entry["anchor"])
    assert anchors == {"neck/d3/tic": {"reconstruction/d3/tic"},
                       "neck/d3/bmshj2018-hyperprior": {"reconstruction/d3/bmshj2018-hyperprior", "neck/d3/tic"}}
    own = [e for e in report["bd_rates"] if e["anchor"].startswith("reconstruction/d3/")]
    assert own and all(e["bd_rate"] is None and e["bd_quality"] > 0.1 for e in own)
    assert all(e["reason"].startswith("BD-rate refused: curve 'reconstruction/d3/") for e in own)
    assert "nan" not in json.dumps(report["bd_rates"]).lower()


def test_a_tiny_evaluation_is_flagged_plumbing_only(recipe) -> None:
    report, stderr = recipe
    assert report["plumbing_only"] is True
    assert sorted(report["placeholders"]) == ["codec 'bmshj2018-hyperprior' (tiny)", "codec 'tic' (tiny)",
                                              "encoder 'clip-l' (tiny)"]
    assert stderr.count("random weights, so what this command outputs shows the plumbing") == 1
