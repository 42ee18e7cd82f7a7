"""Loading plugins: built-ins, entry points, isolation of broken plugins, env-var selection."""

from __future__ import annotations

from importlib import metadata

import pytest

from neckkit.host import manager as plugin_manager
from neckkit.host.manager import PluginFailure, PluginHost


def _entry_points(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Pretend each sample-plugin module is installed with an entry point of the same name."""
    points = [metadata.EntryPoint(name=module.replace("_", "-"), value=module, group="neckkit") for module in modules]
    monkeypatch.setattr(plugin_manager, "installed_entry_points", lambda: points)


def _loaded(env: dict[str, str] | None = None) -> PluginHost:
    host = PluginHost(env=env or {})
    host.load_entry_points()
    return host


def test_entry_point_plugin_is_loaded_with_its_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "first_elic")
    host = _loaded()
    [record] = host.plugins()
    assert (record.name, record.version, record.hooks, record.builtin) == (
        "first-elic",
        "unknown",
        ("register_codecs",),
        False,
    )
    assert host.components("codec").get("elic").plugin == "first-elic"


def test_plugin_raising_on_import_is_recorded_and_others_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "broken_import", "first_elic")
    host = _loaded()
    assert host.failed == [PluginFailure("broken-import", "RuntimeError: this plugin is broken on purpose")]
    assert [record.name for record in host.plugins()] == ["first-elic"]
    assert "elic" in host.components("codec")


def test_hook_that_raises_contributes_nothing_of_that_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "raising_hook", "first_elic")
    host = _loaded()
    codecs = host.components("codec")
    assert [component.name for component in codecs] == ["elic"]  # "half-done" was rolled back
    assert host.failed == [
        PluginFailure("raising-hook", "PluginError: register_codecs raised ValueError: codec hook exploded")
    ]
    assert host.components("encoder").get("survivor").plugin == "raising-hook"
    host.components("codec")
    assert len(host.failed) == 1  # calling the hooks again does not repeat the failure


def test_misspelled_hook_fails_check_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "misspelled_hook", "first_elic")
    host = _loaded()
    [failure] = host.failed
    assert failure.plugin == "misspelled-hook"
    assert failure.error.startswith("PluginValidationError:")
    assert "register_codec" in failure.error and "unknown hook" in failure.error
    assert failure.error.endswith("in plugin 'misspelled-hook'; did you mean 'register_codecs'?")
    assert not host.pm.has_plugin("misspelled-hook")
    assert [record.name for record in host.plugins()] == ["first-elic"]


@pytest.mark.parametrize(
    ("env", "loaded"),
    [
        ({}, ["first-elic", "raising-hook"]),
        ({"NECKKIT_LOAD_PLUGINS": "first-elic"}, ["first-elic"]),
        ({"NECKKIT_LOAD_PLUGINS": " raising-hook , first-elic "}, ["first-elic", "raising-hook"]),
        ({"NECKKIT_LOAD_PLUGINS": ""}, []),
        ({"NECKKIT_DISABLE_PLUGINS": "raising-hook"}, ["first-elic"]),
        ({"NECKKIT_LOAD_PLUGINS": "first-elic,raising-hook", "NECKKIT_DISABLE_PLUGINS": "first-elic"}, ["raising-hook"]),
    ],
)
def test_environment_selects_plugins(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], loaded: list[str]) -> None:
    _entry_points(monkeypatch, "first_elic", "raising_hook")
    host = _loaded(env)
    assert [record.name for record in host.plugins()] == loaded
    assert host.failed == []


def test_builtin_plugins_load_like_third_party_ones_and_can_be_disabled() -> None:
    host = PluginHost(env={})
    host.load_builtins(("first_elic", "broken_import"))
    [record] = host.plugins()
    assert (record.name, record.builtin, record.hooks) == ("first_elic", True, ("register_codecs",))
    assert host.failed == [PluginFailure("broken_import", "RuntimeError: this plugin is broken on purpose")]
    assert host.components("codec").get("elic2022").plugin == "first_elic"

    disabled = PluginHost(env={"NECKKIT_DISABLE_PLUGINS": "first_elic"})
    disabled.load_builtins(("first_elic",))
    assert disabled.plugins() == []


def test_builtins_are_listed_before_third_party_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "raising_hook")
    host = PluginHost(env={})
    host.load_builtins(("first_elic",))
    host.load_entry_points()
    assert [(record.name, record.builtin) for record in host.plugins()] == [
        ("first_elic", True),
        ("raising-hook", False),
    ]


def test_trace_prints_loads_and_hook_calls(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _entry_points(monkeypatch, "first_elic")
    host = _loaded({"NECKKIT_TRACE_PLUGINS": "1"})
    host.components("codec")
    err = capsys.readouterr().err.splitlines()
    assert "neckkit-trace: loaded plugin 'first-elic' unknown hooks=['register_codecs']" in err
    assert "neckkit-trace: calling first-elic.register_codecs" in err
    assert "neckkit-trace: first-elic registered codec 'elic'" in err


def test_hooks_run_once_until_a_plugin_is_added(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _entry_points(monkeypatch, "first_elic")
    host = _loaded({"NECKKIT_TRACE_PLUGINS": "1"})
    assert host.components("codec") is host.components("codec")
    import raising_hook

    host.register(raising_hook, "raising-hook", "1.0")
    assert "half-done" not in host.components("codec") and "elic" in host.components("codec")
    calls = [line for line in capsys.readouterr().err.splitlines() if "calling first-elic.register_codecs" in line]
    assert len(calls) == 2  # once before, once after the new plugin


def test_trace_is_silent_by_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _entry_points(monkeypatch, "first_elic")
    _loaded({"NECKKIT_TRACE_PLUGINS": "0"}).components("codec")
    assert capsys.readouterr().err == ""


def test_shipped_builtin_modules_import_and_register() -> None:
    host = PluginHost(env={})
    host.load_builtins()
    assert host.failed == []
    assert {record.name for record in host.plugins()} == set(plugin_manager.BUILTIN_PLUGINS)
