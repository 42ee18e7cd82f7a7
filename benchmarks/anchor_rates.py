"""The rate range of each traditional anchor on the bundled photos: bpp and PSNR at its lowest and highest quality.

    python benchmarks/anchor_rates.py [--codecs jpeg,webp,avif,heif,jxl] [--qualities 0,25,50,75,100] [--json]

Each photo is coded whole through the same path as ``neckkit compress`` (:func:`neckkit.bitstream.image_files.encode_image`,
then the ``.nk`` container) and decoded back through :func:`~neckkit.bitstream.image_files.decode_image`. ``payload bpp``
counts the codec's own file bytes, ``file bpp`` the whole ``.nk`` file. ``vtm`` runs too when ``NECKKIT_VTM_ENCODER``
and ``NECKKIT_VTM_DECODER`` are set (slow: tens of seconds per image). docs/traditional-codecs.md quotes the output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

ANCHORS = ("jpeg", "webp", "avif", "heif", "jxl")


def psnr(x, x_hat) -> float:  # noqa: ANN001  (tensors [1, 3, H, W] in [0, 1])
    """PSNR in dB of 8-bit images (inf when equal)."""
    mse = float((((x * 255).round() - (x_hat.clamp(0, 1) * 255).round()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def measure(host, name: str, quality: int, photo) -> dict:  # noqa: ANN001
    """Code one photo at one quality; its rates, PSNR and times."""
    from neckkit.bitstream.image_files import decode_image, encode_image
    from neckkit.bitstream.images import load_image
    from neckkit.bitstream.nk_format import decode_nk, encode_nk
    from neckkit.bitstream.rate import bpp
    from neckkit.host.options import build_component

    _, codec = build_component(host, "codec", name, {"quality": quality})
    x = load_image(photo)
    start = time.perf_counter()
    nk = decode_nk(encode_nk(encode_image(codec, x)))
    encoded = time.perf_counter()
    x_hat = decode_image(codec, nk)
    rates = bpp(nk)
    return {"codec": name, "quality": quality, "photo": photo.name, "payload_bpp": rates.payload_bpp,
            "file_bpp": rates.file_bpp, "psnr": psnr(x, x_hat), "encode_s": encoded - start,
            "decode_s": time.perf_counter() - encoded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    with_vtm = os.environ.get("NECKKIT_VTM_ENCODER") and os.environ.get("NECKKIT_VTM_DECODER")
    parser.add_argument("--codecs", default=",".join(ANCHORS + (("vtm",) if with_vtm else ())))
    parser.add_argument("--qualities", default=None, help="qualities to code at (default: each codec's lowest and "
                        "highest)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()

    from neckkit.host.manager import PluginHost
    from neckkit.host.options import build_component
    from neckkit.samples import sample_images

    host = PluginHost(env={})
    host.load_builtins()
    rows = []
    for name in args.codecs.split(","):
        low, high = build_component(host, "codec", name, {})[1].quality_range
        qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else [low, high]
        for quality in qualities:
            for photo in sample_images():
                rows.append(measure(host, name, quality, photo))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'codec':6} {'quality':>7} {'photo':14} {'payload bpp':>11} {'file bpp':>9} {'PSNR dB':>8} "
          f"{'encode s':>8} {'decode s':>8}")
    for row in rows:
        print(f"{row['codec']:6} {row['quality']:>7} {row['photo']:14} {row['payload_bpp']:>11.4f} "
              f"{row['file_bpp']:>9.4f} {row['psnr']:>8.2f} {row['encode_s']:>8.3f} {row['decode_s']:>8.3f}")
    print("\nrange per codec (payload bpp over the photos, lowest quality .. highest quality):")
    for name in dict.fromkeys(row["codec"] for row in rows):
        mine = [row for row in rows if row["codec"] == name]
        print(f"  {name}: {min(r['payload_bpp'] for r in mine):.3f} .. {max(r['payload_bpp'] for r in mine):.3f} bpp")


if __name__ == "__main__":
    main()
