"""``neckkit compress``: images to ``.nk`` bitstreams, with real and estimated bit rates."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import build_component, component_options, stored_options
from neckkit.cli.inputs import check_component, check_file, check_images, check_neck
from neckkit.cli.report import announce_placeholders, building, print_table, progress, stage
from neckkit.errors import NeckkitError, UsageError

NK_SUFFIX = ".nk"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Image files as given, folders replaced by the images inside them."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            from neckkit.bitstream.images import find_images  # imports torch: only for a folder

            found = find_images(item)
            if not found:
                raise NeckkitError(f"folder {item} holds no images")
            paths.extend(found)
        else:
            paths.append(item)
    return paths


def output_paths(images: list[Path], output: Path) -> list[Path]:
    """One ``.nk`` path per image: ``output`` itself for one image, else files inside the folder ``output``."""
    if len(images) == 1 and not output.is_dir() and not str(output).endswith(("/", "\\")):
        return [output]
    if output.exists() and not output.is_dir():
        raise NeckkitError(f"-o {output} must be a folder when compressing {len(images)} images")
    targets = [output / f"{image.stem}{NK_SUFFIX}" for image in images]
    seen: dict[Path, Path] = {}
    for image, target in zip(images, targets, strict=True):
        if target in seen:
            raise NeckkitError(f"{seen[target]} and {image} would both be written to {target}; compress them separately")
        seen[target] = image
    return targets


def neck_codec(host: Any, neck: Path, codec: str | None, weights: str | None) -> tuple[str, Any, dict[str, Any]]:
    """The codec a neck checkpoint was trained with (its weights restored), and its stored options."""
    from neckkit.neck.checkpoint import load_checkpoint
    from neckkit.serving.machine_path import codec_for_checkpoint

    checkpoint = load_checkpoint(neck)
    if codec is not None and codec != checkpoint.meta.codec.name:
        raise NeckkitError(f"codec {codec!r} is not the codec of the neck in {checkpoint.path}, {checkpoint.meta.codec.name!r}")
    name, model = codec_for_checkpoint(host, checkpoint, weights)
    return name, model, dict(checkpoint.meta.codec.options)


def check_level(codec: Any, name: str, level: float | None) -> None:
    """Refuse, before any image is read, a ``--level`` the codec cannot code at (one line)."""
    from neckkit.interfaces.codec import is_variable_rate

    if level is None:
        return
    if not is_variable_rate(codec):
        raise UsageError(f"--level {level:g}: codec {name!r} is fixed-rate and has no rate levels "
                         "(the variable-rate codecs end in -vbr: neckkit list-plugins)")
    try:
        codec.check_level(level)
    except NeckkitError as error:
        raise UsageError(f"--level {level:g}: {error}") from None


def compress_one(codec: Any, name: str, options: dict[str, Any], fingerprint: str, image: Path, target: Path,
                 level: float | None = None) -> dict[str, Any]:
    """Compress one image into ``target`` at rate ``level`` (variable-rate codecs) and measure its rates."""
    import torch

    from neckkit.bitstream.container import NkFile, bpp, write_nk
    from neckkit.bitstream.images import load_image
    from neckkit.bitstream.padding import pad_to_multiple
    from neckkit.interfaces import estimated_bits
    from neckkit.interfaces.codec import at_level, compress_with_analysis

    x = load_image(image)  # [1, 3, H, W]
    height, width = x.shape[-2:]
    padded, padding = pad_to_multiple(x, codec.pad_multiple)
    with torch.no_grad(), at_level(codec, level) as used:
        start = time.perf_counter()
        analysis = codec.analyze(padded)  # once: its likelihoods give the estimated rate, its latents the bytes
        payload = compress_with_analysis(codec, padded, analysis)
        encode_seconds = time.perf_counter() - start
        estimated = float(estimated_bits(analysis.likelihoods))
    nk = NkFile.from_payload(
        payload, codec=name, fingerprint=fingerprint, original_size=(height, width), padding=padding, options=options,
        level=used,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    write_nk(target, nk)
    rates = bpp(nk)
    return {
        "image": str(image),
        "output": str(target),
        "height": height,
        "width": width,
        "level": used,
        "file_bytes": rates.file_bytes,
        "payload_bytes": rates.payload_bytes,
        "file_bpp": rates.file_bpp,
        "payload_bpp": rates.payload_bpp,
        "estimated_bpp": estimated / rates.pixels,
        "encode_seconds": encode_seconds,
    }


def compress_image_one(codec: Any, name: str, image: Path, target: Path) -> dict[str, Any]:
    """Compress one image with an image codec (JPEG, AVIF...: its own file bytes in the .nk) and measure its rates."""
    from neckkit.bitstream.container import bpp, write_nk
    from neckkit.bitstream.image_files import encode_image
    from neckkit.bitstream.images import load_image

    x = load_image(image)  # [1, 3, H, W]
    start = time.perf_counter()
    nk = encode_image(codec, x, name=name)
    encode_seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    write_nk(target, nk)
    rates = bpp(nk)
    height, width = nk.original_size
    return {"image": str(image), "output": str(target), "height": height, "width": width, "level": None,
            "quality": codec.quality, "file_bytes": rates.file_bytes, "payload_bytes": rates.payload_bytes,
            "file_bpp": rates.file_bpp, "payload_bpp": rates.payload_bpp, "estimated_bpp": None,
            "encode_seconds": encode_seconds}


def check_image_codec_flags(name: str, level: float | None, neck: Path | None) -> None:
    """Refuse, before anything loads, what an image codec (no latent, no levels) cannot do."""
    if level is not None:
        raise UsageError(f"--level {level:g}: {name} is a traditional codec without rate levels; set its rate with "
                         "--quality (its range: neckkit list-plugins)")
    if neck is not None:
        raise UsageError(f"--neck: {name} has no latent, so no neck reads it; drop --neck or --codec {name}")


def compress(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files, or folders of images.", show_default=False),
    codec: str | None = typer.Option(None, "--codec", "-c", help="Registered codec name (see neckkit list-plugins)."),
    output: Path = typer.Option(..., "--output", "-o", help="The .nk file, or a folder for several images."),
    quality: int | None = typer.Option(None, "--quality", "-q", help="Codec quality with known weights."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="Codec state dict file."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init codec (tests, quick start)."),
    random_init: bool = typer.Option(False, "--random-init", help="Real-size codec with random weights."),
    codec_opt: list[str] | None = typer.Option(None, "--codec-opt", help="Other codec option, name=value."),
    neck: Path | None = typer.Option(None, "--neck", help="Use the codec of this neck checkpoint (d2/d3 train it)."),
    level: float | None = typer.Option(
        None, "--level", "-l", help="Rate level of a variable-rate codec: 0 (fewest bits) to its top level "
        "(the default); a fraction between two levels where the codec allows it. The .nk file records it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Compress images into .nk bitstreams; prints real (file), payload and estimated bits per pixel.

    An image codec (jpeg, webp, avif, heif, jxl, vtm) stores its own file bytes; it has no estimated rate.
    """
    from neckkit.bitstream.container import stream_fingerprint

    if neck is None and codec is None:
        raise UsageError("pass --codec NAME (or --neck CKPT to use a neck checkpoint's codec)")
    weights = str(codec_weights) if codec_weights is not None else None
    options = component_options(codec_opt, quality=quality, weights=weights, tiny=tiny, random_init=random_init)
    # Names, paths and kinds of files first: a mistake is reported before torch or a model loads.
    image_codec = False
    if codec is not None and ctx.obj.host.components("codec").get(codec).info.image_codec:
        image_codec = True
        check_image_codec_flags(codec, level, neck)
    if neck is not None:
        check_neck(neck)
    else:
        check_component(ctx.obj.host, "codec", codec, options)
    check_file(codec_weights, "--codec-weights")
    paths = expand_inputs(images)
    targets = dict(zip(paths, output_paths(paths, output), strict=True))
    for path, target in targets.items():
        if target.exists() and path.exists() and os.path.samefile(path, target):
            raise NeckkitError(f"-o {target} is the input image itself; refusing to overwrite it: choose another -o (e.g. {path.with_suffix('.nk')})")
    paths, failed = check_images(paths)
    for failure in failed:
        typer.echo(f"Error: {failure['error']}", err=True)
    if not paths:
        raise typer.Exit(1)
    show = not as_json
    with stage(f"loading the codec of {neck}" if neck is not None else building("codec", str(codec), options), show):
        if image_codec:
            name, model = build_component(ctx.obj.host, "codec", codec, options)
            stored, fingerprint = {"quality": model.quality}, model.fingerprint
        else:
            if neck is not None:
                name, model, stored = neck_codec(ctx.obj.host, neck, codec, weights)
            else:
                name, model = build_component(ctx.obj.host, "codec", codec, options)
                stored = stored_options(options)
            model.eval()
            check_level(model, name, level)
            fingerprint = stream_fingerprint(model)
    results = []
    todo = [(path, targets[path]) for path in paths]
    for image, target in progress(todo, "compressing", enabled=len(todo) > 1 and show):
        try:
            with stage(f"compressing {image}", len(todo) == 1 and show):
                if image_codec:
                    result = compress_image_one(model, name, image, target)
                else:
                    result = compress_one(model, name, stored, fingerprint, image, target, level)
            results.append(result)
        except NeckkitError as error:
            message = str(error) if str(image) in str(error) else f"{image}: {error}"
            failed.append({"image": str(image), "error": message})
            typer.echo(f"Error: {message}", err=True)
    if not failed:  # a run with errors keeps stderr to its error lines
        announce_placeholders()
    levels = any(r["level"] is not None for r in results)
    if as_json:
        typer.echo(json.dumps({"codec": name, "fingerprint": fingerprint, "images": results, "failed": failed}, indent=2))
    else:
        print_table(
            ["image", "output", "size"] + (["level"] if levels else [])
            + ["file bpp", "payload bpp", "estimated bpp", "encode s"],
            [
                [r["image"], r["output"], f"{r['width']}x{r['height']}"] + ([f"{r['level']:g}"] if levels else [])
                + [f"{r['file_bpp']:.4f}", f"{r['payload_bpp']:.4f}",
                   "-" if r["estimated_bpp"] is None else f"{r['estimated_bpp']:.4f}", f"{r['encode_seconds']:.3f}"]
                for r in results
            ],
        )
    if failed:
        raise typer.Exit(1)
