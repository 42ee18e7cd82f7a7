"""Outputs are readable by others as a plain open() would leave them: the umask applies, an old file keeps its mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from neckkit.bitstream.images import save_image
from neckkit.config.paper import NeckConfig
from neckkit.files import atomic_path


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_a_new_file_gets_0666_minus_the_umask(tmp_path: Path, umask: None, mask: int, expected: int) -> None:
    os.umask(mask)
    with atomic_path(tmp_path / "eval.json") as temporary:
        temporary.write_text("{}")
    assert _mode(tmp_path / "eval.json") == expected


def test_an_existing_file_keeps_its_mode(tmp_path: Path, umask: None) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and _mode(target) == 0o600


def test_decompressed_images_and_configs_are_readable_by_others(tmp_path: Path, umask: None) -> None:
    image = save_image(torch.rand(1, 3, 8, 8), tmp_path / "photo_hat.png")
    config = NeckConfig().save(tmp_path / "config.yaml")
    assert _mode(image) == 0o644 and _mode(config) == 0o644
    assert NeckConfig.model_validate(__import__("yaml").safe_load(config.read_text())) == NeckConfig()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "photo_hat.png"]  # no temporary left
