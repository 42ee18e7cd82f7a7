"""``neckkit ask``: an MLLM's answer about a compressed image, read through a trained neck.

The pipeline is :class:`neckkit.serving.answerer.Answerer`; this command loads one and asks it once.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import component_options


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
    from neckkit.serving.answerer import Answerer
    from neckkit.serving.requests import AskRequest

    options = component_options(mllm_opt, weights=mllm_weights, tiny=tiny)
    generation: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if temperature is not None:
        generation["temperature"] = temperature
    weights = str(codec_weights) if codec_weights is not None else None
    with Answerer.load(ctx.obj.host, neck, mllm, options, codec_weights=weights, machine_path=not uncompressed,
                       decode_threads=1) as answerer:
        result = answerer.answer(AskRequest(source, prompt, generation, uncompressed=uncompressed))
    result = replace(result, seconds={**answerer.load_seconds, **result.seconds})
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    answers = result.answers
    for question, answer in zip(prompt * (len(answers) // len(prompt) or 1), answers, strict=False):
        typer.echo(f"Q: {question}\nA: {answer}")
    if result.bpp is not None:
        typer.echo(f"({result.bpp:.4f} bpp; no image was reconstructed)")
