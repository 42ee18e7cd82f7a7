"""A declared option the factory cannot take is found when the plugin registers (a lazy factory: at its first
build) and named with its factory, never left to a bare TypeError at build time."""

from __future__ import annotations

import pytest

from neckkit import NeckkitError, PluginError, hookimpl
from neckkit.host.factories import signature_problem
from neckkit.host.manager import PluginHost
from neckkit.host.options import option_help
from neckkit.host.registry import make_component
from neckkit.plugin_api import lazy_factory

FIX = "add the parameter (or **options) or stop declaring the option"


def build_without_weights(tiny: bool = False, random_init: bool = False) -> dict:
    return {"tiny": tiny, "random_init": random_init}


def build_without_tiny(weights: str | None = None) -> dict:
    return {"weights": weights}


def build_anything(**options: object) -> dict:
    return options


def test_a_declared_option_missing_from_the_factory_fails_registration_naming_option_and_factory() -> None:
    with pytest.raises(PluginError) as caught:
        make_component("codec", "p", "mine", build_without_weights,
                       {"description": "x", "tiny": True, "options": {"weights": "file", "random_init": "r"}})
    assert str(caught.value) == (
        "codec 'mine': declared option 'weights' is not a keyword parameter of its factory "
        f"test_factory_signatures:build_without_weights(tiny, random_init); {FIX}"
    )


def test_tiny_true_without_a_tiny_parameter_fails_registration() -> None:
    with pytest.raises(PluginError) as caught:
        make_component("encoder", "p", "mine", build_without_tiny, {"description": "x", "tiny": True,
                                                                     "options": {"weights": "file"}})
    assert str(caught.value) == (
        "encoder 'mine': tiny=True declares option 'tiny', which is not a keyword parameter of its factory "
        f"test_factory_signatures:build_without_tiny(weights); {FIX}"
    )


def test_the_failed_registration_lists_the_plugin_under_failed(bare_host: PluginHost) -> None:
    class Plugin:
        @staticmethod
        @hookimpl
        def register_codecs(register) -> None:
            register("mine", build_without_tiny, description="x", tiny=True)

    assert bare_host.register(Plugin, "p", "1.0")
    assert "mine" not in bare_host.components("codec")
    [failure] = bare_host.failed
    assert failure.error.startswith("PluginError: register_codecs raised PluginError: codec 'mine': tiny=True declares")


def test_a_factory_with_kwargs_takes_any_declared_option() -> None:
    component = make_component("codec", "p", "mine", build_anything,
                               {"description": "x", "tiny": True, "options": {"anything": "a"}})
    assert component.build(tiny=True, anything=3) == {"tiny": True, "anything": 3}


def test_a_lazy_factory_is_not_imported_at_registration_and_is_checked_at_its_first_build() -> None:
    unimportable = make_component("codec", "p", "ghost", lazy_factory("no_such_module_anywhere:build"),
                                  {"description": "x", "tiny": True})
    with pytest.raises(NeckkitError, match=r"^codec 'ghost' \(plugin 'p'\) failed to build: ModuleNotFoundError"):
        unimportable.build(tiny=True)
    wrong = make_component("codec", "p", "toy", lazy_factory("neckkit_toy.codec:build_codec"),
                           {"description": "x", "tiny": True, "options": {"quality": "q"}})
    with pytest.raises(NeckkitError) as caught:
        wrong.build(tiny=True)
    assert str(caught.value) == (
        "codec 'toy' (plugin 'p'): declared option 'quality' is not a keyword parameter of its factory "
        f"neckkit_toy.codec:build_codec(channels, tiny, random_init, weights); {FIX}"
    )


def test_an_option_bound_by_lazy_factory_cannot_be_declared_again() -> None:
    component = make_component("codec", "p", "toy", lazy_factory("neckkit_toy.codec:build_codec", channels=4),
                               {"description": "x", "tiny": True, "options": {"channels": "c"}})
    with pytest.raises(NeckkitError) as caught:
        component.build(tiny=True)
    assert str(caught.value) == (
        "codec 'toy' (plugin 'p'): declared option 'channels' is already bound by "
        "lazy_factory('neckkit_toy.codec:build_codec', channels=...)"
    )


def test_every_builtin_factory_takes_the_options_it_declares(host: PluginHost) -> None:
    checked = 0
    for registry in host.all_components().values():
        for component in registry:
            assert signature_problem(component.factory, option_help(component.info), resolve=True) is None, component
            checked += 1
    assert checked >= 10 and host.failed == []
