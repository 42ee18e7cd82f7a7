"""Traditional anchors (jpeg, webp, avif, heif, jxl, vtm): real file bytes in .nk, round trips, rates, refusals.

Each anchor codes a 128 x 96 crop of a bundled photo (chelsea.jpg, the cat's face) through ``neckkit compress``
and back through ``neckkit decompress``. Top-quality PSNR floors were measured on that crop (Pillow 13.0,
pillow-heif 1.9, pillow-jxl-plugin 1.3.8): jpeg 48.8 dB, webp 45.0, avif 48.1, heif 46.3, jxl lossless; each floor
is about 3 dB under. VTM is not installable here: it is tested for its refusals and, with shell scripts standing
in for its binaries, for its plumbing. Hostile files are decoded in a child process, where a crash of a C
decoder fails one test instead of ending the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import invoke
from neckkit.bitstream.image_files import decode_image, encode_image
from neckkit.bitstream.images import load_image, save_image
from neckkit.bitstream.nk_files import read_nk, write_nk
from neckkit.bitstream.nk_format import NkFile, decode_nk, encode_nk
from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.host.options import build_component
from neckkit.samples import sample_images

ANCHORS = ("jpeg", "webp", "avif", "heif", "jxl")
TOP_PSNR_FLOOR = {"jpeg": 45.0, "webp": 42.0, "avif": 45.0, "heif": 43.0, "jxl": math.inf}  # jxl 100: lossless
MAGIC = {  # how each codec's own file starts
    "jpeg": lambda data: data[:3] == b"\xff\xd8\xff",
    "webp": lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP",
    "avif": lambda data: data[4:12] == b"ftypavif",
    "heif": lambda data: data[4:12] == b"ftypheic",
    "jxl": lambda data: data[:2] == b"\xff\x0a",
}
VTM_VARIABLES = ("NECKKIT_VTM_ENCODER", "NECKKIT_VTM_DECODER", "NECKKIT_VTM_CONFIG")
posix_only = pytest.mark.skipif(os.name != "posix", reason="the stand-in VTM binaries are shell scripts")


@pytest.fixture(scope="module")
def module_host() -> PluginHost:
    host = PluginHost(env={})
    host.load_builtins()
    return host


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    return load_image(sample_images()[1])[..., 102:198, 161:289].contiguous()  # [1, 3, 96, 128]


@pytest.fixture(scope="module")
def crop_png(crop: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_image(crop, tmp_path_factory.mktemp("photo") / "cat.png")


@pytest.fixture(autouse=True)
def no_vtm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VTM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    mse = float((((x * 255).round() - (x_hat * 255).round()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def one_error_line(result) -> str:  # noqa: ANN001
    """The single ``Error: ...`` line a refused command printed (and nothing else), without the prefix."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


def build(host: PluginHost, name: str, **options: object):  # noqa: ANN201
    return build_component(host, "codec", name, options)[1]


# --- round trips, quality and rate -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANCHORS)
def test_every_anchor_round_trips_a_photo_crop_through_compress_and_decompress(
    runner: CliRunner, module_host: PluginHost, crop: torch.Tensor, crop_png: Path, tmp_path: Path, name: str
) -> None:
    top = build(module_host, name).quality_range[1]
    target, output = tmp_path / f"{name}.nk", tmp_path / f"{name}.png"
    compressed = invoke(runner, module_host, "compress", str(crop_png), "--codec", name, "--quality", str(top),
                        "-o", str(target), "--json")
    assert compressed.exit_code == 0, compressed.output
    [row] = json.loads(compressed.stdout)["images"]
    nk = read_nk(target)
    (stream,) = nk.streams
    assert MAGIC[name](stream)  # the codec's own file, as is
    assert (nk.codec, nk.options, nk.shape, tuple(nk.padding), nk.original_size) == (
        name, {"quality": top}, (), (0, 0, 0, 0), (96, 128))
    assert (row["payload_bytes"], row["file_bytes"]) == (len(stream), target.stat().st_size)
    assert row["payload_bpp"] == len(stream) * 8 / (96 * 128) and row["estimated_bpp"] is None
    assert row["quality"] == top and row["level"] is None
    decompressed = invoke(runner, module_host, "decompress", str(target), "-o", str(output), "--json")
    assert decompressed.exit_code == 0, decompressed.output
    assert json.loads(decompressed.stdout)["codec"] == name
    decoded = load_image(output)
    assert decoded.shape == crop.shape
    assert psnr(crop, decoded) >= TOP_PSNR_FLOOR[name]


@pytest.mark.parametrize("name", ANCHORS)
def test_bpp_falls_as_quality_falls(module_host: PluginHost, crop: torch.Tensor, name: str) -> None:
    low, high = build(module_host, name).quality_range
    qualities = [high, low + 2 * (high - low) // 3, low + (high - low) // 3, low]
    sizes = [encode_image(build(module_host, name, quality=q), crop).payload_bytes for q in qualities]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), dict(zip(qualities, sizes, strict=True))


