"""A file's header never chooses what neckkit downloads or opens; offline switches stop every download."""

from __future__ import annotations

import dataclasses
import socket
import urllib.error
from pathlib import Path

import pytest

from conftest import invoke
from neckkit.bitstream.container import write_nk
from neckkit.loading import downloads
from neckkit.samples import sample_images


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No offline switch, an empty torch hub cache, and every connection attempt recorded and refused."""
    attempts: list[str] = []

    def connect(self: socket.socket, address: object) -> None:
        attempts.append(str(address))
        raise OSError("network unreachable (test)")

    def urlopen(url: object, *args: object, **kwargs: object) -> None:
        attempts.append(str(url))
        raise urllib.error.URLError("network unreachable (test)")

    for name in downloads.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return attempts


def _header_naming(tmp_path: Path, options: dict, runner, host) -> Path:
    """A valid .nk from the tiny zoo codec, its header then rewritten to name ``options``."""
    path = tmp_path / "photo.nk"
    result = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "mbt2018-mean", "--tiny", "-o", str(path))
    assert result.exit_code == 0, result.output
    from neckkit.bitstream.container import read_nk

    write_nk(path, dataclasses.replace(read_nk(path), options=options))
    return path


def test_a_header_naming_a_zoo_quality_downloads_nothing(network: list[str], tmp_path: Path, runner, host) -> None:
    nk = _header_naming(tmp_path, {"quality": 3}, runner, host)
    result = invoke(runner, host, "decompress", str(nk), "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: CompressAI weights for mbt2018-mean quality 3 are not cached and neckkit downloads nothing now "
        f"(a component named by {nk}'s header is loaded from local files only): fetch "
        "https://compressai.s3.amazonaws.com/models/v1/mbt2018-mean-3-723404a8.pth.tar into "
        f"{tmp_path / 'torch-home' / 'hub' / 'checkpoints'}/ or pass --codec-weights FILE"
    ]
    assert network == []  # no connection was attempted
    assert not (tmp_path / "out.png").exists()


def test_a_header_naming_a_weights_path_is_refused(network: list[str], tmp_path: Path, runner, host) -> None:
    nk = _header_naming(tmp_path, {"tiny": True, "weights": "/etc/passwd"}, runner, host)
    result = invoke(runner, host, "decompress", str(nk), "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {nk}'s header names weights '/etc/passwd'; a file never chooses what neckkit opens "
        "(neckkit records no paths): pass the weights with --codec-weights"
    )


@pytest.mark.parametrize("variable", downloads.OFFLINE_VARIABLES)
def test_an_offline_switch_stops_a_download_the_user_asked_for(
    network: list[str], tmp_path: Path, runner, host, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    result = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "mbt2018-mean", "--quality", "3",
                    "-o", str(tmp_path / "a.nk"))
    assert result.exit_code == 1
    assert f"neckkit downloads nothing now ({variable} is set)" in result.stderr
    assert network == []


def test_a_codec_the_user_names_is_downloaded_when_online(network: list[str], tmp_path: Path, runner, host) -> None:
    result = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "mbt2018-mean", "--quality", "3",
                    "-o", str(tmp_path / "a.nk"))
    assert result.exit_code == 1
    assert network == ["https://compressai.s3.amazonaws.com/models/v1/mbt2018-mean-3-723404a8.pth.tar"]
    assert "are not cached and could not be downloaded (network unreachable (test))" in result.stderr


def test_downloads_allowed_follows_the_switches_and_the_record_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in downloads.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert downloads.downloads_allowed() and downloads.offline_reason() is None
    with downloads.building_from_record("x.nk's header"):
        assert not downloads.downloads_allowed()
        assert downloads.offline_reason() == "a component named by x.nk's header is loaded from local files only"
    assert downloads.downloads_allowed()
    monkeypatch.setenv("NECKKIT_OFFLINE", "0")
    assert downloads.downloads_allowed()
    monkeypatch.setenv("NECKKIT_OFFLINE", "yes")
    assert downloads.offline_reason() == "NECKKIT_OFFLINE is set"


def test_a_necks_meta_naming_a_zoo_quality_downloads_nothing(network: list[str], tmp_path: Path, runner, host) -> None:
    from neckkit.neck.checkpoint import CheckpointMeta, ComponentRef, NeckShape, save_checkpoint
    from neckkit.neck.transform import TransformNeck

    neck = TransformNeck(192, 64, grid=16)
    meta = CheckpointMeta(
        codec=ComponentRef(name="mbt2018-mean", options={"quality": 3}),
        encoder=ComponentRef(name="clip-l", options={"tiny": True}),
        entry_layer=neck.config.entry_layer,
        neck=NeckShape.of_neck(neck),
    )
    folder = save_checkpoint(tmp_path / "neck", meta, neck.state_dict())
    result = invoke(runner, host, "compress", "--neck", str(folder), str(sample_images()[0]), "-o", str(tmp_path / "a.nk"))
    assert result.exit_code == 1
    assert f"neckkit downloads nothing now (a component named by {folder}/meta.json is loaded from local files only)" in result.stderr
    assert network == []
