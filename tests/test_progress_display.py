"""Progress on stderr: one decision (off under --json and off a terminal), stages labelled when forced on."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import invoke
from neckkit.cli.report import PROGRESS_ENV, building, progress, progress_enabled, stage
from neckkit.host.manager import PluginHost

SPINNER = re.compile("[\u2800-\u28ff]")  # rich's braille spinner frames
BENCH = ["bench", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--size", "64", "--repeats", "2",
         "--device", "cpu"]
TRAIN = ["train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--max-steps", "2"]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The decision as a user's shell leaves it: NECKKIT_PROGRESS unset; a private feature cache."""
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_progress_is_on_when_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress_enabled() is True


def test_progress_is_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled() is False


@pytest.mark.parametrize("forced", ["", "1", "0"])
def test_progress_is_off_under_json_whatever_the_terminal_or_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                                          forced: str) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv(PROGRESS_ENV, forced)
    assert progress_enabled(as_json=True) is False


@pytest.mark.parametrize(("forced", "stderr", "expected"), [
    ("1", io.StringIO, True), ("true", io.StringIO, True), ("0", Terminal, False), ("off", Terminal, False),
    ("maybe", Terminal, True), ("maybe", io.StringIO, False),
])
def test_the_variable_forces_progress_on_or_off_and_anything_else_leaves_it_to_the_terminal(
        monkeypatch: pytest.MonkeyPatch, forced: str, stderr: type[io.StringIO], expected: bool) -> None:
    monkeypatch.setattr(sys, "stderr", stderr())
    monkeypatch.setenv(PROGRESS_ENV, forced)
    assert progress_enabled() is expected


def test_a_stage_draws_its_description_and_relabels_on_a_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with stage("building codec 'tic' (tiny)") as show:
        show("timing round 2/5: decode")
    drawn = sys.stderr.getvalue()
    assert "building codec 'tic' (tiny)" in drawn
    assert "timing round 2/5: decode" in drawn
    assert SPINNER.search(drawn)


def test_a_stage_and_a_bar_draw_nothing_when_disabled_or_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    with stage("loading torch", enabled=False) as show:
        show("still nothing")
    assert list(progress([1, 2], "compressing", enabled=False)) == [1, 2]
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with stage("loading torch") as show:
        show("still nothing")
    assert list(progress([1, 2], "compressing")) == [1, 2]
    assert sys.stderr.getvalue() == ""


def test_building_names_the_component_and_why_its_weights_are_random() -> None:
    assert building("codec", "tic", {"tiny": True}) == "building codec 'tic' (tiny)"
    assert building("encoder", "clip-l", {"random_init": True}) == "building encoder 'clip-l' (random-init)"
    assert building("codec", "elic", {"weights": "elic.pth"}) == "building codec 'elic'"


def test_bench_through_a_pipe_prints_no_progress(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host, *BENCH)
    assert result.exit_code == 0, result.output
    assert not SPINNER.search(result.output)
    assert "loading torch" not in result.stderr and "timing round" not in result.stderr
    assert "quantity" in result.stdout  # the table itself


def test_bench_forced_on_labels_every_long_stage_on_stderr(runner: CliRunner, host: PluginHost,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    result = invoke(runner, host, *BENCH)
    assert result.exit_code == 0, result.output
    for label in ("loading torch", "building codec 'tic' (tiny)", "building encoder 'clip-l' (tiny)",
                  "building the neck", "counting MACs: neck", "warming up: decode", "timing round 2/2"):
        assert label in result.stderr, label
    assert not SPINNER.search(result.stdout)
    # The placeholder notice comes once, after the components are built and before the figures.
    assert result.stderr.count("have random weights") == 1
    assert result.stderr.index("have random weights") < result.stderr.index("benchmarking")


def test_bench_json_stays_silent_even_when_forced(runner: CliRunner, host: PluginHost,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    result = invoke(runner, host, *BENCH, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["repeats"] == 2
    assert not SPINNER.search(result.stderr) and "building codec" not in result.stderr


def test_train_through_a_pipe_draws_no_bars(runner: CliRunner, host: PluginHost, tmp_path: Path) -> None:
    result = invoke(runner, host, *TRAIN, "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "%|" not in result.output and "step/s" not in result.output  # tqdm's bars
    assert not SPINNER.search(result.output)
    assert "2 steps in" in result.stdout


def test_train_forced_on_labels_its_set_up_then_draws_its_bars(runner: CliRunner, host: PluginHost,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    result = invoke(runner, host, *TRAIN, "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    for label in ("loading torch and the trainer", "building codec 'tic' (tiny)", "building encoder 'clip-l' (tiny)",
                  "building the neck and its optimiser", "caching features", "2/2"):
        assert label in result.stderr, label
    assert "2 steps in" in result.stdout and not SPINNER.search(result.stdout)
