"""VVC intra through the VTM reference software's own binaries (``EncoderAppStatic``, ``DecoderAppStatic``).

VTM is not on any package registry: build it (https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM) and give
the binaries by path, as CompressAI and CompressAI-Vision do: options ``encoder``, ``decoder`` and ``config``
(e.g. VTM's ``cfg/encoder_intra_vtm.cfg``), or the variables :data:`ENCODER_ENV`, :data:`DECODER_ENV`,
:data:`CONFIG_ENV` (a ``.nk`` file never names a path, so ``neckkit decompress`` finds the decoder there).
Images go in as 8-bit full-range YCbCr 4:4:4 (BT.601, as CompressAI's bench); ``quality`` is VTM's QP.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neckkit.errors import NeckkitError
from neckkit.interfaces.image_codec import ImageCodec

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["CONFIG_ENV", "DECODER_ENV", "ENCODER_ENV", "VtmCodec", "build_vtm"]

ENCODER_ENV, DECODER_ENV, CONFIG_ENV = "NECKKIT_VTM_ENCODER", "NECKKIT_VTM_DECODER", "NECKKIT_VTM_CONFIG"
ENCODE_TIMEOUT = 3600.0  # seconds: VTM intra takes tens of seconds per image at its default presets
DECODE_TIMEOUT = 120.0
KR, KB = 0.299, 0.114  # BT.601 luma weights
NEEDS_BINARIES = (
    "vtm needs the VTM binaries: pass --codec-opt encoder=PATH/EncoderAppStatic and --codec-opt "
    f"decoder=PATH/DecoderAppStatic (or set {ENCODER_ENV} / {DECODER_ENV}); build them from "
    "https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM (docs/traditional-codecs.md)"
)


def _binary(path: str | None, what: str) -> Path | None:
    """``path`` if it names an executable file, else one NeckkitError line."""
    if not path:
        return None
    binary = Path(path).expanduser()
    if not binary.is_file():
        raise NeckkitError(f"vtm: the VTM {what} {binary} does not exist" if not binary.exists()
                           else f"vtm: the VTM {what} {binary} is not a file")
    if not os.access(binary, os.X_OK):
        raise NeckkitError(f"vtm: the VTM {what} {binary} is not executable (chmod +x it)")
    return binary


def _digest(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path is not None else "none"


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """[3, H, W] RGB in [0, 1] -> full-range YCbCr planes in [0, 1]."""
    red, green, blue = rgb
    luma = KR * red + (1 - KR - KB) * green + KB * blue
    return np.stack([luma, 0.5 * (blue - luma) / (1 - KB) + 0.5, 0.5 * (red - luma) / (1 - KR) + 0.5])


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    luma, cb, cr = ycbcr
    red = luma + (2 - 2 * KR) * (cr - 0.5)
    blue = luma + (2 - 2 * KB) * (cb - 0.5)
    green = (luma - KR * red - KB * blue) / (1 - KR - KB)
    return np.clip(np.stack([red, green, blue]), 0, 1)


def _limit_output(limit: int) -> None:
    """In the decoder's process: no file larger than ``limit`` bytes (a hostile stream cannot fill the disk)."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _run(command: list[str], what: str, timeout: float, output_limit: int | None = None) -> None:
    """Run a VTM binary; a failure, a signal or a timeout is one NeckkitError line."""
    limit = (lambda: _limit_output(output_limit)) if output_limit is not None and os.name == "posix" else None
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, preexec_fn=limit, check=False)
    except subprocess.TimeoutExpired:
        raise NeckkitError(f"vtm: the VTM {what} {command[0]} did not finish within {timeout:g} s") from None
    except OSError as error:
        raise NeckkitError(f"vtm: cannot run the VTM {what} {command[0]}: {error.strerror or error}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        said = f": {lines[-1].strip()[:200]}" if lines else ""
        status = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        raise NeckkitError(f"vtm: the VTM {what} {command[0]} failed ({status}){said}")


class VtmCodec(ImageCodec):
    """VVC intra (VTM), 4:4:4; ``quality`` is the QP: 0 (most bits) to 63 (fewest)."""

    name = "vtm"
    quality_range = (0, 63)
    higher_quality_more_bits = False
    default_quality = 37  # the highest QP of the common test conditions (22, 27, 32, 37)

    def __init__(self, quality: int | None = None, encoder: str | None = None, decoder: str | None = None,
                 config: str | None = None) -> None:
        encoder = encoder or os.environ.get(ENCODER_ENV) or None
        decoder = decoder or os.environ.get(DECODER_ENV) or None
        config = config or os.environ.get(CONFIG_ENV) or None
        if encoder is None and decoder is None:
            raise NeckkitError(NEEDS_BINARIES)
        self.encoder, self.decoder = _binary(encoder, "encoder"), _binary(decoder, "decoder")
        self.config = Path(config).expanduser() if config else None
        if self.config is not None and not self.config.is_file():
            raise NeckkitError(f"vtm: the VTM config {self.config} is not a file (e.g. VTM's cfg/encoder_intra_vtm.cfg)")
        super().__init__(quality)

    @property
    def library(self) -> str:
        return f"vtm encoder {_digest(self.encoder)} config {_digest(self.config)}"

    def _need(self, what: str) -> Path:
        binary = self.encoder if what == "encoder" else self.decoder
        if binary is None:
            flag = "encoder=PATH/EncoderAppStatic" if what == "encoder" else "decoder=PATH/DecoderAppStatic"
            env = ENCODER_ENV if what == "encoder" else DECODER_ENV
            raise NeckkitError(f"vtm: no VTM {what} was given: pass --codec-opt {flag} or set {env}")
        return binary

    def encode(self, x: Tensor) -> bytes:
        encoder = self._need("encoder")
        rgb = x.detach().float().clamp(0, 1)[0].cpu().numpy()  # [3, H, W]
        height, width = rgb.shape[-2:]
        planes = np.round(rgb_to_ycbcr(rgb) * 255).clip(0, 255).astype(np.uint8)  # [3, H, W]: Y, Cb, Cr
        with tempfile.TemporaryDirectory(prefix="neckkit-vtm-") as folder:
            source, bitstream = Path(folder) / "input.yuv", Path(folder) / "output.bin"
            source.write_bytes(planes.tobytes())
            command = [str(encoder), "-i", str(source)] + (["-c", str(self.config)] if self.config else [])
            command += ["-q", str(self.quality), "-o", os.devnull, "-b", str(bitstream), "-wdt", str(width),
                        "-hgt", str(height), "-fr", "1", "-f", "1", "--InputChromaFormat=444", "--InputBitDepth=8",
                        "--ConformanceWindowMode=1"]
            _run(command, "encoder", ENCODE_TIMEOUT)
            if not bitstream.is_file():
                raise NeckkitError(f"vtm: the VTM encoder {encoder} wrote no bitstream")
            return bitstream.read_bytes()

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> Tensor:
        import torch

        decoder = self._need("decoder")
        if size is None:
            raise NeckkitError("vtm: decoding needs the image size (VTM writes raw YUV); pass size=(height, width)")
        height, width = size
        expected = 3 * height * width  # 8-bit 4:4:4
        with tempfile.TemporaryDirectory(prefix="neckkit-vtm-") as folder:
            bitstream, output = Path(folder) / "input.bin", Path(folder) / "output.yuv"
            bitstream.write_bytes(data)
            _run([str(decoder), "-b", str(bitstream), "-o", str(output), "-d", "8"], "decoder", DECODE_TIMEOUT,
                 output_limit=expected + 1)
            written = output.stat().st_size if output.is_file() else 0
            if written != expected:
                raise ValueError(f"the VTM decoder wrote {written} bytes, not the {expected} of a {width}x{height} "
                                 "8-bit 4:4:4 image")
            planes = np.fromfile(output, dtype=np.uint8).reshape(3, height, width).astype(np.float32) / 255
        return torch.from_numpy(ycbcr_to_rgb(planes).astype(np.float32)).unsqueeze(0)  # [1, 3, H, W]


def build_vtm(quality: int | None = None, tiny: bool = False, encoder: str | None = None, decoder: str | None = None,
              config: str | None = None) -> VtmCodec:
    """The factory of ``vtm``; ``tiny`` changes nothing (there are no weights)."""
    return VtmCodec(quality, encoder=encoder, decoder=decoder, config=config)
