"""The installed distribution: namespace layout, console entry, and a real third-party plugin."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import EXAMPLE, REPO

# The README's two set-up commands; .ci/run must run exactly these.
SETUP_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install "torch==2.14.1" "torchvision==0.29.1" '
    '&& pip install -e ".[dev]" && neckkit train --codec tic --encoder clip-l --tiny'
)
TEST_COMMAND = ". .venv/bin/activate && HF_HUB_OFFLINE=1 python -m pytest"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NECKKIT_LOAD_PLUGINS", None)
    env.pop("NECKKIT_DISABLE_PLUGINS", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _neckkit_json(cwd: Path) -> dict:
    result = _run(sys.executable, "-m", "neckkit", "list-plugins", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _tree_digest(*folders: str) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(path.relative_to(REPO).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_readme_and_ci_use_the_same_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    for command in (SETUP_COMMAND, TEST_COMMAND):
        assert command in readme
        assert command in ci


@pytest.mark.parametrize("name", ["core", "cli", "plugins"])
def test_no_bare_top_level_package_is_installed(tmp_path: Path, name: str) -> None:
    result = _run(sys.executable, "-c", f"import {name}", cwd=tmp_path)
    assert result.returncode != 0
    assert f"No module named '{name}'" in result.stderr


def test_namespace_maps_the_repository_folders(tmp_path: Path) -> None:
    code = "import neckkit, neckkit.cli, neckkit.plugins.codecs as c; print(neckkit.__version__, c.__name__)"
    result = _run(sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [metadata.version("neckkit"), "neckkit.plugins.codecs"]


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    result = _run(sys.executable, "-m", "neckkit", "--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"neckkit {metadata.version('neckkit')}\n")


@pytest.mark.install
def test_installing_the_example_plugin_adds_its_components_without_core_changes(tmp_path: Path) -> None:
    if any(dist.metadata["Name"] == "neckkit-toy" for dist in metadata.distributions()):
        pytest.fail("neckkit-toy is already installed here; this test installs and removes it itself")
    before = _tree_digest("core", "plugins", "cli")
    names = lambda listing, kind: {row["name"] for row in listing["components"][kind]}  # noqa: E731
    assert "toy-codec" not in names(_neckkit_json(tmp_path), "codecs")

    source = shutil.copytree(EXAMPLE, tmp_path / "neckkit-toy")  # pip builds in-tree: keep the repo clean
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    installed = _run(*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(source), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    try:
        listing = _neckkit_json(tmp_path)
        assert {"name": "neckkit-toy", "version": "0.1.0", "hooks": [
            "register_codecs", "register_commands", "register_encoders", "register_mllms"
        ]} in listing["plugins"]
        assert "toy-codec" in names(listing, "codecs")
        assert "toy-vit" in names(listing, "encoders")
        assert "toy-mllm" in names(listing, "mllms")
        assert listing["failed"] == []
        hello = _run(sys.executable, "-m", "neckkit", "toy-hello", cwd=tmp_path)
        assert hello.stdout == "hello world from neckkit-toy\n"
    finally:
        removed = _run(*pip, "uninstall", "--yes", "neckkit-toy", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    after = _neckkit_json(tmp_path)
    assert not {"toy-codec", "toy-vit", "toy-mllm"} & (names(after, "codecs") | names(after, "encoders") | names(after, "mllms"))
    assert _tree_digest("core", "plugins", "cli") == before
