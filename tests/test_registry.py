"""The register callback: names, info, aliases and duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neckkit import NeckkitError, PluginError, UnknownComponentError, hookimpl
from neckkit.host.manager import PluginHost
from neckkit.host.registry import NAME_PATTERN, ComponentRegistry, check_name, make_component


def _register(host: PluginHost, name: str, hook: str, *calls: tuple) -> None:
    """Register a plugin object named ``name`` whose ``hook`` performs ``register(*call)`` each."""

    def implementation(register):
        for args, info in calls:
            register(*args, **info)

    plugin = type(name, (), {hook: staticmethod(hookimpl(implementation))})
    assert host.register(plugin, name, "1.0")


@pytest.mark.parametrize("name", ["elic", "tic", "clip-l", "clip-l-336", "llava-1.5", "bmshj2018-hyperprior"])
def test_field_names_are_valid(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["ELIC", "clip_l", "-elic", "elic-", "a b", "", "llava..1", "é", 3])
def test_invalid_names_are_rejected_with_the_rule(name: object) -> None:
    with pytest.raises(PluginError, match="lower-case letters, digits and hyphens"):
        check_name(name)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._ABC", max_size=12))
def test_name_rule_matches_its_pattern(name: str) -> None:
    valid = NAME_PATTERN.match(name) is not None
    if valid:
        assert check_name(name) == name
        assert name == name.lower() and "_" not in name and not name.startswith(("-", "."))
    else:
        with pytest.raises(PluginError):
            check_name(name)


def test_component_is_found_by_name_and_alias(bare_host: PluginHost) -> None:
    _register(bare_host, "p1", "register_codecs", (("elic", dict), {"description": "ELIC", "aliases": ["elic2022"]}))
    codecs = bare_host.components("codec")
    assert codecs.get("elic") is codecs.get("elic2022")
    component = codecs.get("elic2022")
    assert (component.name, component.plugin, component.info.aliases) == ("elic", "p1", ("elic2022",))
    assert component.build() == {}
    assert "elic2022" in codecs and "tic" not in codecs and len(codecs) == 1


def test_unknown_name_suggests_the_closest_and_lists_available(bare_host: PluginHost) -> None:
    _register(bare_host, "p1", "register_encoders", (("clip-l", dict), {"description": "CLIP"}))
    with pytest.raises(UnknownComponentError) as caught:
        bare_host.components("encoder").get("clip-k")
    assert str(caught.value) == (
        "unknown encoder 'clip-k'; did you mean 'clip-l'? Available: clip-l (see `neckkit list-plugins`)"
    )


def test_duplicate_name_keeps_the_first_plugin_and_fails_the_second_naming_both(bare_host: PluginHost) -> None:
    _register(bare_host, "first-plugin", "register_codecs", (("elic", dict), {"description": "one"}))
    _register(bare_host, "second-plugin", "register_codecs", (("elic", dict), {"description": "two"}))
    assert bare_host.components("codec").get("elic").plugin == "first-plugin"
    [failure] = bare_host.failed
    assert failure.plugin == "second-plugin"
    assert "'elic'" in failure.error and "'first-plugin'" in failure.error and "'second-plugin'" in failure.error
    assert "\n" not in failure.error


def test_alias_clashing_with_another_plugins_name_is_a_duplicate(bare_host: PluginHost) -> None:
    _register(bare_host, "first-plugin", "register_codecs", (("tic", dict), {"description": "TIC"}))
    _register(bare_host, "second-plugin", "register_codecs", (("tic2", dict), {"description": "x", "aliases": ["tic"]}))
    codecs = bare_host.components("codec")
    assert [component.name for component in codecs] == ["tic"]
    [failure] = bare_host.failed
    assert "codec name 'tic' of plugin 'second-plugin' is already registered by plugin 'first-plugin'" in failure.error


def test_registry_add_still_refuses_a_taken_name() -> None:
    registry = ComponentRegistry("codec")
    registry.add(make_component("codec", "first-plugin", "tic", dict, {"description": "TIC"}))
    with pytest.raises(PluginError, match="codec name 'tic' is registered by both plugin 'first-plugin' and"):
        registry.add(make_component("codec", "second-plugin", "tic2", dict, {"description": "x", "aliases": ["tic"]}))


def test_same_name_in_different_kinds_is_allowed(bare_host: PluginHost) -> None:
    _register(bare_host, "p1", "register_codecs", (("toy", dict), {"description": "codec"}))
    _register(bare_host, "p2", "register_encoders", (("toy", dict), {"description": "encoder"}))
    assert bare_host.components("codec").get("toy").plugin == "p1"
    assert bare_host.components("encoder").get("toy").plugin == "p2"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ((("Bad_Name", dict), {"description": "x"}), "invalid component name 'Bad_Name'"),
        ((("ok", dict), {"description": "two\nlines"}), "codec 'ok': description: Value error, must be one"),
        ((("ok", dict), {}), "codec 'ok': description: Field required"),
        ((("ok", dict), {"description": "x", "qualitys": [1]}), "codec 'ok': qualitys: Extra inputs"),
        ((("ok", 42), {"description": "x"}), "codec 'ok': factory must be callable, got int"),
        ((("ok", dict), {"description": "x", "aliases": ["Nope"]}), "invalid component name 'Nope'"),
    ],
)
def test_invalid_registration_fails_that_plugin_only(bare_host: PluginHost, call: tuple, expected: str) -> None:
    _register(bare_host, "bad", "register_codecs", (("fine-before", dict), {"description": "x"}), call)
    _register(bare_host, "good", "register_codecs", (("tic", dict), {"description": "TIC"}))
    codecs = bare_host.components("codec")
    assert [component.name for component in codecs] == ["tic"]  # nothing from the bad call survives
    [failure] = bare_host.failed
    assert failure.plugin == "bad"
    assert expected in failure.error


def test_registry_lists_components_sorted_by_name() -> None:
    registry = ComponentRegistry("mllm")
    for name in ["llava-1.5", "blip2", "toy"]:
        registry.add(make_component("mllm", "p", name, dict, {"description": name}))
    assert [component.name for component in registry] == ["blip2", "llava-1.5", "toy"]


def test_unknown_factory_option_names_the_documented_ones() -> None:
    def factory(tiny: bool = False) -> dict:
        return {"tiny": tiny}

    component = make_component("codec", "p", "toy", factory, {"description": "x", "tiny": True, "options": {"tiny": "small"}})
    assert component.build(tiny=True) == {"tiny": True}
    with pytest.raises(NeckkitError) as caught:
        component.build(quality=3)
    assert str(caught.value) == "codec 'toy' (plugin 'p') does not accept option 'quality' (accepts: seed, tiny)"
