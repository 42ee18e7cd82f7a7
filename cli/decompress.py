"""``neckkit decompress``: a ``.nk`` bitstream back to an image (the human path), or only its latent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from neckkit.bitstream.decoding import MAX_DECODE_PIXELS  # noqa: F401  (imported from here before)
from neckkit.cli.inputs import check_component, check_file, check_image_output, check_neck, check_nk_file
from neckkit.cli.report import announce_placeholders, building, print_table, stage
from neckkit.errors import NeckkitError, UsageError
from neckkit.host.options import build_recorded


def check_geometry(nk: Any, codec: Any, source: str) -> None:
    """Refuse a header whose sizes cannot come from this codec (now :func:`~neckkit.bitstream.decoding.check_plausible`)."""
    from neckkit.bitstream.decoding import check_plausible

    check_plausible(nk, codec, source=source)


def decompress_image(host: Any, file: Path, nk: Any, output: Path | None, *, latent_only: bool,
                     codec_weights: Path | None, as_json: bool) -> None:
    """Decode an image codec's file (JPEG, AVIF...: its own bytes in the .nk) to ``output``; no latent exists."""
    from neckkit.bitstream.image_files import recorded_options

    name = nk.codec
    if latent_only:
        raise UsageError(f"{name} has no latent: it is a Reconstruction-path anchor; decompress it without --latent-only")
    if codec_weights is not None:
        raise UsageError(f"--codec-weights: {name} has no weights; drop it")
    options = recorded_options(nk, source=str(file))
    show = not as_json
    with stage(building("codec", name, options), show):
        from neckkit.bitstream.image_files import decode_image
        from neckkit.bitstream.images import save_image

        try:
            name, codec = build_recorded(host, "codec", name, options, f"{file}'s header")
        except NeckkitError as error:  # e.g. a quality outside the codec's range, or vtm without its decoder
            raise NeckkitError(f"{file}: {error}") from None
    with stage(f"decoding {file}", show):
        start = time.perf_counter()
        x_hat = decode_image(codec, nk, source=str(file), name=name)  # header and size checks, then the library
        result: dict[str, Any] = {"file": str(file), "codec": name, "quality": codec.quality,
                                  "decode_seconds": time.perf_counter() - start}
        result["output"] = str(save_image(x_hat, output))
        result["height"], result["width"] = nk.original_size
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_table(["field", "value"], [[key, f"{value:.3f}" if isinstance(value, float) else str(value)]
                                         for key, value in result.items()])


def decompress(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A .nk file written by neckkit compress.", show_default=False),
    output: Path | None = typer.Option(None, "--output", "-o", help="Image to write (.png, .jpg, ...)."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="The codec weights used to compress."),
    latent_only: bool = typer.Option(False, "--latent-only", help="Entropy-decode the latent only; no synthesis."),
    neck: Path | None = typer.Option(None, "--neck", help="Use the codec of this neck checkpoint (d2/d3 train it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Decode a .nk file: reconstruct the image for human viewing, or with --latent-only just the latent."""
    from neckkit.bitstream.container import check_codec, read_nk, stream_fingerprint

    if output is None and not latent_only:
        raise UsageError("pass -o IMAGE.png for the reconstruction, or --latent-only")
    # The file, its codec's name and the other paths first: a mistake is reported before torch or a model loads.
    check_image_output(None if latent_only else output)
    check_nk_file(file)
    nk = read_nk(file)
    if neck is not None:
        check_neck(neck)
    else:
        component = check_component(ctx.obj.host, "codec", nk.codec)
        if component.info.image_codec:
            decompress_image(ctx.obj.host, file, nk, output, latent_only=latent_only,
                             codec_weights=codec_weights, as_json=as_json)
            return
    check_file(codec_weights, "--codec-weights")

    show = not as_json
    with stage("loading torch", show):
        import torch

        from neckkit.bitstream.decoding import decode_latent
        from neckkit.bitstream.images import save_image
        from neckkit.bitstream.padding import Padding, crop_padding

    weights = str(codec_weights) if codec_weights is not None else None
    with stage(f"loading the codec of {neck}" if neck is not None else building("codec", nk.codec, nk.options), show):
        if neck is not None:
            from neckkit.cli.compress import neck_codec

            name, codec, _ = neck_codec(ctx.obj.host, neck, nk.codec, weights)
        else:
            # The header names the codec: its options, never a path or a download; the given weights
            # replace the random init they may name.
            name, codec = build_recorded(ctx.obj.host, "codec", nk.codec, nk.options, f"{file}'s header", weights=weights)
        codec.eval()
        codec_fingerprint = stream_fingerprint(codec)
    check_codec(nk, name, codec_fingerprint, source=str(file))
    result: dict[str, Any] = {"file": str(file), "codec": name, "synthesis": not latent_only}
    with torch.no_grad(), stage(f"entropy-decoding {file}", show) as show_step:
        start = time.perf_counter()
        y_hat = decode_latent(codec, nk, source=str(file))  # header checks, then the bounded decoder
        result["latent_seconds"] = time.perf_counter() - start
        result["latent_shape"] = list(y_hat.shape)
        if not latent_only:
            show_step(f"synthesizing {output}")
            start = time.perf_counter()
            x_hat = crop_padding(codec.synthesize(y_hat), Padding(*nk.padding))
            result["synthesis_seconds"] = time.perf_counter() - start
            result["output"] = str(save_image(x_hat, output))
            result["height"], result["width"] = nk.original_size
    announce_placeholders()  # decoded: a hostile file's error stays one line
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_table(
            ["field", "value"],
            [[key, f"{value:.3f}" if isinstance(value, float) else str(value)] for key, value in result.items()],
        )
