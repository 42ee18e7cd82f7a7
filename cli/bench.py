"""``neckkit bench``: what a transform-neck costs and what it saves, for any codec and encoder.

Counts (exact, :mod:`neckkit.evaluation.complexity`): the neck's parameters and MACs per input pixel, and those
of what it replaces: the codec's synthesis transform plus the encoder's stem and blocks
``[0, entry_layer)`` at the encoder's own input size (a native-resolution encoder, e.g. ``qwen3-vl-vit``: at the
image's own size, ``--size WIDTHxHEIGHT``). Times (one process, stages interleaved, median
of ``--repeats``): both front ends from the decoded latent, entropy decoding of a real payload, and
bitstream -> final image embedding for the machine path and the Reconstruction path. See
docs/benchmarks.md for the definitions and measured figures.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import build_component, check_component_options, component_options
from neckkit.cli.inputs import check_file, check_latent_codec
from neckkit.cli.report import announce_placeholders, building, print_table, stage
from neckkit.errors import NeckkitError


def parse_size(text: str) -> tuple[int, int]:
    """``--size``: ``S`` (a square) or ``WIDTHxHEIGHT`` -> (height, width)."""
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 16:
        raise NeckkitError(f"--size takes a side or WIDTHxHEIGHT, each at least 16 pixels, got {text!r}")
    width, height = values if len(values) == 2 else values * 2
    return height, width


def _input_image(image: Path | None, height: int, width: int) -> tuple[Any, str]:
    """A ``height x width`` crop in [0, 1] of ``image`` (default: the first bundled photo)."""
    from neckkit.bitstream.images import load_image
    from neckkit.interfaces.preprocess import resize_center_crop, resize_cover_crop
    from neckkit.samples import sample_images

    path = image if image is not None else sample_images()[0]
    x01 = load_image(path)
    crop = resize_center_crop(x01, height, height) if height == width else resize_cover_crop(x01, height, width)
    return crop, (str(path) if image is not None else path.name)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _no_show(_description: str) -> None:
    return None


def _timed_rounds(
    stages: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None], show: Callable[[str], None] = _no_show
) -> dict[str, float]:
    """Median seconds of each stage; every round runs all stages (order reversed every other round).

    ``show`` hears what runs now (``"timing round 2/5: decode"``).
    """
    seconds: dict[str, list[float]] = {name: [] for name in stages}
    for index in range(repeats):
        names = list(stages) if index % 2 == 0 else list(reversed(stages))
        for name in names:
            show(f"timing round {index + 1}/{repeats}: {name.replace('_', ' ')}")
            sync()
            start = time.perf_counter()
            stages[name]()
            sync()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def run_bench(
    codec_name: str,
    codec: Any,
    encoder_name: str,
    encoder: Any,
    size: int | tuple[int, int],
    repeats: int,
    entry_layer: int | None,
    image: Path | None,
    device: Any,
    show: Callable[[str], None] = _no_show,
) -> dict[str, Any]:
    """Every figure of ``neckkit bench`` for built components (see the module docstring).

    ``show`` hears each step as it starts (``"counting MACs: neck"``, ``"timing round 2/5: decode"``): the
    command shows them on stderr. ``size``: a side, or (height, width).
    """
    import torch

    from neckkit.bitstream.padding import crop_padding, pad_to_multiple
    from neckkit.config.paper import PAPER_FIGURES
    from neckkit.evaluation.complexity import count_parameters, kmac_per_pixel, measure
    from neckkit.loading.weights import seeded_init
    from neckkit.neck.regions import latent_view, token_grid_of
    from neckkit.neck.transform import TransformNeck

    entry = encoder.entry_layer if entry_layer is None else entry_layer
    if not 0 <= entry <= encoder.num_layers:
        raise NeckkitError(f"--entry-layer must be in 0..{encoder.num_layers} for {encoder_name}, got {entry}")
    show("building the neck")
    with seeded_init(0):
        neck = TransformNeck.for_pair(codec, encoder)
    codec, encoder, neck = (module.to(device).eval() for module in (codec, encoder, neck))
    height, width = (size, size) if isinstance(size, int) else size
    x, image_name = _input_image(image, height, width)
    padded, padding = pad_to_multiple(x.to(device), codec.pad_multiple)
    grid = token_grid_of(encoder, (height, width))  # native resolution: the image's own token grid; square: None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    with torch.inference_mode():
        show(f"compressing {image_name}")
        payload = codec.compress(padded)
        y_hat = codec.decompress_latent(payload)

        def view(latent: Any) -> Any:  # the latent cells the encoder sees (neck.regions)
            return latent_view(latent, (height, width), padding, encoder)

        def decode() -> Any:
            return codec.decompress_latent(payload)

        def reconstruct(latent: Any) -> Any:  # decoded image -> the encoder's pixels
            return encoder.preprocess(crop_padding(codec.synthesize(latent), padding))

        def machine_front() -> Any:
            return neck(view(y_hat), grid=grid)

        def reconstruction_front() -> Any:
            return encoder.run_blocks(encoder.embed(reconstruct(y_hat)), 0, entry, grid)

        def machine_end_to_end() -> Any:
            return encoder.finish_from(neck(view(decode()), grid=grid), entry, grid)

        def reconstruction_end_to_end() -> Any:
            return encoder.encode(reconstruct(decode()))

        # Exact counts: one pass each under the counter.
        show("counting MACs: neck")
        _, neck_count = measure(machine_front)
        show("counting MACs: synthesis transform")
        x_hat, synthesis_count = measure(codec.synthesize, y_hat)
        pixels = encoder.preprocess(crop_padding(x_hat, padding))
        show(f"counting MACs: encoder stem and blocks 0..{entry - 1}")
        _, encoder_count = measure(lambda: encoder.run_blocks(encoder.embed(pixels), 0, entry, grid))
        try:
            synthesis_params = count_parameters(codec.synthesis_modules())
        except NeckkitError:  # the codec does not name its synthesis modules: what synthesize() used
            synthesis_params = synthesis_count.parameters_used

        stages = {
            "machine_front": machine_front,
            "reconstruction_front": reconstruction_front,
            "decode": decode,
            "machine_end_to_end": machine_end_to_end,
            "reconstruction_end_to_end": reconstruction_end_to_end,
        }
        for name, run_stage in stages.items():
            show(f"warming up: {name.replace('_', ' ')}")
            run_stage()
        seconds = _timed_rounds(stages, repeats, sync, show)

    replaced_macs = synthesis_count.macs + encoder_count.macs
    replaced_params = synthesis_params + encoder_count.parameters_used
    return {
        "codec": codec_name,
        "encoder": encoder_name,
        "size": size if isinstance(size, int) else f"{width}x{height}",
        "height": height,
        "width": width,
        "token_grid": list(grid) if grid is not None else [encoder.grid, encoder.grid],
        "entry_layer": entry,
        "encoder_image_size": encoder.image_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": repeats,
        "image": image_name,
        "payload_bytes": payload.num_bytes,
        "payload_bpp": payload.num_bytes * 8 / (height * width),
        "neck_params": count_parameters(neck),
        "neck_macs": neck_count.macs,
        "neck_kmac_per_pixel": kmac_per_pixel(neck_count.macs, height, width),
        "replaced_params": replaced_params,
        "replaced_macs": replaced_macs,
        "replaced_kmac_per_pixel": kmac_per_pixel(replaced_macs, height, width),
        "synthesis_params": synthesis_params,
        "synthesis_kmac_per_pixel": kmac_per_pixel(synthesis_count.macs, height, width),
        "encoder_front_params": encoder_count.parameters_used,
        "encoder_front_kmac_per_pixel": kmac_per_pixel(encoder_count.macs, height, width),
        "decode_seconds": seconds["decode"],
        "machine_front_seconds": seconds["machine_front"],
        "reconstruction_front_seconds": seconds["reconstruction_front"],
        "front_latency_ratio": seconds["reconstruction_front"] / seconds["machine_front"],
        "machine_end_to_end_seconds": seconds["machine_end_to_end"],
        "reconstruction_end_to_end_seconds": seconds["reconstruction_end_to_end"],
        "end_to_end_latency_ratio": seconds["reconstruction_end_to_end"] / seconds["machine_end_to_end"],
        "peak_rss_mib": _peak_rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "paper": {
            "neck_params": PAPER_FIGURES.neck_params,
            "neck_kmac_per_pixel": PAPER_FIGURES.neck_kmac_per_pixel,
            "replaced_params": PAPER_FIGURES.replaced_params,
            "replaced_kmac_per_pixel": PAPER_FIGURES.replaced_kmac_per_pixel,
        },
    }


def _print_report(r: dict[str, Any]) -> None:
    paper = r["paper"]
    rows = [
        ["neck parameters", f"{r['neck_params']:,}", f"{paper['neck_params']:,}"],
        ["neck kMAC/pixel", f"{r['neck_kmac_per_pixel']:.3f}", f"{paper['neck_kmac_per_pixel']:.3f}"],
        ["replaced parameters", f"{r['replaced_params']:,}", f"{paper['replaced_params'] / 1e6:.2f} M (encoder only)"],
        ["  synthesis transform", f"{r['synthesis_params']:,}", ""],
        [f"  encoder stem + blocks 0..{r['entry_layer'] - 1}", f"{r['encoder_front_params']:,}", ""],
        [
            "replaced kMAC/pixel",
            f"{r['replaced_kmac_per_pixel']:.2f}",
            f"{paper['replaced_kmac_per_pixel']:.2f} (encoder only)",
        ],
        ["  synthesis transform", f"{r['synthesis_kmac_per_pixel']:.2f}", ""],
        [f"  encoder stem + blocks 0..{r['entry_layer'] - 1}", f"{r['encoder_front_kmac_per_pixel']:.2f}", ""],
        ["entropy decoding s", f"{r['decode_seconds']:.4f}", ""],
        ["machine front end s", f"{r['machine_front_seconds']:.4f}", ""],
        ["reconstruction front end s", f"{r['reconstruction_front_seconds']:.4f}", ""],
        ["front latency ratio", f"{r['front_latency_ratio']:.2f}x", ""],
        ["machine end to end s", f"{r['machine_end_to_end_seconds']:.4f}", ""],
        ["reconstruction end to end s", f"{r['reconstruction_end_to_end_seconds']:.4f}", ""],
        ["end-to-end latency ratio", f"{r['end_to_end_latency_ratio']:.2f}x", ""],
        ["payload bpp", f"{r['payload_bpp']:.4f}", ""],
        ["peak RSS MiB", f"{r['peak_rss_mib']:.0f}", ""],
    ]
    if r["cuda_peak_mib"] is not None:
        rows.append(["peak CUDA MiB", f"{r['cuda_peak_mib']:.0f}", ""])
    title = (
        f"{r['codec']} + {r['encoder']}, {r['width']}x{r['height']}, entry layer {r['entry_layer']}, {r['device']}, "
        f"{r['threads']} threads, torch {r['torch']}, median of {r['repeats']}"
    )
    print_table(["quantity", "measured", "paper (ELIC + CLIP ViT-L/14)"], rows, title=title)


def bench(
    ctx: typer.Context,
    codec: str = typer.Option(..., "--codec", "-c", help="Registered codec name (see neckkit list-plugins)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Registered visual-encoder name."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="Codec state dict file."),
    encoder_weights: str | None = typer.Option(None, "--encoder-weights", help="Encoder hub id, folder or file."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init codec and encoder (tests)."),
    random_init: bool | None = typer.Option(
        None,
        "--random-init/--no-random-init",
        help="Real-size random weights (default: for a component nothing else gives weights: no --tiny, "
        "--*-weights or quality).",
        show_default=False,
    ),
    size: str = typer.Option("256", "--size", help="Input image side in pixels, or WIDTHxHEIGHT (e.g. 768x512)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed rounds; medians are reported."),
    entry_layer: int | None = typer.Option(
        None, "--entry-layer", help="Encoder block the neck enters (default: the encoder's entry_layer option, 2)."
    ),
    image: Path | None = typer.Option(None, "--image", help="Image to crop and code (default: a bundled photo)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu, cuda or cuda:N."),
    codec_opt: list[str] | None = typer.Option(None, "--codec-opt", help="Other codec option, name=value."),
    encoder_opt: list[str] | None = typer.Option(None, "--encoder-opt", help="Other encoder option, name=value."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Parameters, kMAC/pixel, latency and memory of a neck vs. what it replaces (random weights by default)."""
    host = ctx.obj.host
    check_latent_codec(host.components("codec").get(codec), "bench measures a neck on a learned codec")
    weights = str(codec_weights) if codec_weights is not None else None
    by_default = random_init is None  # random weights for what nothing else gives weights
    c_options = component_options(codec_opt, random_by_default=by_default, weights=weights, tiny=tiny,
                                  random_init=random_init)
    e_options = component_options(encoder_opt, random_by_default=by_default, weights=encoder_weights, tiny=tiny,
                                  random_init=random_init)
    if entry_layer is not None and e_options.get("entry_layer", entry_layer) != entry_layer:
        raise NeckkitError(
            f"--entry-layer {entry_layer} and --encoder-opt entry_layer={e_options['entry_layer']} disagree; pass one"
        )
    check_component_options(host, "codec", codec, c_options)  # before torch or a model loads
    check_component_options(host, "encoder", encoder, e_options)
    check_file(codec_weights, "--codec-weights")
    check_file(image, "--image")
    height, width = parse_size(size)
    shape: int | tuple[int, int] = height if height == width else (height, width)

    with stage("loading torch", not as_json):
        import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NeckkitError(f"--device {device} was asked for but this machine has no CUDA GPU")
    torch_device = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    with stage(building("codec", codec, c_options), not as_json):
        codec_name, codec_model = build_component(host, "codec", codec, c_options)
    with stage(building("encoder", encoder, e_options), not as_json):
        encoder_name, encoder_model = build_component(host, "encoder", encoder, e_options)
    announce_placeholders()
    with stage("benchmarking", not as_json) as show:
        report = run_bench(
            codec_name, codec_model, encoder_name, encoder_model, shape, repeats, entry_layer, image, torch_device, show
        )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
