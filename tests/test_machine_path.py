"""Serving a neck: the codec it was trained on, bitstreams made with it, refusals naming both sides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import invoke
from neckkit.bitstream.container import codec_fingerprint, read_nk
from neckkit.errors import NeckkitError
from neckkit.neck.checkpoint import load_checkpoint
from neckkit.samples import sample_images
from neckkit.serving.machine_path import SynthesisWatch, codec_for_checkpoint


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def d3_run(runner, host, tmp_path: Path) -> Path:
    out = tmp_path / "d3"
    result = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--scenario", "d3",
                    "--max-steps", "3", "--set", "scenarios.joint_only=true", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    return out


def test_a_d3_necks_codec_is_rebuilt_with_its_trained_weights(host, d3_run: Path) -> None:
    checkpoint = load_checkpoint(d3_run)
    name, codec = codec_for_checkpoint(host, checkpoint)
    assert name == "tic" and codec_fingerprint(codec) == checkpoint.meta.codec.fingerprint
    assert codec_fingerprint(host.components("codec").get("tic").build(tiny=True)) != checkpoint.meta.codec.fingerprint


def test_compress_and_decompress_with_a_necks_codec(runner, host, d3_run: Path, tmp_path: Path) -> None:
    photo, nk_path = sample_images()[0], tmp_path / "photo.nk"
    result = invoke(runner, host, "compress", str(photo), "--neck", str(d3_run), "-o", str(nk_path), "--json")
    assert result.exit_code == 0, result.output
    assert read_nk(nk_path).fingerprint == load_checkpoint(d3_run).meta.codec.fingerprint
    plain = invoke(runner, host, "decompress", str(nk_path), "--latent-only")
    assert plain.exit_code == 1 and "differs from the loaded codec's" in plain.output and "--neck" in plain.output
    back = invoke(runner, host, "decompress", str(nk_path), "--neck", str(d3_run), "-o", str(tmp_path / "x.png"))
    assert back.exit_code == 0, back.output
    assert (tmp_path / "x.png").is_file()
    other = invoke(runner, host, "compress", str(photo), "--neck", str(d3_run), "--codec", "elic", "-o", str(tmp_path / "y.nk"))
    assert other.exit_code == 1 and "codec 'elic' is not the codec of the neck" in other.output
    assert not (tmp_path / "y.nk").exists()


def test_a_codec_with_other_weights_is_refused(host, d3_run: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(d3_run)
    checkpoint.codec_state = None  # as if the trained codec weights were lost
    with pytest.raises(NeckkitError, match="but the neck was trained on weights"):
        codec_for_checkpoint(host, checkpoint)


def test_synthesis_watch_counts_decoder_calls(host) -> None:
    codec = host.components("codec").get("tic").build(tiny=True).eval()
    watch = SynthesisWatch()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad(), watch.watching(codec):
        y_hat = codec.analyze(x).y_hat
        assert watch.calls == 0
        codec.synthesize(y_hat)
    assert watch.calls == 8  # TIC's eight synthesis stages
