"""``neckkit eval --target-bpp``: an image codec's qualities chosen by bisection to land on given bit rates."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import cli_workspace, invoke
from neckkit.errors import NeckkitError
from neckkit.evaluation.target_rate import TOLERANCE, parse_targets, qualities_for_targets
from neckkit.interfaces.image_codec import ImageCodec


class Linear(ImageCodec):
    """Bytes grow linearly with quality: ``quality * 10`` bytes per 8 x 8 image, i.e. 1.25 * quality bpp."""

    name, quality_range, default_quality = "linear", (1, 100), 50
    encoded: list[int] = []

    @property
    def library(self) -> str:
        return "test"

    def encode(self, x: torch.Tensor) -> bytes:
        self.encoded.append(self.quality)
        return b"x" * (self.quality * 10)

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
        return torch.zeros(1, 3, 8, 8)


class QP(Linear):
    """A quantisation parameter: more bits as it falls (``(64 - qp) * 10`` bytes)."""

    name, quality_range, default_quality, higher_quality_more_bits = "qp", (0, 63), 37, False

    def encode(self, x: torch.Tensor) -> bytes:
        return b"x" * ((64 - self.quality) * 10)


IMAGES = [torch.zeros(1, 3, 8, 8)] * 2


def test_bisection_finds_the_nearest_quality_with_few_encodes() -> None:
    codec = Linear()
    codec.encoded.clear()
    [hit, low, high] = qualities_for_targets(codec, IMAGES, [25.0, 0.5, 500.0])
    assert (hit.quality, hit.bpp, hit.note) == (20, 25.0, None)
    assert len(set(codec.encoded)) <= 10 and codec.quality == 50  # log2(100) qualities tried; the knob restored
    assert (low.quality, low.note) == (1, "linear's lowest quality (1) already gives 1.25 bpp, above 0.5")
    assert (high.quality, high.note) == (100, "linear's highest quality (100) gives only 125 bpp, below 500")
    assert hit.as_dict() == {"target_bpp": 25.0, "quality": 20, "payload_bpp": 25.0, "within_tolerance": True,
                             "note": None}


def test_a_quantisation_parameter_runs_the_other_way() -> None:
    [chosen] = qualities_for_targets(QP(), IMAGES, [40.0])
    assert (chosen.quality, chosen.bpp) == (32, 40.0)


def test_targets_parse_from_repeats_and_commas() -> None:
    assert parse_targets(["0.4,0.1", "0.2", "0.1"]) == [0.1, 0.2, 0.4]
    for bad in ("x", "0", "-1", "nan"):
        with pytest.raises(NeckkitError, match="--target-bpp takes positive bit rates"):
            parse_targets([bad])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    with cli_workspace(tmp_path_factory, "targets") as (runner, host, folder):
        yield runner, host, folder


def test_eval_lands_heif_on_the_targets(workspace) -> None:  # noqa: ANN001
    runner, host, folder = workspace
    out = folder / "heif"
    result = invoke(runner, host, "eval", "--codec", "heif", "--target-bpp", "0.1,0.2", "--target-bpp", "0.4",
                    "--encoder", "clip-l", "--tiny", "--limit", "2", "--no-progress", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    targets = report["rate_targets"]
    assert [t["target_bpp"] for t in targets] == [0.1, 0.2, 0.4]
    rows = {row["quality"]: row for row in report["rows"] if row["path"] == "reconstruction"}
    for target in targets:
        assert target["within_tolerance"], target
        assert abs(target["payload_bpp"] / target["target_bpp"] - 1) <= TOLERANCE
        assert rows[target["quality"]]["payload_bpp"] == pytest.approx(target["payload_bpp"])  # what eval measured


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--codec", "mbt2018-mean", "--tiny"], "--target-bpp picks qualities of an image codec"),
        (["--codec", "avif", "--quality", "30"], "--target-bpp chooses the qualities of --codec NAME: pass --codec, and no --quality"),
        (["--codec", "avif", "--target-bpp", "x"], "--target-bpp takes positive bit rates"),
    ],
)
def test_target_bpp_refusals_are_one_line(workspace, args: list[str], said: str) -> None:  # noqa: ANN001
    runner, host, folder = workspace
    result = invoke(runner, host, "eval", *args, "--target-bpp", "0.1", "--encoder", "clip-l", "--out",
                    str(folder / "refused"))
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0], result.stderr
