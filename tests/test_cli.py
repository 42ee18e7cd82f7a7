"""The CLI through typer's runner: version, list-plugins (table and JSON), one-line errors."""

from __future__ import annotations

import json

import first_elic
import pytest
import second_elic
from typer.testing import CliRunner

from conftest import invoke
from neckkit import __version__
from neckkit.cli.app import one_line_error
from neckkit.errors import NeckkitError
from neckkit.host.manager import BUILTIN_PLUGINS, PluginHost


def test_version_prints_the_installed_version(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host, "--version")
    assert result.exit_code == 0
    assert result.stdout == f"neckkit {__version__}\n"
    assert __version__ != "0.0.0+unknown"


def test_no_arguments_shows_help_with_the_commands(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host)
    assert "list-plugins" in result.output and "Usage: neckkit" in result.output


def test_list_plugins_json_has_exactly_the_documented_shape(runner: CliRunner, toy_plugin: PluginHost) -> None:
    result = invoke(runner, toy_plugin, "list-plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert set(listing) == {"plugins", "components", "failed"}
    assert set(listing["components"]) == {"codecs", "encoders", "mllms"}
    builtins = [{"name": name, "version": __version__, "hooks": list(toy_plugin.hook_names(name))} for name in BUILTIN_PLUGINS]
    assert listing["plugins"] == [
        *builtins,
        {
            "name": "neckkit-toy",
            "version": "0.1.0",
            "hooks": ["register_codecs", "register_commands", "register_encoders", "register_mllms"],
        },
    ]
    [toy_codec] = [row for row in listing["components"]["codecs"] if row["plugin"] == "neckkit-toy"]
    assert [row for row in listing["components"]["codecs"] if row["plugin"] == "neckkit-toy"] == [
        {
            "name": "toy-codec",
            "plugin": "neckkit-toy",
            "description": "Toy codec: strided convolutions and a factorized entropy model",
            "aliases": ["toy"],
            "tiny": True,
            "tiny_weights": toy_codec["tiny_weights"],
            "qualities": [],
            "pretrained": [],
            "options": toy_codec["options"],
            "paths": ["reconstruction", "neck"],
            "scenarios": toy_codec["scenarios"],
        }
    ]
    assert {"channels", "tiny"} <= set(toy_codec["options"]) and "d1" in toy_codec["scenarios"]
    assert [row["name"] for row in listing["components"]["encoders"] if row["plugin"] == "neckkit-toy"] == ["toy-vit"]
    fields = {"name", "plugin", "description", "aliases", "tiny", "tiny_weights", "qualities", "pretrained", "options"}
    assert all(set(row) == fields | {"paths", "scenarios"} for row in listing["components"]["codecs"])
    assert all(set(row) == fields for kind in ("encoders", "mllms") for row in listing["components"][kind])
    assert [row["name"] for row in listing["components"]["mllms"] if row["plugin"] == "neckkit-toy"] == ["toy-mllm"]
    assert listing["failed"] == []


def test_list_plugins_table_shows_components_and_failures(runner: CliRunner, toy_plugin: PluginHost) -> None:
    import raising_hook

    toy_plugin.register(raising_hook, "raising-hook", "2.0")
    result = invoke(runner, toy_plugin, "list-plugins")
    assert result.exit_code == 0, result.output
    for text in ("neckkit-toy", "toy-codec", "toy-vit", "toy-mllm", "survivor", "Codecs", "Encoders", "Mllms"):
        assert text in result.stdout
    assert "Failed plugin raising-hook: PluginError: register_codecs raised ValueError" in result.stdout


def test_broken_plugin_is_listed_under_failed_and_exit_is_zero(runner: CliRunner, host: PluginHost) -> None:
    host.load_builtins(("broken_import",))
    result = invoke(runner, host, "list-plugins", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["failed"] == [
        {"plugin": "broken_import", "error": "RuntimeError: this plugin is broken on purpose"}
    ]


def test_other_commands_warn_about_failed_plugins_on_stderr(runner: CliRunner, toy_plugin: PluginHost) -> None:
    toy_plugin.load_builtins(("broken_import",))
    result = invoke(runner, toy_plugin, "toy-hello", "you")
    assert result.exit_code == 0
    assert result.stdout == "hello you from neckkit-toy\n"
    assert result.stderr == (
        "Warning: plugin 'broken_import' failed: RuntimeError: this plugin is broken on purpose "
        "(see neckkit list-plugins)\n"
    )


@pytest.fixture
def two_elics(bare_host: PluginHost) -> PluginHost:
    """Two built-in plugins that both register a codec named ``elic``: a bug in neckkit itself, still an error.
    (Third-party clashes drop the later component instead: tests/test_broken_plugins.py.)"""
    bare_host.load_builtins((first_elic.__name__, second_elic.__name__))
    return bare_host


def test_duplicate_builtin_name_is_one_error_line_and_exit_1(runner: CliRunner, two_elics: PluginHost) -> None:
    result = invoke(runner, two_elics, "list-plugins", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: codec name 'elic' is registered by both plugin 'first_elic' and plugin "
        "'second_elic'; disable one with NECKKIT_DISABLE_PLUGINS\n"
    )


def test_debug_lets_the_traceback_through(runner: CliRunner, two_elics: PluginHost) -> None:
    result = invoke(runner, two_elics, "--debug", "list-plugins")
    assert result.exit_code == 1
    assert isinstance(result.exception, NeckkitError)
    assert "registered by both" in str(result.exception)


def test_plugin_cannot_replace_a_builtin_command(runner: CliRunner, host: PluginHost) -> None:
    import command_clash

    host.register(command_clash, "command-clash", "1.0")
    result = invoke(runner, host, "list-plugins", "--json")
    assert result.exit_code == 0
    assert "hijacked" not in result.stdout
    assert json.loads(result.stdout)["failed"] == [
        {"plugin": "command-clash", "error": "PluginError: command 'list-plugins' already exists"}
    ]


def test_unknown_command_is_a_usage_error(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host, "no-such-command")
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (NeckkitError("weights not found:\n  /tmp/x.pth"), "Error: weights not found: /tmp/x.pth"),
        (KeyError("y_hat"), "Error: KeyError: 'y_hat' (run with --debug for the traceback)"),
        (RuntimeError(), "Error: RuntimeError (run with --debug for the traceback)"),
    ],
)
def test_errors_become_one_line(error: Exception, line: str) -> None:
    assert one_line_error(error) == line
