"""A third-party plugin written only against ``neckkit.plugin_api`` (tests/plugin_packages/neckkit-factorized).

It is checked as source (its imports), registered in a host as an entry point would be, and, marked
``install``, pip-installed for real and used by ``neckkit train --scenario d3`` through its entry point.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import torch

from neckkit.host.manager import PluginHost
from neckkit.neck.checkpoint import read_meta, resolve_checkpoint
from neckkit.plugin_api import CODER_TABLES, fingerprint

PACKAGE = Path(__file__).parent / "plugin_packages" / "neckkit-factorized"
SOURCE = PACKAGE / "src"
DISTRIBUTION = "neckkit-factorized"
CODEC = "bmshj2018-factorized"


def _neckkit_imports(path: Path) -> set[str]:
    """Every module of the ``neckkit`` package that ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "neckkit"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "neckkit":
            found.add(node.module)
    return found


def test_the_package_imports_nothing_of_neckkit_but_the_plugin_api() -> None:
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) == 3
    imports = {path.name: _neckkit_imports(path) for path in files}
    assert imports == {"__init__.py": set(), "codec.py": {"neckkit.plugin_api"}, "plugin.py": {"neckkit.plugin_api"}}


def test_the_package_declares_its_entry_point_in_the_neckkit_group() -> None:
    text = (PACKAGE / "pyproject.toml").read_text()
    assert '[project.entry-points.neckkit]\nneckkit-factorized = "neckkit_factorized.plugin"' in text


@pytest.fixture
def factorized(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """The plugin's module registered in ``host`` the way its entry point would be."""
    monkeypatch.syspath_prepend(str(SOURCE))
    import neckkit_factorized.plugin

    assert host.register(neckkit_factorized.plugin, DISTRIBUTION, "0.1.0")
    yield host
    host.unregister(DISTRIBUTION)
    for name in [name for name in sys.modules if name.startswith("neckkit_factorized")]:
        del sys.modules[name]


def test_its_tiny_codec_round_trips_and_names_its_synthesis_transform(factorized: PluginHost) -> None:
    component = factorized.components("codec").get(CODEC)
    assert (component.info.tiny, component.info.scenarios) == (True, ("d1", "d2", "d3"))
    codec = component.build(tiny=True)
    assert (codec.latent_channels, codec.stride, codec.pad_multiple) == (32, 16, 16)
    assert codec.synthesis_modules() == [codec.model.g_s]
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y_hat = codec.analyze(x).y_hat  # [1, 32, 2, 3]
        assert y_hat.shape == (1, 32, 2, 3)
        assert torch.equal(codec.decompress_latent(codec.compress(x)), y_hat)
        assert codec.synthesize(y_hat).shape == (1, 3, 32, 48)
    assert factorized.failed == []


def test_its_weights_file_loads_through_the_plugin_api(factorized: PluginHost, tmp_path: Path) -> None:
    component = factorized.components("codec").get(CODEC)
    trained = component.build(tiny=True, seed=7)  # the host seeds every build: seed=, not seeded_init(7) around it
    assert fingerprint(trained) != fingerprint(component.build(tiny=True))  # so loading it proves something
    path = tmp_path / "factorized.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in trained.model.state_dict().items()}}, path)
    loaded = component.build(weights=str(path))  # sizes read from the file: the tiny ones
    assert fingerprint(loaded, exclude=CODER_TABLES) == fingerprint(trained, exclude=CODER_TABLES)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.analyze(x).y_hat, trained.analyze(x).y_hat)


def test_its_codec_codes_with_a_files_stored_tables_as_they_are(factorized: PluginHost, tmp_path: Path) -> None:
    component = factorized.components("codec").get(CODEC)
    weights, other = component.build(tiny=True, seed=7), component.build(tiny=True, seed=8)
    weights.model.update(force=True)
    other.model.update(force=True)
    state = dict(weights.model.state_dict())
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):  # another model's tables: unlike a rebuild
        state[f"entropy_bottleneck.{name}"] = getattr(other.model.entropy_bottleneck, name)
    path = tmp_path / "factorized.pth"
    torch.save(state, path)
    loaded = component.build(weights=str(path))
    stored = loaded.model.entropy_bottleneck._quantized_cdf.clone()
    assert torch.equal(stored, other.model.entropy_bottleneck._quantized_cdf)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loaded.decompress_latent(loaded.compress(x))
    assert torch.equal(loaded.model.entropy_bottleneck._quantized_cdf, stored)  # not rebuilt by compress


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.install
def test_installed_plugin_trains_a_d3_neck_through_its_entry_point(tmp_path: Path) -> None:
    if any(dist.metadata["Name"] == DISTRIBUTION for dist in metadata.distributions()):
        pytest.fail(f"{DISTRIBUTION} is already installed here; this test installs and removes it itself")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_CACHE_DIR": str(tmp_path / "cache")}
    for key in ("NECKKIT_LOAD_PLUGINS", "NECKKIT_DISABLE_PLUGINS"):
        env.pop(key, None)
    source = shutil.copytree(PACKAGE, tmp_path / DISTRIBUTION)  # pip builds in-tree: keep the repo clean
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    installed = _run(
        *pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(source), cwd=tmp_path, env=env
    )
    assert installed.returncode == 0, installed.stderr
    try:
        listing = json.loads(
            _run(sys.executable, "-m", "neckkit", "list-plugins", "--json", cwd=tmp_path, env=env).stdout
        )
        assert any(row["name"] == DISTRIBUTION for row in listing["plugins"])
        assert listing["failed"] == []
        run = tmp_path / "run"
        trained = _run(
            sys.executable, "-m", "neckkit", "train", "--codec", CODEC, "--encoder", "clip-l", "--tiny",
            "--scenario", "d3", "--max-steps", "2", "--out", str(run),
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert "Warning" not in trained.stderr
        meta = read_meta(resolve_checkpoint(run))
        assert (meta.codec.name, meta.scenario, meta.step) == (CODEC, "d3", 2)
        assert meta.codec.options == {"tiny": True}
    finally:
        removed = _run(*pip, "uninstall", "--yes", DISTRIBUTION, cwd=tmp_path, env=env)
    assert removed.returncode == 0, removed.stderr
    after = json.loads(_run(sys.executable, "-m", "neckkit", "list-plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert CODEC not in {row["name"] for row in after["components"]["codecs"]}
