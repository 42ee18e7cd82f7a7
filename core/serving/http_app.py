"""The HTTP server's app (FastAPI): ``/v1/ask``, ``/v1/chat/completions``, ``/health``, ``/v1/models``, ``/metrics``.

:func:`create_app` takes the settings and a ``load`` callable returning an :class:`Answerer`; the
models load in a background thread started at start-up, then answer one warm-up request
(:meth:`Answerer.warm_up_request <neckkit.serving.answerer.Answerer.warm_up_request>`) through the batcher,
so ``/health`` answers 503 until they are loaded and warm and the first client's latency is a steady
one. Requests are built from the bytes a client sends (never from a path it names), each checked on
its own (prompts, options, media types), then batched by :class:`~neckkit.serving.batcher.Batcher`;
:class:`~neckkit.serving.access_log.AccessLog` logs one line per request.
Every error is a JSON body ``{"error": {"type": KIND, "message": ONE_LINE}}``; what an upload may cost
(size, read time, uploads at once) is bounded by :class:`~neckkit.serving.uploads.UploadLimits`, what
its bitstream may do to the decoder by the answerer's decode workers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from neckkit.errors import NeckkitError, describe_error
from neckkit.serving.access_log import AccessLog
from neckkit.serving.batcher import Batcher, BatcherClosed
from neckkit.serving.errors import AnswerFailed, DamagedBitstream, DecoderUnavailable
from neckkit.serving.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from neckkit.serving.requests import AskRequest, AskResult, prompt_problem
from neckkit.serving.uploads import RETRY_AFTER_SECONDS, UploadLimits, error_body

if TYPE_CHECKING:
    from neckkit.serving.answerer import Answerer

__all__ = ["ApiError", "ServeSettings", "create_app", "warm_up"]

NK_MEDIA_TYPES = ("application/x-neckkit-nk", "application/octet-stream")
IMAGE_MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 4096
MAX_NEW_TOKENS = 512
MAX_BEAMS = 8
MAX_IMAGE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ServeSettings:
    """What ``neckkit serve`` was started with (the models themselves come from ``load``)."""

    mllm: str = ""
    neck: str = ""  # the checkpoint's path name, shown by /health
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_body_bytes: int = 1 << 20
    body_timeout: float = 30.0  # seconds a request body may take to arrive
    max_uploads: int = 64  # request bodies read at once
    warm_up: bool = True  # answer one blank-image request before /health says ready
    access_log: bool = True  # one line per request on the neckkit.serving.access logger


class ApiError(Exception):
    """An error reply: ``{"error": {"type": kind, "message": message}}`` with ``status`` and ``headers``."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, " ".join(message.split())
        self.headers = headers


ROUTES = {"/v1/ask": "ask", "/v1/chat/completions": "chat"}


# -- parsing what clients send ---------------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _prompts(values: list[Any]) -> list[str]:
    prompts = [value for value in values if isinstance(value, str) and value.strip()]
    if not prompts:
        raise ApiError(422, "missing_prompt", "at least one non-empty prompt is needed")
    if len(prompts) > MAX_PROMPTS:
        raise ApiError(400, "bad_request", f"{len(prompts)} prompts; at most {MAX_PROMPTS} per request")
    if any(len(prompt) > MAX_PROMPT_CHARS for prompt in prompts):
        raise ApiError(400, "bad_request", f"a prompt is longer than {MAX_PROMPT_CHARS} characters")
    problem = next(filter(None, map(prompt_problem, prompts)), None)
    if problem is not None:
        raise ApiError(400, "bad_request", problem)
    return prompts


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ApiError(400, "bad_request", f"{name} must be an integer, got {value!r}")
    try:
        number = int(value) if not isinstance(value, float) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise ApiError(400, "bad_request", f"{name} must be an integer from {low} to {high}, got {str(value)[:40]!r}")
    return number


def _float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise ApiError(400, "bad_request", f"{name} must be a number from {low} to {high}, got {str(value)[:40]!r}")
    return number


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, "bad_request", f"{name} must be true or false, got {str(value)[:40]!r}")


def generation_options(values: dict[str, Any]) -> dict[str, Any]:
    """``max_new_tokens``, ``num_beams``, ``do_sample``, ``temperature`` as ``neckkit ask`` passes them."""
    generation: dict[str, Any] = {
        "max_new_tokens": _int("max_new_tokens", values["max_new_tokens"], 1, MAX_NEW_TOKENS)
        if values.get("max_new_tokens") is not None else 32,
        "num_beams": _int("num_beams", values["num_beams"], 1, MAX_BEAMS) if values.get("num_beams") is not None else 1,
        "do_sample": _bool("do_sample", values["do_sample"]) if values.get("do_sample") is not None else False,
    }
    if values.get("temperature") is not None:
        generation["temperature"] = _float("temperature", values["temperature"], 1e-3, 100.0)
    return generation