def test_encode_image_and_decode_image_go_through_the_container_without_the_latent_decoder(
    module_host: PluginHost, crop: torch.Tensor
) -> None:
    codec = build(module_host, "webp", quality=50)
    nk = decode_nk(encode_nk(encode_image(codec, crop)))
    assert nk.fingerprint == codec.fingerprint and len(nk.fingerprint) == 16
    assert torch.equal(decode_image(codec, nk), codec.decode(nk.streams[0]))
    with pytest.raises(NeckkitError, match=r"^photo\.nk: was compressed with codec 'webp', not 'jpeg'$"):
        decode_image(build(module_host, "jpeg"), nk, source="photo.nk")


def test_tiny_is_a_no_op_that_combines_with_quality(module_host: PluginHost, crop: torch.Tensor) -> None:
    tiny, plain = build(module_host, "avif", quality=30, tiny=True), build(module_host, "avif", quality=30)
    assert encode_image(tiny, crop) == encode_image(plain, crop)


def test_a_quality_outside_the_library_range_is_refused_before_the_factory(module_host: PluginHost) -> None:
    with pytest.raises(NeckkitError, match="codec 'jpeg' .*quality: Input should be greater than or equal to 1"):
        build(module_host, "jpeg", quality=0)
    with pytest.raises(NeckkitError, match="codec 'vtm' .*quality: Input should be less than or equal to 63"):
        build(module_host, "vtm", quality=64)


def test_a_missing_library_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from neckkit.plugins.codecs.heif import HeifCodec
    from neckkit.plugins.codecs.jxl import JxlCodec

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    monkeypatch.setitem(sys.modules, "pillow_jxl", None)
    with pytest.raises(NeckkitError, match=r"^heif needs the pillow-heif package \(.*\): pip install pillow-heif$"):
        HeifCodec(50)
    with pytest.raises(NeckkitError, match=r"^jxl needs the pillow-jxl-plugin package .*: pip install pillow-jxl-plugin$"):
        JxlCodec(50)


# --- the command line: listing and refusals ----------------------------------------------------------------


def test_list_plugins_shows_the_paths_each_codec_serves(runner: CliRunner, module_host: PluginHost) -> None:
    listing = json.loads(invoke(runner, module_host, "list-plugins", "--json").stdout)
    codecs = {row["name"]: row for row in listing["components"]["codecs"]}
    for name in (*ANCHORS, "vtm"):
        assert (codecs[name]["paths"], codecs[name]["scenarios"]) == (["reconstruction"], [])
    assert codecs["elic"]["paths"] == codecs["mbt2018-mean-vbr"]["paths"] == ["reconstruction", "neck"]
    assert codecs["vtm"]["options"]["quality"] == "0-63, higher is FEWER bits (a QP) (default 37)"
    table = invoke(runner, module_host, "list-plugins").stdout
    assert "jpeg (plugin neckkit.plugins.codecs) options: quality, tiny; paths: reconstruction" in table
    assert "options: quality, random_init, tiny, weights; paths: reconstruction, neck" in table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--codec", "jpeg", "--encoder", "clip-l", "--tiny"],
         "jpeg has no latent: it is a Reconstruction-path anchor; train a neck on a learned codec"),
        (["train-codec", "--codec", "avif", "--tiny"],
         "avif has no latent: it is a Reconstruction-path anchor; train-codec trains learned codecs"),
        (["bench", "--codec", "jpeg", "--encoder", "clip-l"],
         "jpeg has no latent: it is a Reconstruction-path anchor; bench measures a neck on a learned codec"),
    ],
)
def test_commands_that_need_a_latent_refuse_an_anchor_in_one_line(runner: CliRunner, module_host: PluginHost,
                                                                   args: list[str], expected: str) -> None:
    assert one_error_line(invoke(runner, module_host, *args)) == expected


def test_compress_refuses_a_level_and_decompress_a_latent_only_for_an_anchor(
    runner: CliRunner, module_host: PluginHost, crop_png: Path, tmp_path: Path
) -> None:
    target = tmp_path / "cat.nk"
    leveled = invoke(runner, module_host, "compress", str(crop_png), "--codec", "jpeg", "--level", "2", "-o", str(target))
    assert one_error_line(leveled).startswith("--level 2: jpeg is a traditional codec without rate levels")
    assert not target.exists()
    assert invoke(runner, module_host, "compress", str(crop_png), "--codec", "heif", "-o", str(target)).exit_code == 0
    latent = invoke(runner, module_host, "decompress", str(target), "--latent-only")
    assert one_error_line(latent) == (
        "heif has no latent: it is a Reconstruction-path anchor; decompress it without --latent-only")


