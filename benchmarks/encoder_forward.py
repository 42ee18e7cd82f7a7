"""Forward time of a real-size encoder (random weights): full forward vs. entering at block 2.

    python benchmarks/encoder_forward.py --encoder clip-l --batch 1 8 --repeats 5

Prints one row per batch size: median seconds of ``encode(pixels)`` (patch embedding and every
block) and of ``encode_from(tokens, entry_layer)`` (what runs after a transform-neck), measured
interleaved in one process.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from neckkit.host.manager import PluginHost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="clip-l")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    host = PluginHost()
    host.load()
    encoder = host.components("encoder").get(args.encoder).build(random_init=True).eval()
    entry = encoder.entry_layer
    print(f"{args.encoder}, random weights, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"| batch | full forward (s) | from block {entry} (s) | saved |")
    print("|---|---|---|---|")
    for batch in args.batch:
        pixels = encoder.preprocess(torch.rand(batch, 3, encoder.image_size, encoder.image_size))
        with torch.inference_mode():
            tokens = encoder.blocks(encoder.embed(pixels), 0, entry)  # stands in for the neck's output
            encoder.encode(pixels)  # warm-up
            full, resumed = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                encoder.encode(pixels)
                full.append(time.perf_counter() - start)
                start = time.perf_counter()
                encoder.encode_from(tokens, entry)
                resumed.append(time.perf_counter() - start)
        f, r = statistics.median(full), statistics.median(resumed)
        print(f"| {batch} | {f:.3f} | {r:.3f} | {100 * (1 - r / f):.1f} % |")


if __name__ == "__main__":
    main()
