"""Broken plugins never take the CLI down: name clashes, raising hooks, misspelled hooks (issue 12, B).

Every test runs the real CLI (typer's runner) on a host whose third-party plugins come from fake
entry points, as installed plugins would.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import invoke
from neckkit import __version__
from neckkit.bitstream.container import read_nk
from neckkit.bitstream.images import save_image
from neckkit.host import manager as plugin_manager
from neckkit.host.manager import BUILTIN_PLUGINS, PluginHost

CODECS = "neckkit.plugins.codecs"


def _entry_points(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Pretend each sample-plugin module is installed with an entry point of the same name."""
    points = [metadata.EntryPoint(name=module.replace("_", "-"), value=module, group="neckkit") for module in modules]
    monkeypatch.setattr(plugin_manager, "installed_entry_points", lambda: points)


def _host(monkeypatch: pytest.MonkeyPatch, *modules: str, builtins: bool = True, env: dict | None = None) -> PluginHost:
    """A host with the built-ins (unless ``builtins=False``) and ``modules`` as installed plugins."""
    _entry_points(monkeypatch, *modules)
    host = PluginHost(env=env or {})
    if builtins:
        host.load_builtins()
    host.load_entry_points()
    return host


def _listing(runner: CliRunner, host: PluginHost) -> dict:
    result = invoke(runner, host, "list-plugins", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # list-plugins lists the failures instead of warning about them
    return json.loads(result.stdout)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning:")]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return save_image(torch.rand(1, 3, 32, 32), tmp_path / "photo.png")


# -- 1. name clashes --------------------------------------------------------------------------


def test_clash_with_a_builtin_name_or_alias_drops_only_that_component(runner: CliRunner, monkeypatch) -> None:
    host = _host(monkeypatch, "builtin_clash")
    listing = _listing(runner, host)
    codecs = {row["name"]: row["plugin"] for row in listing["components"]["codecs"]}
    assert codecs["tic"] == CODECS  # the built-in wins
    assert codecs["clash-survivor"] == "builtin-clash"  # the plugin's other component still registers
    assert "tac" not in codecs
    assert [record["name"] for record in listing["plugins"]] == [*BUILTIN_PLUGINS, "builtin-clash"]
    assert listing["failed"] == [
        {
            "plugin": "builtin-clash",
            "error": "PluginError: codec name 'tic' of plugin 'builtin-clash' is already registered by built-in "
            f"plugin {CODECS!r} (codec 'tic'); codec 'tic' of plugin 'builtin-clash' was dropped "
            "(rename it, or disable one plugin with NECKKIT_DISABLE_PLUGINS)",
        },
        {
            "plugin": "builtin-clash",
            "error": "PluginError: codec name 'tic' of plugin 'builtin-clash' is already registered by built-in "
            f"plugin {CODECS!r} (codec 'tic'); codec 'tac' of plugin 'builtin-clash' was dropped "
            "(rename it, or disable one plugin with NECKKIT_DISABLE_PLUGINS)",
        },
    ]


def test_other_commands_keep_working_and_use_the_builtin(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "builtin_clash")
    target = photo.with_suffix(".nk")
    result = invoke(runner, host, "compress", str(photo), "--codec", "tic", "--tiny", "-o", str(target), "--json")
    assert result.exit_code == 0, result.output
    assert read_nk(target).codec == "tic"
    [warning] = _warnings(result.stderr)  # one line for the plugin, though two of its codecs were dropped
    assert warning == (
        "Warning: plugin 'builtin-clash' failed: PluginError: codec name 'tic' of plugin 'builtin-clash' is already "
        f"registered by built-in plugin {CODECS!r} (codec 'tic'); codec 'tic' of plugin 'builtin-clash' was dropped "
        "(rename it, or disable one plugin with NECKKIT_DISABLE_PLUGINS) (+1 more) (see neckkit list-plugins)"
    )


def test_a_plugin_failing_many_ways_is_one_short_warning_line(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "many_clashes")
    result = invoke(runner, host, "compress", str(photo), "--codec", "tic", "--tiny", "-o", str(photo) + ".nk")
    assert result.exit_code == 0, result.output
    [warning] = _warnings(result.stderr)
    assert warning.startswith("Warning: plugin 'many-clashes' failed: PluginError: codec name 'elic' of plugin")
    assert warning.endswith(" (+4 more) (see neckkit list-plugins)")
    assert len(warning) <= len("Warning: plugin 'many-clashes' failed: ") + plugin_manager.WARNING_ERROR_CHARS + 40
    assert len(_listing(runner, host)["failed"]) == 5  # list-plugins still shows every error whole


def test_between_third_party_plugins_the_one_loaded_first_keeps_the_name(runner: CliRunner, monkeypatch) -> None:
    for first, second in (("first_elic", "second_elic"), ("second_elic", "first_elic")):
        host = _host(monkeypatch, first, second, builtins=False)
        listing = _listing(runner, host)
        [elic] = listing["components"]["codecs"]
        winner, loser = first.replace("_", "-"), second.replace("_", "-")
        assert (elic["name"], elic["plugin"]) == ("elic", winner)
        [failure] = listing["failed"]
        assert failure["plugin"] == loser
        assert f"codec name 'elic' of plugin {loser!r} is already registered by plugin {winner!r}" in failure["error"]


def test_a_dropped_component_is_named_when_looked_up(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "builtin_clash")
    result = invoke(runner, host, "compress", str(photo), "--codec", "tac", "--tiny", "-o", str(photo) + ".nk")
    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(
        "Error: unknown codec 'tac'; did you mean 'tic'? Plugin 'builtin-clash' failed (PluginError:"
    )
    assert "codec 'tac' of plugin 'builtin-clash' was dropped" in error
    assert "codec 'tic' of plugin 'builtin-clash' was dropped" not in error  # only the failure that dropped 'tac'


def test_disabling_the_clashing_plugin_clears_the_failure(runner: CliRunner, monkeypatch) -> None:
    host = _host(monkeypatch, "builtin_clash", env={"NECKKIT_DISABLE_PLUGINS": "builtin-clash"})
    assert _listing(runner, host)["failed"] == []


# -- 2. and 3. hooks that raise ---------------------------------------------------------------

IMPORT_ERROR = "PluginError: register_encoders raised ModuleNotFoundError: No module named 'neckkit_missing_dependency'"


def test_import_error_inside_a_hook_is_listed_under_failed(runner: CliRunner, monkeypatch) -> None:
    listing = _listing(runner, _host(monkeypatch, "hook_import_error"))
    assert listing["failed"] == [{"plugin": "hook-import-error", "error": IMPORT_ERROR}]
    assert "heavy-codec" in [row["name"] for row in listing["components"]["codecs"]]  # its codec hook worked


def test_every_command_warns_once_and_unknown_encoder_names_the_failed_plugin(
    runner: CliRunner, monkeypatch, tmp_path: Path
) -> None:
    host = _host(monkeypatch, "hook_import_error")
    args = ["train", "--codec", "heavy-codec", "--encoder", "heavy-vit", "--tiny", "-o", str(tmp_path / "run")]
    result = invoke(runner, host, *args)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Warning: plugin 'hook-import-error' failed: {IMPORT_ERROR} (see neckkit list-plugins)"
    [error] = [line for line in lines if line.startswith("Error:")]
    assert error.startswith(
        f"Error: unknown encoder 'heavy-vit'; plugin 'hook-import-error' failed ({IMPORT_ERROR}) "
        "and may have provided it. Available: "
    )
    assert "clip-l" in error
    assert len(_warnings(result.stderr)) == 1
    again = invoke(runner, host, *args)  # the same host again: still one warning, the hook's failure once
    assert len(_warnings(again.stderr)) == 1 and len(host.failed) == 1


def test_under_torchrun_only_the_first_process_warns(runner: CliRunner, monkeypatch) -> None:
    host = _host(monkeypatch, "hook_import_error")
    monkeypatch.setenv("RANK", "1")
    assert _warnings(invoke(runner, host, "compress", "--help").stderr) == []
    monkeypatch.setenv("RANK", "0")
    assert len(_warnings(invoke(runner, host, "compress", "--help").stderr)) == 1


def test_unknown_name_of_another_kind_does_not_blame_the_plugin(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "hook_import_error")
    result = invoke(runner, host, "compress", str(photo), "--codec", "nope", "--tiny", "-o", str(photo) + ".nk")
    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: unknown codec 'nope'") and "hook-import-error" not in error  # its codec hook worked
    assert len(_warnings(result.stderr)) == 1


def test_plugin_that_failed_to_import_may_have_provided_any_kind(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "broken_import")
    result = invoke(runner, host, "compress", str(photo), "--codec", "nope", "--tiny", "-o", str(photo) + ".nk")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "Warning: plugin 'broken-import' failed: RuntimeError: this plugin is broken on purpose (see neckkit list-plugins)"
    )
    assert (
        "Error: unknown codec 'nope'; plugin 'broken-import' failed (RuntimeError: this plugin is broken on purpose) "
        "and may have provided it. Available: "
    ) in result.stderr


