"""How far neckkit's default preprocessing is from the authors' (``--preprocess paper``), on the bundled photos.

    python benchmarks/preprocess_diff.py [--encoder clip-l] [--random-init] [--images DIR] [--out preprocess_diff.json]

For each photo: the 256x256 crop both ways (training: PIL bilinear vs tensor bicubic; evaluation: PIL
bicubic vs tensor bicubic), as mean and max absolute pixel difference in 8-bit steps, then the
encoder's final embedding of each crop, each under its own pipeline's encoder resize (clamped for
neckkit, unclamped for paper): cosine similarity and MSE relative to the embedding's mean square.
``--tiny`` (the default) or ``--random-init`` weights only, offline: with trained CLIP weights
(``--encoder-weights``) the embedding figures are the ones that matter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="clip-l")
    parser.add_argument("--random-init", action="store_true", help="real-size random weights instead of tiny")
    parser.add_argument("--encoder-weights", help="a hub id or local folder (trained weights)")
    parser.add_argument("--images", type=Path, help="an image folder (default: the bundled photos)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from neckkit.cli.components import component_options
    from neckkit.config.paper import DataConfig
    from neckkit.host.manager import PluginHost
    from neckkit.host.options import build_component
    from neckkit.interfaces.preprocess import preprocessing
    from neckkit.training.data import open_image_set

    options = component_options(None, weights=args.encoder_weights, tiny=not (args.random_init or args.encoder_weights),
                                random_init=args.random_init)
    name, encoder = build_component(PluginHost().load(), "encoder", args.encoder, options)
    encoder.eval()
    figures: dict[str, Any] = {"encoder": name, "options": {k: str(v) for k, v in options.items()}, "splits": {}}
    for split in ("train", "eval"):
        ours = open_image_set(args.images, DataConfig(), split=split)
        paper = open_image_set(args.images, DataConfig(preprocess="paper"), split=split)
        rows = []
        for index in range(len(ours)):
            a, b = ours[index], paper[index]
            if a is None or b is None:
                continue
            mine, theirs = a[0].unsqueeze(0), b[0].unsqueeze(0)  # [1, 3, 256, 256]
            with torch.no_grad():
                with preprocessing("neckkit"):
                    e_mine = encoder.encode(encoder.preprocess(mine)).float()
                with preprocessing("paper"):
                    e_theirs = encoder.encode(encoder.preprocess(theirs)).float()
            rows.append({
                "image": Path(ours.paths[index]).name,
                "pixel_mean_abs_255": round(float((mine - theirs).abs().mean()) * 255, 3),
                "pixel_max_abs_255": round(float((mine - theirs).abs().max()) * 255, 1),
                "embedding_cosine": round(float(F.cosine_similarity(e_mine, e_theirs)), 6),
                "embedding_relative_mse": float(F.mse_loss(e_mine, e_theirs) / e_mine.pow(2).mean()),
            })
        figures["splits"][split] = {
            "rows": rows,
            "mean_cosine": round(statistics.mean(r["embedding_cosine"] for r in rows), 6),
            "mean_relative_mse": statistics.mean(r["embedding_relative_mse"] for r in rows),
            "mean_pixel_abs_255": round(statistics.mean(r["pixel_mean_abs_255"] for r in rows), 3),
        }
        print(f"{split}: {'PIL bilinear' if split == 'train' else 'PIL bicubic'} vs tensor bicubic crops")
        print("| image | mean abs (/255) | max abs (/255) | embedding cosine | relative MSE |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['image']} | {r['pixel_mean_abs_255']} | {r['pixel_max_abs_255']} | {r['embedding_cosine']} | "
                  f"{r['embedding_relative_mse']:.2e} |")
        print()
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
