"""Tiny and random-init components say once that their outputs show the plumbing, not quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from neckkit.cli.report import announce_placeholders, forget_placeholders
from neckkit.host import placeholders
from neckkit.host.manager import PluginHost
from neckkit.host.options import build_component
from neckkit.samples import sample_images
from conftest import invoke

NOTE = "shows the plumbing, not quality"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"tiny": True}, "tiny"),
        ({"random_init": True, "seed": 3}, "random-init"),
        ({"tiny": True, "weights": "trained.safetensors"}, None),  # a tiny architecture with trained weights
        ({"quality": 3}, None),
        ({}, None),
    ],
)
def test_placeholder_reason_is_tiny_or_random_init_without_weights(options: dict, reason: str | None) -> None:
    assert placeholders.placeholder_reason(options) == reason


def test_every_core_build_records_its_placeholder_label_once(host: PluginHost) -> None:
    forget_placeholders()
    heard: list[str] = []
    stop = placeholders.on_placeholder(heard.append)
    try:
        build_component(host, "codec", "tic", {"tiny": True})
        build_component(host, "codec", "tic", {"tiny": True})
        build_component(host, "encoder", "clip-l", {"tiny": True})
    finally:
        stop()
    assert placeholders.built_placeholders() == ["codec 'tic' (tiny)", "encoder 'clip-l' (tiny)"]
    assert heard == ["codec 'tic' (tiny)", "encoder 'clip-l' (tiny)"]
    assert placeholders.placeholder_flag(heard) == {"plumbing_only": True, "placeholders": heard}
    assert placeholders.placeholder_flag([]) == {"plumbing_only": False, "placeholders": []}
    forget_placeholders()
    assert placeholders.built_placeholders() == []


def test_one_notice_names_every_placeholder_built_since_the_last(host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    forget_placeholders()
    build_component(host, "codec", "tic", {"tiny": True})
    build_component(host, "encoder", "clip-l", {"tiny": True})
    announce_placeholders()
    announce_placeholders()  # nothing new: silent
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Note: codec 'tic' (tiny), encoder 'clip-l' (tiny) have random weights")
    assert NOTE in lines[0]
    forget_placeholders()


def test_a_tiny_compress_prints_one_notice_and_a_real_one_none(runner, host: PluginHost, tmp_path: Path) -> None:
    photo = sample_images()[0]
    result = invoke(runner, host, "compress", "--codec", "tic", "--tiny", str(photo), "-o", str(tmp_path / "a.nk"))
    assert result.exit_code == 0, result.output
    assert result.output.count(NOTE) == 1
    assert "codec 'tic' (tiny) has random weights" in result.output

    # decompress rebuilds the codec from the header's options: still tiny, still said once
    result = invoke(runner, host, "decompress", str(tmp_path / "a.nk"), "-o", str(tmp_path / "a.png"))
    assert result.exit_code == 0, result.output
    assert result.output.count(NOTE) == 1


def test_a_failing_command_prints_its_error_not_the_notice(runner, host: PluginHost, tmp_path: Path) -> None:
    result = invoke(runner, host, "compress", "--codec", "tic", "--tiny", str(tmp_path / "missing.jpg"))
    assert result.exit_code != 0
    assert NOTE not in result.output