def test_raising_hook_is_warned_about_by_other_commands(runner: CliRunner, monkeypatch, photo: Path) -> None:
    host = _host(monkeypatch, "raising_hook")
    result = invoke(runner, host, "compress", str(photo), "--codec", "tic", "--tiny", "-o", str(photo) + ".nk")
    assert result.exit_code == 0, result.output
    assert _warnings(result.stderr) == [
        "Warning: plugin 'raising-hook' failed: PluginError: register_codecs raised ValueError: codec hook exploded "
        "(see neckkit list-plugins)"
    ]


def test_version_and_help_work_and_run_no_hooks(runner: CliRunner, monkeypatch) -> None:
    host = _host(monkeypatch, "raising_hook", "builtin_clash")
    version = invoke(runner, host, "--version")
    assert (version.exit_code, version.stdout, version.stderr) == (0, f"neckkit {__version__}\n", "")
    helped = invoke(runner, host, "--help")
    assert helped.exit_code == 0 and "list-plugins" in helped.stdout and helped.stderr == ""
    assert host.failed == []  # neither ran a component hook
    sub_help = invoke(runner, host, "compress", "--help")
    assert sub_help.exit_code == 0 and "--codec" in sub_help.stdout


# -- 4. misspelled hooks ----------------------------------------------------------------------


