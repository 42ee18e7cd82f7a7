"""``neckkit ask``: an MLLM's answer about a compressed image, read through a trained neck."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import build_component, component_options


class Stopwatch:
    """Named stage timings in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def ask(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A .nk bitstream, or an image (compressed first).", show_default=False),
    neck: Path = typer.Option(..., "--neck", help="Neck checkpoint or training run folder."),
    mllm: str = typer.Option(..., "--mllm", "-m", help="Registered MLLM name (see neckkit list-plugins)."),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="Question or instruction (repeat for several)."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init MLLM (tests, quick start)."),
    mllm_weights: str | None = typer.Option(None, "--mllm-weights", help="MLLM hub id or local folder."),
    mllm_opt: list[str] | None = typer.Option(None, "--mllm-opt", help="Other MLLM option, e.g. dtype=bfloat16 or device_map=auto."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="The codec weights the neck was trained on."),
    uncompressed: bool = typer.Option(False, "--uncompressed", help="Baseline: the image itself through the full encoder."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer, in tokens."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search width (1: greedy)."),
    do_sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature."),
    as_json: bool = typer.Option(False, "--json", help="Print answer, bpp and per-stage timings as JSON."),
) -> None:
    """Answer PROMPT about a .nk bitstream (entropy decoding, neck, encoder, MLLM; no image reconstruction)."""
    import torch

    from neckkit.bitstream.container import NkFile, bpp, check_codec, codec_fingerprint, read_nk
    from neckkit.bitstream.images import load_image
    from neckkit.bitstream.padding import pad_to_multiple
    from neckkit.neck.checkpoint import build_neck, load_checkpoint
    from neckkit.serving.machine_path import SynthesisWatch, check_mllm, check_nk_codec, codec_for_checkpoint

    watch, synthesis = Stopwatch(), SynthesisWatch()
    checkpoint = load_checkpoint(neck)
    options = component_options(mllm_opt, weights=mllm_weights, tiny=tiny)
    with watch.stage("load_mllm"):
        mllm_name, model = build_component(ctx.obj.host, "mllm", mllm, options)
    check_mllm(checkpoint, mllm_name, model)
    generation: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if temperature is not None:
        generation["temperature"] = temperature
    result: dict[str, Any] = {"source": str(source), "mllm": mllm_name, "prompts": prompt}
    with torch.no_grad():
        if uncompressed:
            with watch.stage("read"):
                image = load_image(source)
            with watch.stage("mllm"):
                answers = model.generate_from_pixels(model.visual_encoder.preprocess(image), prompt, **generation)
            result.update(path="uncompressed", bpp=None)
        else:
            weights = str(codec_weights) if codec_weights is not None else None
            codec_name, codec = codec_for_checkpoint(ctx.obj.host, checkpoint, weights)
            with synthesis.watching(codec):
                if source.suffix.lower() == ".nk":
                    with watch.stage("read"):
                        nk = read_nk(source)
                    check_nk_codec(checkpoint, nk.codec, str(source))
                    check_codec(nk, codec_name, codec_fingerprint(codec), source=str(source))
                else:
                    with watch.stage("read"):
                        image = load_image(source)
                    with watch.stage("compress"):
                        padded, padding = pad_to_multiple(image, codec.pad_multiple)
                        payload = codec.compress(padded)
                    nk = NkFile.from_payload(payload, codec=codec_name, fingerprint=codec_fingerprint(codec),
                                             original_size=tuple(image.shape[-2:]), padding=padding,
                                             options=checkpoint.meta.codec.options)
                with watch.stage("entropy_decode"):
                    y_hat = codec.decompress_latent(nk.to_payload())
                with watch.stage("load_neck"):
                    neck_module = build_neck(checkpoint).eval()
                with watch.stage("neck"):
                    tokens = neck_module(y_hat)  # [B, T, width] entering block entry_layer
                with watch.stage("mllm"):
                    answers = model.generate(tokens, prompt, start=checkpoint.meta.entry_layer, **generation)
            rates = bpp(nk)
            result.update(path="neck", codec=codec_name, bpp=rates.file_bpp, payload_bpp=rates.payload_bpp,
                          latent_shape=list(y_hat.shape), synthesis_calls=synthesis.calls)
    result["answers"] = answers
    result["answer"] = answers[0] if len(answers) == 1 else answers
    result["seconds"] = {name: round(value, 4) for name, value in watch.seconds.items()}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for question, answer in zip(prompt * (len(answers) // len(prompt) or 1), answers, strict=False):
        typer.echo(f"Q: {question}\nA: {answer}")
    if result.get("bpp") is not None:
        typer.echo(f"({result['bpp']:.4f} bpp; no image was reconstructed)")
