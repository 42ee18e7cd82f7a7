"""``neckkit eval`` with an image codec (AVIF) as the anchor curve: real file bytes, decoded by the library."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import cli_workspace, invoke

QUALITIES = ("5", "20", "40", "70")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    with cli_workspace(tmp_path_factory, "anchors") as (runner, host, folder):
        yield runner, host, folder


def test_an_avif_sweep_is_a_reconstruction_curve_of_real_bytes(workspace) -> None:  # noqa: ANN001
    runner, host, folder = workspace
    args = [arg for q in QUALITIES for arg in ("--quality", q)]
    out = folder / "avif"
    result = invoke(runner, host, "eval", "--codec", "avif", *args, "--encoder", "clip-l", "--tiny", "--limit", "2",
                    "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    rows = [row for row in json.loads((out / "eval.json").read_text())["rows"] if row["path"] == "reconstruction"]
    assert [row["quality"] for row in rows] == [5, 20, 40, 70]  # sorted by rate: quality and bytes rise together
    rates = [row["payload_bpp"] for row in rows]
    assert rates == sorted(rates) and len(set(rates)) == 4 and all(row["estimated_bpp"] is None for row in rows)
    assert all(row["bpp"] > row["payload_bpp"] for row in rows)  # the .nk container's few dozen bytes
    psnrs = [row["psnr"] for row in rows]
    assert psnrs == sorted(psnrs) and psnrs[-1] > 30
    assert {row["point"] for row in rows} == {f"avif q{q}" for q in QUALITIES}


def test_a_neck_curve_gets_bd_entries_against_the_avif_curve(workspace) -> None:  # noqa: ANN001
    runner, host, folder = workspace
    trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--no-progress",
                     "--max-steps", "2", "--set", "checkpoint_every=2", "--out", str(folder / "neck"))
    assert trained.exit_code == 0, trained.output
    args = [arg for q in QUALITIES for arg in ("--quality", q)]
    out = folder / "neck-vs-avif"
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--codec", "avif", *args,
                    "--anchor", "reconstruction/avif", "--limit", "2", "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    entries = [e for e in json.loads((out / "eval.json").read_text())["bd_rates"] if e["anchor"] == "reconstruction/avif"]
    assert {e["test"] for e in entries} == {"neck/d1/tic"} and {e["method"] for e in entries} == {"pchip", "cubic"}
    for entry in entries:  # one neck point cannot make a curve: the reason says so, never a silent gap
        assert entry["bd_rate"] is None and "curve 'neck/d1/tic' has 1 point(s)" in entry["reason"]
    with (out / "bd_rate.csv").open() as handle:
        assert any(row["anchor"] == "reconstruction/avif" for row in csv.DictReader(handle))


def test_an_image_codec_cannot_feed_a_neck_or_be_trained(workspace) -> None:  # noqa: ANN001
    runner, host, folder = workspace
    result = invoke(runner, host, "train", "--codec", "jpeg", "--encoder", "clip-l", "--tiny", "--out",
                    str(folder / "jpeg-neck"))
    assert result.exit_code != 0 and "jpeg has no latent" in result.output
    assert not (folder / "jpeg-neck").exists()