# --- vtm: refusals without binaries, plumbing with stand-ins -----------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


COPY_ARGUMENT = """
# copy the file after {source} to the file after {target}, as a codec with a lossless "bitstream" would
while [ $# -gt 0 ]; do
  case "$1" in {source}) src="$2"; shift 2;; {target}) dst="$2"; shift 2;; *) shift;; esac
done
cat "$src" > "$dst"
"""


def test_vtm_without_binaries_is_refused_in_one_line(runner: CliRunner, module_host: PluginHost, crop_png: Path,
                                                     tmp_path: Path) -> None:
    result = invoke(runner, module_host, "compress", str(crop_png), "--codec", "vtm", "-o", str(tmp_path / "v.nk"))
    assert one_error_line(result).startswith(
        "vtm needs the VTM binaries: pass --codec-opt encoder=PATH/EncoderAppStatic and --codec-opt "
        "decoder=PATH/DecoderAppStatic (or set NECKKIT_VTM_ENCODER / NECKKIT_VTM_DECODER)")
    missing = invoke(runner, module_host, "compress", str(crop_png), "--codec", "vtm", "--codec-opt",
                     f"encoder={tmp_path / 'EncoderAppStatic'}", "-o", str(tmp_path / "v.nk"))
    assert one_error_line(missing) == f"vtm: the VTM encoder {tmp_path / 'EncoderAppStatic'} does not exist"
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    with pytest.raises(NeckkitError, match=r"^vtm: the VTM decoder .*plain is not executable \(chmod \+x it\)$"):
        build(module_host, "vtm", decoder=str(plain))


@posix_only
def test_a_failing_vtm_encoder_is_one_line(runner: CliRunner, module_host: PluginHost, crop_png: Path,
                                           tmp_path: Path) -> None:
    encoder = script(tmp_path / "EncoderAppStatic", 'echo "Error: unknown option --frobnicate" >&2\nexit 3\n')
    result = invoke(runner, module_host, "compress", str(crop_png), "--codec", "vtm", "--codec-opt",
                    f"encoder={encoder}", "-o", str(tmp_path / "v.nk"))
    assert one_error_line(result) == (
        f"{crop_png}: vtm: the VTM encoder {encoder} failed (exit status 3): Error: unknown option --frobnicate")


