"""Encode, latent-only decode and full decode time and bit rates of codecs at one image size.

    python benchmarks/codec_speed.py --codec elic tic --size 512 768 --repeats 3 [--image photo.png]

Real-size codecs with seeded random weights unless --codec-opt weights=FILE is given. Without
--image the input is smooth synthetic content (bicubic-upsampled noise). Prints a Markdown table:
median seconds of compress (analysis + entropy coding), decompress_latent (entropy decoding only:
what the machine path needs before the neck) and decompress_latent + synthesize (the human path),
with the real payload bpp and the estimated bpp from the likelihoods.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from neckkit.bitstream.images import load_image
from neckkit.bitstream.padding import pad_to_multiple
from neckkit.cli.components import build_component, parse_component_options
from neckkit.host.manager import PluginHost
from neckkit.interfaces import estimated_bits


def timed(function, repeats: int):
    results, seconds = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        results = function()
        seconds.append(time.perf_counter() - start)
    return results, statistics.median(seconds)


@torch.no_grad()
def measure(name: str, codec: torch.nn.Module, x: torch.Tensor, repeats: int) -> str:
    """One table row for ``codec`` on image ``x``."""
    padded, _ = pad_to_multiple(x, codec.pad_multiple)
    payload, encode = timed(lambda: codec.compress(padded), repeats)
    _, latent = timed(lambda: codec.decompress_latent(payload), repeats)
    _, full = timed(lambda: codec.synthesize(codec.decompress_latent(payload)), repeats)
    estimated = float(estimated_bits(codec.analyze(padded).likelihoods))
    pixels = x.shape[-2] * x.shape[-1]
    return (f"| {name} | {encode:.2f} | {latent:.3f} | {full:.2f} | {payload.num_bytes * 8 / pixels:.4f} | "
            f"{estimated / pixels:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", nargs="+", default=["elic", "tic"])
    parser.add_argument("--size", type=int, nargs=2, default=[512, 768], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--image", help="an image file instead of synthetic content")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codec-opt", action="append", default=[], help="factory option name=value")
    args = parser.parse_args()

    if args.image:
        x = load_image(args.image)
    else:
        generator = torch.Generator().manual_seed(0)
        x = F.interpolate(torch.rand(1, 3, args.size[0] // 32, args.size[1] // 32, generator=generator),
                          size=tuple(args.size), mode="bicubic", align_corners=False).clamp(0, 1)
    host = PluginHost()
    host.load()
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"image {x.shape[-1]}x{x.shape[-2]}")
    print("| codec | encode (s) | latent-only decode (s) | full decode (s) | payload bpp | estimated bpp |")
    print("|---|---|---|---|---|---|")
    for name in args.codec:
        options = parse_component_options(args.codec_opt) or {"random_init": True}
        _, codec = build_component(host, "codec", name, options)
        print(measure(name, codec.eval(), x, args.repeats))

if __name__ == "__main__":
    main()