def test_misspelled_hook_suggests_the_real_one(runner: CliRunner, monkeypatch) -> None:
    host = _host(monkeypatch, "misspelled_hook")
    [failure] = _listing(runner, host)["failed"]
    assert failure == {
        "plugin": "misspelled-hook",
        "error": "PluginValidationError: unknown hook 'register_codec' in plugin 'misspelled-hook'; "
        "did you mean 'register_codecs'?",
    }
    result = invoke(runner, host, "compress", "--help")
    assert _warnings(result.stderr) == [
        f"Warning: plugin 'misspelled-hook' failed: {failure['error']} (see neckkit list-plugins)"
    ]


# -- 5. what stays as it was -------------------------------------------------------------------


def test_a_plugin_registering_one_name_twice_keeps_the_first(bare_host: PluginHost) -> None:
    from neckkit import hookimpl

    class Twice:
        @staticmethod
        @hookimpl
        def register_codecs(register):
            register("dup", dict, description="first")
            register("dup", list, description="second")

    assert bare_host.register(Twice, "twice", "1.0")
    assert bare_host.components("codec").get("dup").info.description == "first"
    [failure] = bare_host.failed
    assert "codec name 'dup' is registered twice by plugin 'twice'" in failure.error


def test_builtins_still_cannot_share_a_name(runner: CliRunner, bare_host: PluginHost) -> None:
    bare_host.load_builtins(("first_elic", "second_elic"))
    result = invoke(runner, bare_host, "list-plugins")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: codec name 'elic' is registered by both plugin 'first_elic' and plugin")