@posix_only
def test_vtm_plumbing_round_trips_with_stand_in_binaries(runner: CliRunner, module_host: PluginHost,
                                                         crop: torch.Tensor, crop_png: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = script(tmp_path / "EncoderAppStatic", COPY_ARGUMENT.format(source="-i", target="-b"))
    decoder = script(tmp_path / "DecoderAppStatic", COPY_ARGUMENT.format(source="-b", target="-o"))
    target, output = tmp_path / "v.nk", tmp_path / "v.png"
    compressed = invoke(runner, module_host, "compress", str(crop_png), "--codec", "vtm", "--quality", "22",
                        "--codec-opt", f"encoder={encoder}", "-o", str(target), "--json")
    assert compressed.exit_code == 0, compressed.output
    nk = read_nk(target)
    assert (nk.options, len(nk.streams[0])) == ({"quality": 22}, 3 * 96 * 128)  # the stand-in "codes" 8-bit 4:4:4
    without = invoke(runner, module_host, "decompress", str(target), "-o", str(output))
    assert "NECKKIT_VTM_DECODER" in one_error_line(without)  # a file never names the decoder: the environment does
    monkeypatch.setenv("NECKKIT_VTM_DECODER", str(decoder))
    decompressed = invoke(runner, module_host, "decompress", str(target), "-o", str(output))
    assert decompressed.exit_code == 0, decompressed.output
    assert psnr(crop, load_image(output)) > 40  # only 8-bit YCbCr rounding in between
    write_nk(target, dataclasses.replace(nk, streams=(nk.streams[0][:1000],)))
    truncated = invoke(runner, module_host, "decompress", str(target), "-o", str(output))
    assert one_error_line(truncated) == (
        f"{target}: vtm decoding failed (ValueError: the VTM decoder wrote 1000 bytes, not the 36864 of a 128x96 "
        "8-bit 4:4:4 image)")


# --- hostile files -----------------------------------------------------------------------------------------

# `neckkit decompress FILE -o FILE.png` on each file, in one child process (RLIMIT_AS: an allocation from a lying
# header is a MemoryError, not the machine's memory), one JSON line per file; a crash ends the process.
DECODER_PROCESS = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
from typer.testing import CliRunner
from neckkit.cli.app import build_app
from neckkit.host.manager import PluginHost
host = PluginHost(env={})
host.load_builtins()
app, runner = build_app(host), CliRunner()
for path in sys.argv[1:]:
    print(json.dumps({"case": path, "status": "started"}), flush=True)
    result = runner.invoke(app, ["decompress", path, "-o", path + ".png"])
    status = "decoded" if result.exit_code == 0 else "error" if result.exception is None or isinstance(
        result.exception, SystemExit) else "other"
    print(json.dumps({"case": path, "status": status, "exit_code": result.exit_code, "stderr": result.stderr,
                      "detail": repr(result.exception)}), flush=True)
"""


def hostile_variants(nk: NkFile, other_stream: bytes) -> dict[str, NkFile]:
    """Crafted files from a valid one: damaged streams and headers that lie."""
    stream, rng = nk.streams[0], random.Random(0)
    flipped = bytearray(stream)
    for index in rng.sample(range(16, len(flipped)), 8):
        flipped[index] ^= 0xFF

    def with_(**fields: object) -> NkFile:
        return dataclasses.replace(nk, **fields)

    return {
        "truncated": with_(streams=(stream[: len(stream) // 2],)),
        "header-only": with_(streams=(stream[:40],)),
        "random-bytes": with_(streams=(rng.randbytes(len(stream)),)),
        "empty-stream": with_(streams=(b"",)),
        "bits-flipped": with_(streams=(flipped,)),
        "another-format": with_(streams=(other_stream,)),
        "huge-original-size": with_(original_size=(60000, 60000)),
        "other-original-size": with_(original_size=(95, 128)),
        "two-streams": with_(streams=(stream, stream)),
        "padded": with_(padding=(1, 0, 0, 0)),
        "a-path-in-options": with_(options={"quality": 50, "decoder": "/bin/sh"}),
        "quality-out-of-range": with_(options={"quality": 1000}),
    }


def jpeg_declaring(height: int, width: int, stream: bytes) -> bytes:
    """``stream`` (a baseline JPEG) with its SOF0 header rewritten to declare ``height`` x ``width``."""
    at = stream.index(b"\xff\xc0") + 5
    return stream[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + stream[at + 4:]


def test_hostile_anchor_files_are_refused_in_one_line_never_a_crash(module_host: PluginHost, crop: torch.Tensor,
                                                                     tmp_path: Path) -> None:
    files: dict[str, Path] = {}
    jpeg_stream = encode_image(build(module_host, "jpeg", quality=50), crop).streams[0]
    for name in ANCHORS:
        nk = encode_image(build(module_host, name, quality=50), crop)
        other = jpeg_stream if name != "jpeg" else encode_image(build(module_host, "webp"), crop).streams[0]
        for kind, crafted in hostile_variants(nk, other).items():
            files[f"{name}/{kind}"] = tmp_path / f"{name}-{kind}.nk"
            write_nk(files[f"{name}/{kind}"], crafted)
    jpeg = encode_image(build(module_host, "jpeg", quality=50), crop)
    files["jpeg/stream-declares-huge"] = tmp_path / "jpeg-stream-declares-huge.nk"
    write_nk(files["jpeg/stream-declares-huge"],
             dataclasses.replace(jpeg, streams=(jpeg_declaring(10000, 10000, jpeg.streams[0]),)))
    by_path = {str(path): case for case, path in files.items()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", DECODER_PROCESS, *by_path], capture_output=True, text=True,
                          timeout=600, env=env)
    outcomes = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = {row["case"]: row for row in outcomes if row["status"] != "started"}
    if done.returncode != 0:
        last = outcomes[-1]["case"] if outcomes else "before the first case"
        pytest.fail(f"the decoding process died (status {done.returncode}) on {by_path.get(last, last)}: "
                    f"{done.stderr[-500:]}")
    assert set(finished) == set(by_path)
    detail = {}
    for path, row in finished.items():
        case = by_path[path]
        if row["status"] == "decoded":  # a damaged stream that still decodes must give the image the header promises
            assert load_image(path + ".png").shape == (1, 3, 96, 128) and case.endswith("/bits-flipped"), (case, row)
            continue
        assert row["status"] == "error", (case, row)
        lines = row["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {path}"), (case, row)
        detail[case] = lines[0]
    assert detail["avif/huge-original-size"].endswith(
        "declares a 60000x60000 image, more than the 67108864 pixels neckkit decodes; raise NECKKIT_MAX_IMAGE_PIXELS "
        "to decode it")
    assert detail["jpeg/stream-declares-huge"].endswith(
        "the jpeg stream declares a 10000x10000 image, but the header says 128x96")  # 100 Mpx: Pillow warns, silenced
    assert "an image codec's file records only quality" in detail["heif/a-path-in-options"]
    assert "quality: Input should be less than or equal to 100" in detail["webp/quality-out-of-range"]
    assert "not a valid jxl stream" in detail["jxl/another-format"]