GENERATION_FIELDS = ("max_new_tokens", "num_beams", "do_sample", "temperature")
# The ``ask --json`` fields a chat reply carries under "neckkit" (the answer itself is in choices).
CHAT_REPORT_FIELDS = ("codec", "level", "bpp", "payload_bpp", "latent_shape", "token_grid", "synthesis_calls",
                      "seconds")


def decode_image(data: bytes, media: str) -> Any:
    """PNG or JPEG bytes -> a [1, 3, H, W] tensor in [0, 1]; size-checked before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    from neckkit.bitstream.images import image_to_tensor

    try:
        with Image.open(io.BytesIO(data), formats=[IMAGE_MEDIA_TYPES[media]]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS or min(width, height) < 1:
                raise ApiError(400, "bad_request", f"a {width}x{height} image; at most {MAX_IMAGE_PIXELS} pixels")
            image.load()
            return image_to_tensor(image)
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ApiError(400, "bad_request", f"the {media} image is not readable ({describe_error(error)})") from None


def parse_data_url(url: Any) -> tuple[str, bytes]:
    """``data:MEDIA;base64,DATA`` -> (media type, bytes); any other URL is refused."""
    if not isinstance(url, str) or not url:
        raise ApiError(400, "bad_request", "image_url.url must be a data: URL string")
    if url[:8].lower().startswith(("http://", "https://")):
        raise ApiError(400, "bad_request", "image URLs are not fetched; send the image or .nk as a data: URL")
    if not url[:5].lower() == "data:" or "," not in url:
        raise ApiError(400, "bad_request", "image_url.url must be a data:MEDIA;base64,... URL")
    header, payload = url[5:].split(",", 1)
    parts = [part.strip().lower() for part in header.split(";")]
    if "base64" not in parts[1:]:
        raise ApiError(400, "bad_request", "the data: URL must be base64-encoded (data:MEDIA;base64,...)")
    media = parts[0]
    if media not in NK_MEDIA_TYPES and media not in IMAGE_MEDIA_TYPES:
        raise ApiError(415, "unsupported_media_type", f"data: URL of type {media[:60]!r}; expected "
                       "application/x-neckkit-nk, image/png or image/jpeg")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_request", "the data: URL's base64 payload is not valid base64") from None
    return media, data


def chat_request(body: Any) -> tuple[str, str, bytes, dict[str, Any]]:
    """An OpenAI chat body -> (prompt, media type, bytes, generation options)."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    if body.get("stream"):
        raise ApiError(400, "bad_request", "streaming is not supported; send \"stream\": false")
    choices = body.get("n", 1)
    if choices is not None and (isinstance(choices, bool) or choices != 1):
        # One answer per request: n > 1 used to be answered once without a word.
        raise ApiError(400, "bad_request", f"n must be 1 (one choice per request), got {str(choices)[:20]}; "
                                           "send one request per answer wanted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "bad_request", "messages must be a non-empty list")
    texts: list[str] = []
    images: list[Any] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(400, "bad_request", "every message must be an object")
        if message.get("role", "user") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise ApiError(400, "bad_request", "a message's content must be a string or a list of parts")
        for part in content:
            if not isinstance(part, dict):
                raise ApiError(400, "bad_request", "every content part must be an object")
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise ApiError(400, "bad_request", "a text part needs a string 'text'")
                texts.append(part["text"])
            elif kind == "image_url":
                image_url = part.get("image_url")
                images.append(image_url.get("url") if isinstance(image_url, dict) else image_url)
            else:
                raise ApiError(400, "bad_request", f"content part type {str(kind)[:40]!r} is not supported "
                                                   "(text and image_url are)")
    if len(images) != 1:
        raise ApiError(400, "bad_request", f"a chat request needs exactly one image_url part, got {len(images)}")
    prompt = "\n".join(text for text in texts if text.strip())
    _prompts([prompt])
    media, data = parse_data_url(images[0])
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    temperature = body.get("temperature")
    options: dict[str, Any] = {"max_new_tokens": tokens}
    if temperature is not None and _float("temperature", temperature, 0.0, 100.0) > 0:
        options.update(do_sample=True, temperature=temperature)
    return prompt, media, data, generation_options(options)


# -- the app ---------------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.answerer: Answerer | None = None
        self.batcher: Batcher | None = None  # set once loaded; it takes client requests once ``ready``
        self.ready = False
        self.closing = False
        self.load_error: str | None = None


def create_app(
    settings: ServeSettings,
    load: Callable[[], Answerer],
    *,
    on_load_error: Callable[[BaseException], None] | None = None,
    on_ready: Callable[[Answerer], None] | None = None,
) -> FastAPI:
    """The server for the answerer ``load()`` returns (called once, in a background thread at start-up).

    ``on_load_error(error)`` is called (in that thread) if loading fails; ``/health`` then stays 503.
    ``on_ready(answerer)`` when the models are loaded and, with ``settings.warm_up``, have answered the
    warm-up request (its seconds are ``answerer.load_seconds["warm_up"]``).
    """
    state = _State()
    metrics = ServeMetrics(lambda: state.answerer.decode_stats() if state.answerer is not None else None)

    @contextlib.contextmanager
    def counted(route: str) -> Iterator[None]:
        """Count a request of ``route`` and observe its seconds, however it ends."""
        start = time.perf_counter()
        metrics.requests.labels(route=route).inc()
        try:
            yield
        finally:
            metrics.request_seconds.labels(route=route).observe(time.perf_counter() - start)

    def count_refused(path: str, kind: str) -> None:
        """An upload refused before the app saw it: an error, and a request of its route."""
        metrics.errors.labels(kind=kind).inc()
        if path in ROUTES:
            metrics.requests.labels(route=ROUTES[path]).inc()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()

        def count_batch(size: int) -> None:
            if state.ready:  # the warm-up batch is not a client's
                metrics.batch_size.observe(size)

        async def become_ready(answerer: Answerer) -> None:
            if state.closing:  # shut down while loading
                await asyncio.to_thread(answerer.close)
                return
            state.answerer = answerer
            state.batcher = Batcher(
                lambda prepared: answerer.answer_prepared(prepared, return_errors=True),
                prepare=answerer.prepare, prepare_threads=max(4, 2 * answerer.decode_workers),
                max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                on_batch=count_batch, on_queue=metrics.queue_length.set,
            )
            state.batcher.start()
            if settings.warm_up:
                await warm_up(answerer, state.batcher)
            if state.closing:
                return
            state.ready = True
            if on_ready is not None:
                on_ready(answerer)

        def failed(error: BaseException) -> None:
            state.load_error = " ".join(str(error).split()) or type(error).__name__
            if on_load_error is not None:
                on_load_error(error)

        def load_in_background() -> None:
            try:
                answerer = load()
            except BaseException as error:  # noqa: BLE001  (reported through /health and on_load_error)
                failed(error)
                return
            try:
                readying = asyncio.run_coroutine_threadsafe(become_ready(answerer), loop)
            except RuntimeError:  # the loop is gone: shut down while loading
                answerer.close()
                return
            try:
                readying.result()
            except BaseException as error:  # noqa: BLE001  (cancelled at shut-down is no failure)
                if not state.closing:
                    failed(error)

        threading.Thread(target=load_in_background, name="neckkit-load", daemon=True).start()
        try:
            yield
        finally:
            state.closing = True
            if state.batcher is not None:
                await state.batcher.close()
            if state.answerer is not None:
                await asyncio.to_thread(state.answerer.close)

    app = FastAPI(title="neckkit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        metrics.errors.labels(kind=error.kind).inc()
        return JSONResponse(error_body(error.kind, error.message), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        metrics.errors.labels(kind=kind).inc()
        return JSONResponse(error_body(kind, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        metrics.errors.labels(kind="internal").inc()
        message = describe_error(error)
        print(f"neckkit serve: internal error: {message}", file=sys.stderr, flush=True)
        return JSONResponse(error_body("internal", message), status_code=500)

    def batcher() -> Batcher:
        if state.batcher is None or not state.ready:
            message = f"the models failed to load: {state.load_error}" if state.load_error else "the models are loading"
            raise ApiError(503, "not_ready", message)
        return state.batcher

    async def answer(request: AskRequest, nk: bool) -> AskResult:
        try:
            result = await batcher().submit(request)
        except BatcherClosed as error:
            raise ApiError(503, "not_ready", str(error)) from None
        if isinstance(result, DamagedBitstream):
            raise ApiError(422, "damaged_bitstream", str(result))
        if isinstance(result, DecoderUnavailable):
            raise ApiError(503, "busy", str(result), {"Retry-After": str(RETRY_AFTER_SECONDS)})
        if isinstance(result, AnswerFailed):
            raise result
        if isinstance(result, NeckkitError):
            raise ApiError(400, "bad_bitstream" if nk else "bad_request", str(result))
        return result

    @app.get("/health")
    async def health() -> JSONResponse:
        answerer = state.answerer
        if answerer is None or not state.ready:
            body: dict[str, Any] = {"status": "loading" if state.load_error is None else "failed"}
            if state.load_error is not None:
                body["error"] = state.load_error
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "mllm": answerer.mllm_name, "codec": answerer.codec_name,
                             "encoder": answerer.checkpoint.meta.encoder.name, "neck": settings.neck})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        name = state.answerer.mllm_name if state.answerer is not None else settings.mllm
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "neckkit"}]})

    @app.get("/metrics")
    async def prometheus() -> Response:
        if state.batcher is not None:
            metrics.queue_length.set(state.batcher.queue_length)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/ask")
    async def ask(request: Request) -> JSONResponse:
        with counted("ask"):
            media = _media_type(request)
            name: str | None = None
            if media == "multipart/form-data":
                try:
                    form = await request.form(max_files=4, max_fields=64, max_part_size=settings.max_body_bytes)
                except Exception as error:  # noqa: BLE001  (python-multipart's and starlette's parse errors)
                    raise ApiError(400, "bad_request", f"unreadable multipart body ({describe_error(error)})") from None
                try:
                    prompts = _prompts(form.getlist("prompt"))
                    upload = form.get("file")
                    if upload is None or isinstance(upload, str):
                        raise ApiError(400, "bad_request", "the multipart body needs a 'file' part holding the "
                                                           ".nk bytes")
                    data = await upload.read()
                    if upload.filename:
                        name = upload.filename[:200]
                    values = {key: form.get(key) for key in GENERATION_FIELDS}
                finally:
                    await form.close()
            elif media in NK_MEDIA_TYPES:
                data = await request.body()
                prompts = _prompts(request.query_params.getlist("prompt"))
                values = {key: request.query_params.get(key) for key in GENERATION_FIELDS}
            else:
                raise ApiError(415, "unsupported_media_type", f"content type {media[:60] or '(none)'!r}; send "
                               "multipart/form-data or application/x-neckkit-nk")
            if not data:
                raise ApiError(400, "bad_bitstream", "the .nk body is empty")
            generation = generation_options(values)
            result = await answer(AskRequest(bytes(data), prompts, generation, name=name), nk=True)
            return JSONResponse({**result.as_dict(), "batch_size": result.batch_size})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        with counted("chat"):
            media = _media_type(request)
            if media != "application/json":
                raise ApiError(415, "unsupported_media_type", f"content type {media[:60] or '(none)'!r}; send "
                                                              "application/json")
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError, RecursionError) as error:
                raise ApiError(400, "bad_request", f"the body is not valid JSON ({error})") from None
            prompt, data_media, data, generation = chat_request(body)
            if data_media in NK_MEDIA_TYPES:
                if not data:
                    raise ApiError(400, "bad_bitstream", "the .nk data URL is empty")
                ask_request, nk = AskRequest(data, [prompt], generation, name="<data-url>"), True
            else:
                image = await asyncio.to_thread(decode_image, data, data_media)
                ask_request, nk = AskRequest(image, [prompt], generation, name="<image>"), False
            result = await answer(ask_request, nk=nk)
            report = result.as_dict()
            return JSONResponse({
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": result.mllm,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answers[0]},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "neckkit": {**{key: report.get(key) for key in CHAT_REPORT_FIELDS},
                            "compressed_here": result.compressed_here, "batch_size": result.batch_size},
            })

    app.add_middleware(UploadLimits, max_bytes=settings.max_body_bytes, read_timeout=settings.body_timeout,
                       max_uploads=settings.max_uploads, on_refused=count_refused, on_uploads=metrics.uploads.set)
    app.add_middleware(AccessLog, enabled=settings.access_log)  # the outermost: it sees UploadLimits' refusals too
    return app


async def warm_up(answerer: Answerer, batcher: Batcher) -> None:
    """Answer :meth:`Answerer.warm_up_request` through ``batcher`` (its threads are the ones clients use).

    Its seconds go to ``answerer.load_seconds["warm_up"]``. A failure is one warning line: the server
    still starts, and its first requests pay for the set-up the warm-up would have done.
    """
    start = time.perf_counter()
    try:
        result = await batcher.submit(answerer.warm_up_request())
    except Exception as error:  # noqa: BLE001  (reported; a real request will show the same error)
        result = error
    answerer.load_seconds["warm_up"] = time.perf_counter() - start
    if not isinstance(result, AskResult):
        print(f"neckkit serve: the warm-up request failed ({describe_error(result)}); the first requests will be "
              "slower", file=sys.stderr, flush=True)
