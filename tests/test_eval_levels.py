"""``neckkit eval`` over a variable-rate codec's levels: one conditioned neck, one shared neck and per-level necks."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import cli_workspace, invoke
from neckkit.evaluation.bd_rate import series_key

LEVELS = ("0", "2", "4", "7")
TRAIN = ["--codec", "mbt2018-mean-vbr", "--encoder", "clip-l", "--tiny", "--no-progress", "--max-steps", "2",
         "--set", "checkpoint_every=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Necks of one codec and encoder: adaln and shared over four levels, and one per level."""
    with cli_workspace(tmp_path_factory, "eval-levels") as (runner, host, folder):
        made = {}
        for name, flags in [("adaln", ["--neck-conditioning", "adaln", "--levels", ",".join(LEVELS)]),
                            ("shared", ["--levels", ",".join(LEVELS)])] + [
                (f"l{level}", ["--levels", level]) for level in LEVELS]:
            result = invoke(runner, host, "train", *TRAIN, *flags, "--out", str(folder / name))
            assert result.exit_code == 0, result.output
            made[name] = folder / name
        yield runner, host, folder, made


def test_one_run_compares_the_conditioned_shared_and_per_level_necks(runs) -> None:  # noqa: ANN001
    runner, host, folder, made = runs
    necks = [arg for name in ("adaln", "shared", "l0", "l2", "l4", "l7") for arg in ("--neck", str(made[name]))]
    out = folder / "eval"
    result = invoke(runner, host, "eval", *necks, "--limit", "2", "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    neck_rows = [row for row in report["rows"] if row["path"] == "neck"]
    by_curve: dict[str, list[float]] = {}
    for row in neck_rows:
        by_curve.setdefault(series_key(row), []).append(row["level"])
    assert {key: sorted(levels) for key, levels in by_curve.items()} == {
        "neck/d1/adaln/mbt2018-mean-vbr": [0, 2, 4, 7],
        "neck/d1/shared/mbt2018-mean-vbr": [0, 2, 4, 7],
        "neck/d1/per-level/mbt2018-mean-vbr": [0, 2, 4, 7],
    }
    reconstruction = [row for row in report["rows"] if row["path"] == "reconstruction"]
    assert sorted({row["level"] for row in reconstruction}) == [0, 2, 4, 7]
    # Each level is coded once, whichever necks read it: the rates of one level agree across curves.
    for level in (0, 2, 4, 7):
        rates = {row["payload_bpp"] for row in report["rows"] if row["level"] == level}
        assert len(rates) == 1, (level, rates)
    pairs = {(entry["test"], entry["anchor"]) for entry in report["bd_rates"]}
    for test in ("neck/d1/adaln/mbt2018-mean-vbr", "neck/d1/shared/mbt2018-mean-vbr"):
        assert (test, "neck/d1/per-level/mbt2018-mean-vbr") in pairs
        assert (test, "reconstruction/mbt2018-mean-vbr") in pairs
    assert ("neck/d1/per-level/mbt2018-mean-vbr", "neck/d1/per-level/mbt2018-mean-vbr") not in pairs
    for entry in report["bd_rates"]:  # a number, or the reason there is none: never both missing
        assert entry["bd_rate"] is not None or entry["reason"], entry
    with (out / "eval.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert {row["neck_variant"] for row in table if row["path"] == "neck"} == {"adaln", "shared", "per-level"}
    assert {row["level"] for row in table if row["path"] == "neck"} == {"0", "2", "4", "7"}
    with (out / "bd_rate.csv").open() as handle:
        assert any(row["anchor"] == "neck/d1/per-level/mbt2018-mean-vbr" for row in csv.DictReader(handle))


def test_eval_at_chosen_levels_and_a_fractional_one(runs) -> None:  # noqa: ANN001
    runner, host, folder, made = runs
    out = folder / "eval-chosen"
    result = invoke(runner, host, "eval", "--neck", str(made["adaln"]), "--neck", str(made["l4"]), "--level", "2.5",
                    "--level", "4", "--limit", "1", "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "eval.json").read_text())["rows"]
    assert sorted((row["neck_variant"], row["level"]) for row in rows if row["path"] == "neck") == [
        ("adaln", 2.5), ("adaln", 4), ("per-level", 4)]  # a per-level neck keeps its own level
    refused = invoke(runner, host, "eval", "--neck", str(made["adaln"]), "--level", "9", "--limit", "1",
                     "--out", str(folder / "eval-refused"))
    assert refused.exit_code != 0
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--level 9 for " in lines[0] and "level 9 is outside them" in lines[0], refused.stderr
    assert not (folder / "eval-refused" / "eval.json").exists()


def test_codec_levels_sweep_the_reconstruction_path(runs) -> None:  # noqa: ANN001
    runner, host, folder, _ = runs
    out = folder / "eval-codec"
    result = invoke(runner, host, "eval", "--codec", "mbt2018-mean-vbr", "--tiny", "--encoder", "clip-l",
                    "--limit", "1", "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "eval.json").read_text())["rows"]
    assert sorted(row["level"] for row in rows if row["path"] == "reconstruction") == list(range(8))
    assert {row["point"] for row in rows if row["level"] == 3} == {"mbt2018-mean-vbr L3"}
