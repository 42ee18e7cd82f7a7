"""``neckkit ask``: an MLLM's answer about a compressed image, read through a trained neck.

The pipeline is :class:`neckkit.serving.answerer.Answerer`; this command loads one and asks it once.
With ``--server URL`` nothing is loaded here: the bitstream goes to a running ``neckkit serve``
(``POST URL/v1/ask``) and the reply is printed exactly as the local command prints its own result.
An image (not a ``.nk``) goes to ``POST URL/v1/chat/completions`` as a PNG or JPEG data URL, one
request per prompt, and the server compresses it with its own codec (see docs/serving.md).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import component_options
from neckkit.cli.inputs import check_component, check_file, check_neck, file_kind
from neckkit.cli.report import announce_placeholders, building, stage
from neckkit.errors import NeckkitError, UsageError, describe_error


def ask(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A .nk bitstream, or an image (compressed first).", show_default=False),
    neck: Path | None = typer.Option(None, "--neck", help="Neck checkpoint or training run folder (not with --server)."),
    mllm: str | None = typer.Option(None, "--mllm", "-m", help="Registered MLLM name (see neckkit list-plugins; optional with --server)."),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="Question or instruction (repeat for several)."),
    server: str | None = typer.Option(None, "--server", help="Ask a running `neckkit serve` at this URL (e.g. http://127.0.0.1:8000) instead of loading models here."),
    timeout: float = typer.Option(300.0, "--timeout", help="With --server: seconds to wait for the reply."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init MLLM (tests, quick start)."),
    mllm_weights: str | None = typer.Option(None, "--mllm-weights", help="MLLM hub id or local folder."),
    mllm_opt: list[str] | None = typer.Option(None, "--mllm-opt", help="Other MLLM option, e.g. dtype=bfloat16 or device_map=auto."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="The codec weights the neck was trained on."),
    uncompressed: bool = typer.Option(False, "--uncompressed", help="Baseline: the image itself through the full encoder."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer, in tokens."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search width (1: greedy)."),
    do_sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature."),
    level: float | None = typer.Option(None, "--level", "-l", help="An image given here: compress it at this rate "
                                       "level of the neck's variable-rate codec (a .nk file carries its own level)."),
    as_json: bool = typer.Option(False, "--json", help="Print answer, bpp and per-stage timings as JSON."),
) -> None:
    """Answer PROMPT about a .nk bitstream (entropy decoding, neck, encoder, MLLM; no image reconstruction)."""
    generation: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if temperature is not None:
        generation["temperature"] = temperature
    if server is not None:
        local_only = [flag for flag, given in (("--neck", neck is not None), ("--tiny", tiny),
                                               ("--mllm-weights", mllm_weights is not None),
                                               ("--mllm-opt", bool(mllm_opt)),
                                               ("--codec-weights", codec_weights is not None)) if given]
        if local_only:
            raise UsageError(f"{', '.join(local_only)}: local model options; with --server the server "
                             "answers with the models it loaded (drop them)")
        if level is not None:
            raise UsageError("--level: the server answers .nk bitstreams, which carry their own level "
                             "(compress with neckkit compress --level)")
        if uncompressed:
            raise UsageError("--uncompressed is not served: the server answers from bitstreams (drop --server "
                             "to run the baseline here)")
        with stage(f"asking the server at {server}", not as_json):
            report = ask_server(server, source, prompt, generation, mllm=mllm, timeout=timeout)
        _print_report(report, prompt, as_json)
        return
    if neck is None or mllm is None:
        missing = " and ".join(flag for flag, value in (("--neck", neck), ("--mllm", mllm)) if value is None)
        raise UsageError(f"{missing} required (or --server URL to ask a running neckkit serve)")
    options = component_options(mllm_opt, weights=mllm_weights, tiny=tiny)
    # Names and paths first: a mistake is reported before torch or a model loads.
    check_source(source)
    if level is not None and (uncompressed or source.suffix.lower() == ".nk"):
        raise UsageError("--level is for an image compressed here: " + (
            "the uncompressed baseline codes nothing" if uncompressed else f"{source} carries its own level"))
    check_neck(neck)
    check_component(ctx.obj.host, "mllm", mllm, options)
    check_file(codec_weights, "--codec-weights")

    show = not as_json
    with stage("loading torch and the answering pipeline", show):
        from neckkit.serving.answerer import Answerer
        from neckkit.serving.requests import AskRequest

    weights = str(codec_weights) if codec_weights is not None else None
    loading = building("mllm", mllm, options) + ("" if uncompressed else f", the neck of {neck} and its codec")
    with stage(loading, show):
        answerer = Answerer.load(ctx.obj.host, neck, mllm, options, codec_weights=weights,
                                 machine_path=not uncompressed, decode_threads=1)
    announce_placeholders()
    with answerer, stage(f"answering {len(prompt)} prompt{'s' if len(prompt) > 1 else ''} about {source}", show):
        result = answerer.answer(AskRequest(source, prompt, generation, uncompressed=uncompressed, level=level))
    result = replace(result, seconds={**answerer.load_seconds, **result.seconds})
    _print_report(result.as_dict(), prompt, as_json)


def check_source(source: Path) -> None:
    """Refuse a question's source that is neither a ``.nk`` bitstream nor an image."""
    if not source.exists():
        raise NeckkitError(f"{source} does not exist")
    if not source.is_file() or file_kind(source) == "other":
        raise NeckkitError(f"{source} is neither a .nk bitstream nor a readable image")


