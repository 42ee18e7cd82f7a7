"""Import names from before core/ was grouped by concept keep working (third-party plugins use them)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from neckkit._compat import MOVED_MODULES


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_old_module_name_is_the_moved_module(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_names_import_their_public_names() -> None:
    import neckkit
    from neckkit.checkpoint import load_checkpoint
    from neckkit.hookspecs import hookimpl
    from neckkit.neck.checkpoint import load_checkpoint as moved_load_checkpoint
    from neckkit.plugin_manager import PluginHost, get_host
    from neckkit.registry import RegisterCallback, lazy_factory
    from neckkit.weights import fingerprint, seeded_init

    assert hookimpl is neckkit.hookimpl
    assert load_checkpoint is moved_load_checkpoint
    assert PluginHost is neckkit.PluginHost and get_host is neckkit.get_host
    assert callable(lazy_factory) and callable(fingerprint) and callable(seeded_init)
    assert RegisterCallback.__name__ == "RegisterCallback"


def test_modules_that_became_packages_reexport_their_names() -> None:
    from neckkit.bitstream import NkFile, decode_nk, read_nk, write_nk
    from neckkit.bitstream.container import NkFile as container_nk_file
    from neckkit.evaluation import Evaluator, RatePoint
    from neckkit.evaluation.sweep import Evaluator as sweep_evaluator
    from neckkit.neck import TransformNeck
    from neckkit.neck.transform import TransformNeck as transform_neck

    assert NkFile is container_nk_file and callable(decode_nk) and callable(read_nk) and callable(write_nk)
    assert Evaluator is sweep_evaluator and RatePoint.__name__ == "RatePoint"
    assert TransformNeck is transform_neck


def test_monkeypatching_an_old_name_patches_the_module_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import neckkit.host.manager
    import neckkit.plugin_manager

    monkeypatch.setattr(neckkit.plugin_manager, "BUILTIN_PLUGINS", ("patched",))
    assert neckkit.host.manager.BUILTIN_PLUGINS == ("patched",)


def test_unknown_neckkit_module_still_fails_to_import() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("neckkit.no_such_module")


def test_old_names_import_in_a_fresh_interpreter_without_torch_for_the_plugin_host() -> None:
    code = (
        "import sys, neckkit.registry, neckkit.hookspecs, neckkit.plugin_manager, neckkit.bitstream\n"
        "assert 'torch' not in sys.modules, 'the plugin host and the .nk reader must not import torch'\n"
        "print(neckkit.registry.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "neckkit.host.registry"
