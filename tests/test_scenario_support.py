"""Which scenarios a codec trains: declared with ``register(..., scenarios=...)``, or, for plugins written
before that field, inferred from the built codec (d3 needs ``Codec.synthesis_modules()``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import invoke
from neckkit import hookimpl
from neckkit.host.manager import PluginHost
from neckkit.interfaces import Codec
from neckkit.neck.checkpoint import read_meta, resolve_checkpoint
from neckkit.plugin_api import host_for_tests, lazy_factory
from neckkit_toy.codec import ToyCodec


class PlainCodec(ToyCodec):
    """The toy codec as if it had never named its synthesis transform."""

    synthesis_modules = Codec.synthesis_modules


def build_plain(tiny: bool = False) -> PlainCodec:
    return PlainCodec(tiny=tiny)


class LegacyPlugin:
    """Registrations as written before ``scenarios=`` existed."""

    @staticmethod
    @hookimpl
    def register_codecs(register) -> None:
        register("legacy-toy", lazy_factory("neckkit_toy.codec:build_codec"), description="toy codec", tiny=True)
        register("plain-toy", build_plain, description="toy codec without synthesis_modules", tiny=True)


@pytest.fixture
def legacy_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    import neckkit_toy.plugin

    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    return host_for_tests(neckkit_toy.plugin, LegacyPlugin)


def _train_d3(runner: CliRunner, host: PluginHost, codec: str, run: Path):
    return invoke(runner, host, "train", "--codec", codec, "--encoder", "toy-vit", "--tiny", "--scenario", "d3",
                  "--max-steps", "2", "--no-progress", "--out", str(run))


def test_a_codec_registered_without_scenarios_trains_d3_when_it_implements_synthesis_modules(
    runner: CliRunner, legacy_host: PluginHost, tmp_path: Path
) -> None:
    assert legacy_host.components("codec").get("legacy-toy").info.scenarios is None
    run = tmp_path / "run"
    result = _train_d3(runner, legacy_host, "legacy-toy", run)
    assert result.exit_code == 0, result.output
    meta = read_meta(resolve_checkpoint(run))
    assert (meta.codec.name, meta.scenario, meta.step) == ("legacy-toy", "d3", 2)


def test_a_codec_without_synthesis_modules_is_refused_d3_in_one_line(
    runner: CliRunner, legacy_host: PluginHost, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = _train_d3(runner, legacy_host, "plain-toy", run)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: codec 'plain-toy' (plugin 'LegacyPlugin') does not implement Codec.synthesis_modules(), which "
        "scenario d3 needs (it freezes the synthesis transform); train it with d1 or d2"
    ]
    assert not run.exists()


def test_list_plugins_marks_d3_of_an_undeclared_codec_as_decided_when_built(
    runner: CliRunner, legacy_host: PluginHost
) -> None:
    result = invoke(runner, legacy_host, "list-plugins", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)["components"]["codecs"]}
    assert rows["legacy-toy"]["scenarios"] == ["d1", "d2", "d3?"]
    assert rows["toy-codec"]["scenarios"] == ["d1", "d2", "d3"]  # declared
