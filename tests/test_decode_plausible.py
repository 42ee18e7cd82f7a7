"""decode_latent: a header the codec cannot have written is refused, naming the field, before any decoding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from neckkit.bitstream.decoding import check_plausible, decode_latent, min_bits_per_value
from neckkit.bitstream.nk_format import NkFile, decode_nk, encode_nk
from neckkit.bitstream.padding import pad_to_multiple
from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost


@pytest.fixture(scope="module")
def codecs() -> dict[str, torch.nn.Module]:
    host = PluginHost(env={})
    host.load_builtins()
    registry = host.components("codec")
    return {name: registry.get(name).build(tiny=True).eval() for name in ("tic", "bmshj2018-hyperprior")}


def _file(codec: torch.nn.Module, height: int = 100, width: int = 150) -> NkFile:
    torch.manual_seed(0)
    image = torch.rand(1, 3, height, width)
    padded, padding = pad_to_multiple(image, codec.pad_multiple)
    payload = codec.compress(padded)
    nk = NkFile.from_payload(payload, codec="tic", fingerprint="0" * 16, original_size=(height, width), padding=padding)
    return decode_nk(encode_nk(nk))


@pytest.mark.parametrize("name", ["tic", "bmshj2018-hyperprior"])
def test_a_valid_file_decodes_to_the_codecs_own_latent(codecs, name: str) -> None:
    codec = codecs[name]
    nk = _file(codec)
    expected = codec.decompress_latent(nk.to_payload())
    y_hat = decode_latent(codec, nk, source="photo.nk")
    assert torch.equal(y_hat, expected)
    assert y_hat.shape == (1, codec.latent_channels, 128 // 16, max(192, codec.pad_multiple * 2) // 16)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": (3, 4)}, r"photo.nk: shape \[3, 4\] is not the \[2, 4\] the codec writes for a 256x128 image"),
        ({"shape": (0, 0)}, r"shape \[0, 0\] is not the"),
        ({"padding": (1, 1, 14, 14)}, r"padding \[1, 1, 14, 14\] does not pad 150x100 to a multiple of 128"),
        ({"padding": (128, 106, 14, 14)}, r"padding \[128, 106, 14, 14\] does not pad"),
        ({"original_size": (20000, 20000)}, r"original_size \[20000, 20000\] .* more than the 268435456 pixels"),
        ({"original_size": (300, 1048576), "padding": (0, 0, 42, 42)}, r"declares a 1048576x384 image, more than"),
    ],
    ids=["shape", "zero-shape", "padding", "padding-over-a-multiple", "pixels", "one-wide-row"],
)
def test_a_header_the_codec_cannot_have_written_is_refused(codecs, change, message: str) -> None:
    nk = dataclasses.replace(_file(codecs["tic"]), **change)
    with pytest.raises(NeckkitError, match=message) as caught:
        decode_latent(codecs["tic"], nk, source="photo.nk")
    assert "\n" not in str(caught.value)


def test_a_small_file_cannot_ask_for_a_huge_decode(codecs) -> None:
    codec = codecs["tic"]
    nk = dataclasses.replace(_file(codec), original_size=(16384, 16384), padding=(0, 0, 0, 0), shape=(256, 256),
                             streams=(b"\x01" * 8, b"\x02" * 8))
    bits = min_bits_per_value(codec)
    assert bits is not None and 0 < bits < 16
    with pytest.raises(NeckkitError, match=r"original_size \[16384, 16384\] implies 25165824 latent values, but "
                                           r"16 payload bytes can hold at most \d+"):
        check_plausible(nk, codec, source="photo.nk")


def test_a_stream_too_short_for_the_declared_image_is_refused_by_the_decoder(codecs) -> None:
    codec = codecs["tic"]  # 1024x1024 declared with a consistent shape and 2-byte streams (a 166-byte attack file)
    nk = dataclasses.replace(_file(codec), original_size=(1024, 1024), padding=(0, 0, 0, 0), shape=(16, 16),
                             streams=(b"\x01\x02", b"\x01\x02"))
    with pytest.raises(NeckkitError, match=r"photo.nk: entropy decoding failed: a 2-byte stream cannot hold"):
        decode_latent(codec, nk, source="photo.nk")


def test_a_lower_pixel_limit_is_honoured(codecs) -> None:
    nk = _file(codecs["tic"])
    with pytest.raises(NeckkitError, match="more than the 10000 pixels"):
        decode_latent(codecs["tic"], nk, max_pixels=10_000)


class _Opaque(torch.nn.Module):
    """A third-party-style codec: no payload_shape, its own decoder."""

    latent_channels, stride, pad_multiple = 4, 16, 64

    def __init__(self, result: object = None, skip: bool = False) -> None:
        super().__init__()
        self.result = result
        self.codes_every_latent_value = not skip

    def payload_shape(self, height: int, width: int) -> None:
        return None

    def decompress_latent(self, payload):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def _opaque_file(shape: tuple[int, ...] = (1, 1)) -> NkFile:
    return NkFile(codec="opaque", fingerprint="0" * 16, original_size=(64, 64), padding=(0, 0, 0, 0), shape=shape,
                  streams=(b"\x00" * 8,))


def test_a_codec_that_cannot_tell_its_shape_gets_the_generic_checks() -> None:
    codec = _Opaque(torch.zeros(1, 4, 4, 4))
    assert decode_latent(codec, _opaque_file()).shape == (1, 4, 4, 4)
    for shape in [(), (0, 1), (65, 1)]:
        with pytest.raises(NeckkitError, match=r"shape .* does not fit a 64x64 image"):
            decode_latent(codec, _opaque_file(shape))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (RuntimeError("Only zero batch or zero channel inputs\nare supported"),
         r"^f.nk: entropy decoding failed \(RuntimeError: Only zero batch or zero channel inputs are supported\)$"),
        (NeckkitError("payload has 3 streams"), r"^f.nk: entropy decoding failed: payload has 3 streams$"),
        (torch.zeros(1, 4, 8, 4), r"decoded a latent of shape \[1, 4, 8, 4\], expected \[1, 4, 4, 4\]"),
        (torch.full((1, 4, 4, 4), float("nan")), "not finite"),
    ],
    ids=["runtime-error", "neckkit-error", "wrong-shape", "nan"],
)
def test_whatever_the_codec_does_the_user_gets_one_neckkit_line(result, message: str) -> None:
    with pytest.raises(NeckkitError, match=message):
        decode_latent(_Opaque(result), _opaque_file(), source="f.nk")