def _print_report(report: dict[str, Any], prompt: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    answers = report["answers"]
    for question, answer in zip(prompt * (len(answers) // len(prompt) or 1), answers, strict=False):
        typer.echo(f"Q: {question}\nA: {answer}")
    if report.get("bpp") is not None:
        at = f" at level {report['level']:g}" if report.get("level") is not None else ""
        typer.echo(f"({report['bpp']:.4f} bpp{at}; no image was reconstructed)")


# -- the client side of `neckkit serve` ---------------------------------------------------------------


def ask_server(url: str, source: Path, prompts: list[str], generation: dict[str, Any], *,
               mllm: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """The ``ask --json`` report for ``source``, answered by the ``neckkit serve`` at ``url``.

    A ``.nk`` file: one ``POST /v1/ask`` (multipart). An image: one ``POST /v1/chat/completions``
    per prompt with the image as a data URL (the server compresses it). Any HTTP error or
    unreachable server is a :class:`NeckkitError` with one line.
    """
    import httpx

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise NeckkitError(f"--server {url!r}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000")
    if not source.is_file():
        raise NeckkitError(f"{source} does not exist")
    data = source.read_bytes()
    try:
        with httpx.Client(base_url=base, timeout=httpx.Timeout(timeout, connect=10.0)) as client:
            if source.suffix.lower() == ".nk":
                return _ask_nk(client, source, data, prompts, generation)
            return _ask_image(client, source, data, prompts, generation, mllm)
    except httpx.TimeoutException:
        raise NeckkitError(f"the server at {base} did not answer within {timeout:g} s (--timeout)") from None
    except httpx.HTTPError as error:
        raise NeckkitError(f"cannot reach the server at {base} ({describe_error(error)})") from None


def _reply_json(response: Any) -> dict[str, Any]:
    """The JSON body of a 2xx reply; the server's one-line message for anything else."""
    if response.status_code >= 400:
        message = None
        try:
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                message = error.get("message")
            elif isinstance(body, dict) and body.get("detail") is not None:
                message = str(body["detail"])
        except ValueError:
            pass
        if not message:
            message = response.text.strip() or response.reason_phrase
        message = " ".join(str(message).split())
        raise NeckkitError(f"{message} (HTTP {response.status_code})")
    try:
        body = response.json()
    except ValueError:
        raise NeckkitError(f"the server replied with something other than JSON (HTTP {response.status_code})") from None
    if not isinstance(body, dict):
        raise NeckkitError("the server's reply is not a JSON object")
    return body


def _form_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _ask_nk(client: Any, source: Path, data: bytes, prompts: list[str], generation: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = {"prompt": list(prompts)}
    form.update((key, _form_value(value)) for key, value in generation.items())
    response = client.post("/v1/ask", data=form, files={"file": (source.name, data, "application/x-neckkit-nk")})
    from neckkit.serving.requests import REPORT_FIELDS

    body = _reply_json(response)
    report = {key: body[key] for key in REPORT_FIELDS if key in body}
    if "answers" not in report:
        raise NeckkitError("the server's reply has no answers")
    report["source"] = str(source)  # as the local command shows it (the server saw bytes only)
    return report


def _image_data_url(source: Path, data: bytes) -> str:
    """PNG and JPEG files as they are; any other image re-encoded as PNG (RGB, lossless)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            if kind not in ("PNG", "JPEG"):
                image.load()
                from neckkit.bitstream.images import to_rgb

                buffer = io.BytesIO()
                to_rgb(image).save(buffer, format="PNG")
                data, kind = buffer.getvalue(), "PNG"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise NeckkitError(f"{source} is neither a .nk bitstream nor a readable image ({type(error).__name__})") from None
    media = "image/png" if kind == "PNG" else "image/jpeg"
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"


def _ask_image(client: Any, source: Path, data: bytes, prompts: list[str], generation: dict[str, Any],
               mllm: str | None) -> dict[str, Any]:
    url = _image_data_url(source, data)
    if mllm is None:
        models = _reply_json(client.get("/v1/models")).get("data") or [{}]
        mllm = str(models[0].get("id", ""))
    options: dict[str, Any] = {"max_tokens": generation["max_new_tokens"]}
    if "temperature" in generation:
        options["temperature"] = generation["temperature"]
    elif not generation.get("do_sample"):
        options["temperature"] = 0
    answers, seconds, extra, model = [], {}, {}, mllm
    for prompt in prompts:
        request = {"model": mllm, "max_tokens": options["max_tokens"], "stream": False,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": prompt},
                                                             {"type": "image_url", "image_url": {"url": url}}]}]}
        request.update(options)
        body = _reply_json(client.post("/v1/chat/completions", json=request))
        try:
            answers.append(str(body["choices"][0]["message"]["content"]))
        except (KeyError, IndexError, TypeError):
            raise NeckkitError("the server's chat reply has no choices[0].message.content") from None
        model = body.get("model", model)
        extra = body.get("neckkit") or {}
        for part, value in (extra.get("seconds") or {}).items():  # several prompts: the stages summed
            seconds[part] = round(seconds.get(part, 0.0) + float(value), 4)
    codec = extra.get("codec")
    if codec is None:  # a server whose chat reply does not name the codec: /health does
        codec = _reply_json(client.get("/health")).get("codec")
    report: dict[str, Any] = {"source": str(source), "mllm": model, "prompts": list(prompts), "path": "neck",
                              "codec": codec, "level": extra.get("level"), "bpp": extra.get("bpp"),
                              "payload_bpp": extra.get("payload_bpp"), "latent_shape": extra.get("latent_shape"),
                              "token_grid": extra.get("token_grid"), "synthesis_calls": extra.get("synthesis_calls", 0), "answers": answers,
                              "answer": answers[0] if len(answers) == 1 else answers, "seconds": seconds}
    return report
