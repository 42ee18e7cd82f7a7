"""Shared fixtures: an isolated plugin host, the CLI runner, the example plugin's source, an empty hub cache."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "neckkit-toy"
# Plugin modules used as fake entry points and built-ins; the example's source for its doubles.
sys.path.insert(0, str(Path(__file__).parent / "sample_plugins"))
sys.path.insert(0, str(EXAMPLE / "src"))

from neckkit.cli.app import build_app  # noqa: E402
from neckkit.host.manager import PluginHost  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for every test: on the shared 2-core test machines tiny and real models
    alike ran 5-80x slower with two OpenMP threads (e.g. real TIC analysis 5.7 s vs 1.0 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def host() -> PluginHost:
    """A host with the built-ins loaded and no entry points, independent of the environment."""
    plugin_host = PluginHost(env={})
    plugin_host.load_builtins()
    return plugin_host


@pytest.fixture
def bare_host() -> PluginHost:
    """A host with no plugins at all, for tests of the registry rules themselves."""
    return PluginHost(env={})


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline, so no test depends on what this machine has cached."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def toy_plugin(host: PluginHost) -> Iterator[PluginHost]:
    """The example plugin registered in ``host`` the way an entry point would be."""
    import neckkit_toy.plugin

    assert host.register(neckkit_toy.plugin, "neckkit-toy", "0.1.0")
    yield host
    host.unregister("neckkit-toy")


@contextlib.contextmanager
def cli_workspace(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[CliRunner, PluginHost, Path]]:
    """For module fixtures: a runner, a host with the built-ins, and a folder whose cache holds the features."""
    folder = tmp_path_factory.mktemp(name)
    patch = pytest.MonkeyPatch()
    patch.setenv("NECKKIT_CACHE_DIR", str(folder / "cache"))
    plugin_host = PluginHost()
    plugin_host.load_builtins()
    try:
        yield CliRunner(), plugin_host, folder
    finally:
        patch.undo()


def invoke(runner: CliRunner, host: PluginHost, *args: str):
    """Run the CLI built for ``host`` with ``args``."""
    return runner.invoke(build_app(host), list(args))
