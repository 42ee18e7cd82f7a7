"""`neckkit compress` / `decompress` end to end, on the example plugin's toy codec."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import invoke
from neckkit.bitstream.container import read_nk, write_nk
from neckkit.bitstream.images import load_image, save_image
from neckkit.bitstream.padding import crop_padding, pad_to_multiple
from neckkit.host.manager import PluginHost
from neckkit.loading.weights import seeded_init
from neckkit_toy import ToyCodec

TOY = ["--codec", "toy", "--tiny"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return save_image(torch.rand(1, 3, 37, 51), tmp_path / "photo.png")


def test_compress_writes_a_nk_file_and_reports_real_and_estimated_rates(
    runner: CliRunner, toy_plugin: PluginHost, photo: Path, tmp_path: Path
) -> None:
    target = tmp_path / "photo.nk"
    result = invoke(runner, toy_plugin, "compress", str(photo), *TOY, "-o", str(target), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [row] = report["images"]
    nk = read_nk(target)
    assert (nk.codec, nk.options, nk.original_size) == ("toy-codec", {"tiny": True}, (37, 51))
    assert row["file_bytes"] == target.stat().st_size == nk.file_bytes
    assert row["payload_bpp"] == pytest.approx(nk.payload_bytes * 8 / (37 * 51))
    assert row["file_bpp"] == pytest.approx(target.stat().st_size * 8 / (37 * 51))
    assert 0 < row["estimated_bpp"] < 2 * row["payload_bpp"] and report["failed"] == []


def test_decompress_reconstructs_what_the_codec_synthesizes(
    runner: CliRunner, toy_plugin: PluginHost, photo: Path, tmp_path: Path
) -> None:
    invoke(runner, toy_plugin, "compress", str(photo), *TOY, "-o", str(tmp_path / "photo.nk"))
    result = invoke(runner, toy_plugin, "decompress", str(tmp_path / "photo.nk"), "-o", str(tmp_path / "back.png"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["synthesis"] is True
    with seeded_init(0):
        codec = ToyCodec(tiny=True).eval()
    padded, padding = pad_to_multiple(load_image(photo), codec.pad_multiple)
    with torch.no_grad():
        expected = crop_padding(codec.synthesize(codec.analyze(padded).y_hat), padding)
    back = load_image(tmp_path / "back.png")
    assert back.shape == (1, 3, 37, 51)
    assert (back - expected).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_latent_only_never_runs_the_synthesis(
    runner: CliRunner, toy_plugin: PluginHost, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(runner, toy_plugin, "compress", str(photo), *TOY, "-o", str(tmp_path / "photo.nk"))

    def no_synthesis(self, y_hat):
        raise AssertionError("synthesize must not run")

    monkeypatch.setattr(ToyCodec, "synthesize", no_synthesis)
    result = invoke(runner, toy_plugin, "decompress", str(tmp_path / "photo.nk"), "--latent-only", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["synthesis"] is False and report["latent_shape"] == [1, 8, 10, 13]
    assert "output" not in report


def test_folder_of_images_with_a_broken_one(runner: CliRunner, toy_plugin: PluginHost, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for name in ("a", "b"):
        save_image(torch.rand(1, 3, 16, 24), folder / f"{name}.png")
    (folder / "c.jpg").write_text("not an image")
    result = invoke(runner, toy_plugin, "compress", str(folder), *TOY, "-o", str(tmp_path / "out"), "--json")
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nk", "b.nk"]
    assert result.stderr.startswith(f"Error: {folder / 'c.jpg'} is not a readable image")
    assert len(result.stderr.strip().splitlines()) == 1


def test_file_from_other_weights_is_refused_by_fingerprint(
    runner: CliRunner, toy_plugin: PluginHost, photo: Path, tmp_path: Path
) -> None:
    invoke(runner, toy_plugin, "compress", str(photo), *TOY, "-o", str(tmp_path / "photo.nk"))
    nk = read_nk(tmp_path / "photo.nk")
    write_nk(tmp_path / "other.nk", dataclasses.replace(nk, fingerprint="0123456789abcdef"))
    result = invoke(runner, toy_plugin, "decompress", str(tmp_path / "other.nk"), "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'other.nk'}: weights fingerprint 0123456789abcdef differs")
    assert not (tmp_path / "x.png").exists()


def test_file_from_another_codec_is_refused(runner: CliRunner, toy_plugin: PluginHost, photo: Path, tmp_path: Path) -> None:
    invoke(runner, toy_plugin, "compress", str(photo), *TOY, "-o", str(tmp_path / "photo.nk"))
    nk = read_nk(tmp_path / "photo.nk")
    write_nk(tmp_path / "other.nk", dataclasses.replace(nk, codec="clip-l"))
    result = invoke(runner, toy_plugin, "decompress", str(tmp_path / "other.nk"), "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown codec 'clip-l'")


def test_refused_file_leaves_existing_output_untouched(runner: CliRunner, toy_plugin: PluginHost, tmp_path: Path) -> None:
    existing = save_image(torch.zeros(1, 3, 4, 4), tmp_path / "keep.png")
    before = existing.read_bytes()
    broken = tmp_path / "broken.nk"
    broken.write_bytes(b"\x89NKT\r\n\x1a\n" + b"\x01\x00" + b"\xff" * 10)
    result = invoke(runner, toy_plugin, "decompress", str(broken), "-o", str(existing))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert existing.read_bytes() == before


def test_decompress_needs_an_output_or_latent_only(runner: CliRunner, toy_plugin: PluginHost, tmp_path: Path) -> None:
    result = invoke(runner, toy_plugin, "decompress", str(tmp_path / "x.nk"))
    assert result.exit_code == 2  # a usage error
    assert result.stderr == "Error: pass -o IMAGE.png for the reconstruction, or --latent-only\n"


@pytest.fixture(scope="module")
def valid_nk(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import neckkit_toy.plugin

    folder = tmp_path_factory.mktemp("fuzz")
    host = PluginHost(env={})
    host.register(neckkit_toy.plugin, "neckkit-toy", "0.1.0")
    save_image(torch.rand(1, 3, 12, 20), folder / "p.png")
    result = invoke(CliRunner(), host, "compress", str(folder / "p.png"), *TOY, "-o", str(folder / "p.nk"))
    assert result.exit_code == 0, result.output
    return (folder / "p.nk").read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_give_one_error_line_and_exit_1(
    data: st.DataObject, valid_nk: bytes, toy_plugin: PluginHost, tmp_path: Path
) -> None:
    kind = data.draw(st.sampled_from(["truncate", "flip", "random", "append"]))
    blob = bytearray(valid_nk)
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "random":
        blob = bytearray(data.draw(st.binary(max_size=200)))
    else:
        blob += data.draw(st.binary(min_size=1, max_size=20))
    path = tmp_path / "fuzz.nk"
    path.write_bytes(bytes(blob))
    result = invoke(CliRunner(), toy_plugin, "decompress", str(path), "-o", str(tmp_path / "fuzz.png"))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and not (tmp_path / "fuzz.png").exists()


def test_compress_never_writes_over_its_own_input(runner: CliRunner, host: PluginHost, tmp_path: Path) -> None:
    import shutil

    from neckkit.samples import sample_images

    image = tmp_path / "x.png"
    shutil.copy(sample_images()[0], tmp_path / "x.jpg")
    (tmp_path / "x.jpg").rename(image)  # a JPEG named .png: still the input
    before = image.read_bytes()
    result = invoke(runner, host, "compress", str(image), "--codec", "tic", "--tiny", "-o", str(image))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: -o {image} is the input image itself; refusing to overwrite it: choose another -o "
        f"(e.g. {tmp_path / 'x.nk'})\n"
    )
    assert image.read_bytes() == before
