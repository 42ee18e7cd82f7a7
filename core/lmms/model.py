"""``neckkit`` as an lmms-eval model: any lmms-eval benchmark answered through a compressed path.

``python -m lmms_eval --model neckkit --model_args mllm=llava-1.5,path=neck,neck=runs/neck336 --tasks mme``.
The model arguments (docs/evaluation.md lists them) choose the MLLM plugin, the path (``uncompressed``,
``reconstruction`` through ``codec`` at ``quality``/``level``, or ``neck`` through a neck checkpoint) and where
the per-image rates go (``rates_file``, JSON lines: lmms-eval carries no per-sample bpp). Each benchmark image
goes through the MLLM's own resize and crop, is coded to real bytes, decoded and answered by a
:class:`~neckkit.serving.Answerer` (:class:`~neckkit.lmms.route.Route`). Only ``generate_until`` tasks are
answered (MME, POPE, MMBench, SEED-Bench, OCRBench, GQA, COCO captions all are); greedy decoding. A document
with other than one image (SEED-Bench's video questions) is answered empty and its rates row says why.
Multi-GPU: ``accelerate launch -m lmms_eval ...``; each process answers its share and writes its own rates file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lmms_eval.api.model import lmms
from loguru import logger
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from neckkit.errors import UsageError
from neckkit.lmms.route import Route, RouteAnswer

__all__ = ["NeckkitLMM", "RouteOptions", "build_route", "rates_path"]

DEFAULT_RATES_FILE = "neckkit_rates.jsonl"
GENERATION_KEYS = ("max_new_tokens",)  # what reaches MLLM.generate; decoding is greedy
DEFAULT_MAX_NEW_TOKENS = 64


def rates_path(rates_file: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """Where this process writes its rates: ``rates_file``, or ``<stem>.rank<N><suffix>`` under ``accelerate``."""
    path = Path(rates_file)
    return path if world_size <= 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


class RouteOptions(BaseModel):
    """The model arguments that choose a path (docs/evaluation.md lists them); unknown names are refused."""

    model_config = ConfigDict(extra="forbid")

    mllm: str = "llava-1.5"
    path: Literal["uncompressed", "reconstruction", "neck"] = "neck"
    neck: str | None = None
    codec: str | None = None
    quality: int | None = None
    level: float | None = None
    mllm_weights: str | None = None
    codec_weights: str | None = None
    mllm_opt: list[str] = []  # name=value items (lmms-eval's command line joins them with ";")
    codec_opt: list[str] = []
    tiny: bool = False
    random_init: bool = False
    device: str = "auto"

    @field_validator("mllm_opt", "codec_opt", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value in (None, ""):
            return []
        return [item for item in value.split(";") if item] if isinstance(value, str) else value

    @classmethod
    def parse(cls, arguments: Mapping[str, Any]) -> RouteOptions:
        """The options from lmms-eval's ``--model_args`` (strings, numbers, booleans), or one line saying what is wrong."""
        try:
            return cls(**{key: value for key, value in arguments.items() if value is not None})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'model_args'}: {item['msg']}"
                                 for item in error.errors())
            raise UsageError(f"neckkit model_args: {problems} (names: {', '.join(cls.model_fields)})") from None


def build_route(options: RouteOptions | None = None, **arguments: Any) -> Route:
    """Load the MLLM (and the neck, or the codec) once, as ``neckkit ask`` and ``neckkit eval`` would; ``arguments``
    are :class:`RouteOptions` fields."""
    from neckkit.cli.components import parse_component_options
    from neckkit.host.manager import get_host
    from neckkit.host.options import build_component
    from neckkit.serving.answerer import Answerer
    from neckkit.training.distributed import device_for, launched_world

    o = options if options is not None else RouteOptions.parse(arguments)
    if o.path == "neck" and o.neck is None:
        raise UsageError("path=neck needs neck=RUN (a neck checkpoint or training run)")
    if o.path == "reconstruction" and o.codec is None:
        raise UsageError("path=reconstruction needs codec=NAME (and quality=Q)")
    if o.path != "neck" and o.neck is not None:
        raise UsageError(f"neck= is read on path=neck only, not path={o.path}")
    host = get_host()
    flags = {"tiny": o.tiny, "random_init": o.random_init}
    mllm_options = parse_component_options(o.mllm_opt)
    mllm_options.update({key: value for key, value in {"weights": o.mllm_weights, **flags}.items() if value})
    target = device_for(launched_world(), o.device)  # cuda: this process's GPU under accelerate launch
    if o.path == "neck":
        answerer = Answerer.load(host, str(o.neck), o.mllm, mllm_options, codec_weights=o.codec_weights, device=target)
        answerer.mllm.to(target).eval()
        return Route("neck", answerer, label=Path(str(o.neck)).name, level=o.level)
    mllm_name, model = build_component(host, "mllm", o.mllm, mllm_options)
    answerer = Answerer(None, mllm_name, model.to(target).eval())
    if o.path == "uncompressed":
        return Route("uncompressed", answerer)
    codec_options = parse_component_options(o.codec_opt)
    codec_options.update({key: value for key, value in {"quality": o.quality, "weights": o.codec_weights,
                                                        **flags}.items() if value})
    codec_name, codec_model = build_component(host, "codec", str(o.codec), codec_options)
    if hasattr(codec_model, "eval"):
        codec_model.eval()  # a learned codec; an image codec (JPEG, AVIF...) is no nn.Module
    recorded = {key: value for key, value in codec_options.items() if key != "weights"}
    label = f"{codec_name} q{o.quality}" if o.quality is not None else codec_name
    return Route("reconstruction", answerer, label=label, codec_name=codec_name, codec=codec_model, options=recorded,
                 level=o.level)


class NeckkitLMM(lmms):
    """An lmms-eval model answering through one neckkit path (:class:`~neckkit.lmms.route.Route`)."""

    is_simple = True

    def __init__(
        self,
        batch_size: int | str | None = 8,
        max_new_tokens: int | str | None = None,
        rates_file: str = DEFAULT_RATES_FILE,
        route: Route | None = None,
        max_batch_size: Any = None,  # lmms-eval's own; neckkit batches by batch_size
        **model_args: Any,  # RouteOptions fields
    ) -> None:
        super().__init__()
        if route is not None and model_args:
            raise UsageError(f"a NeckkitLMM given a route takes no model arguments, got {', '.join(model_args)}")
        self.route = route if route is not None else build_route(RouteOptions.parse(model_args))
        size = str(batch_size if batch_size not in (None, "") else 8).split(":")[0]
        self.batch_size_per_gpu = max(1, int(size)) if size != "auto" else 8
        self.max_new_tokens = None if max_new_tokens in (None, "") else int(max_new_tokens)
        self.rates_file = rates_file
        self.rows_written = 0
        self._warned = False
        self._rank, self._world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def device(self) -> torch.device:
        encoder = self.route.mllm.visual_encoder
        return next(encoder.parameters(), torch.empty(0)).device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    # -- lmms-eval's request types ------------------------------------------------------------------------

    def generate_until(self, requests: list[Any]) -> list[str]:
        """Answers to ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)`` requests, in their order."""
        answers: list[str] = []
        for start in range(0, len(requests), self.batch_size_per_gpu):
            answers.extend(self._answer_chunk(requests[start : start + self.batch_size_per_gpu]))
        return answers

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("the neckkit model answers generate_until tasks only (MME, POPE, MMBench, "
                                  "SEED-Bench, OCRBench, GQA, COCO captions); loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("the neckkit model answers single-round generate_until tasks only")

    # -- one chunk ----------------------------------------------------------------------------------------

    def _answer_chunk(self, chunk: Sequence[Any]) -> list[str]:
        from neckkit.bitstream.images import image_to_tensor

        images, prompts, generation, where, refused = [], [], [], [], {}
        for index, request in enumerate(chunk):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
            where.append((task, split, doc_id, _stops(gen_kwargs)))
            visuals = [v for v in doc_to_visual(self.task_dict[task][split][doc_id]) if v is not None]
            if len(visuals) != 1 or not hasattr(visuals[0], "convert"):  # e.g. SEED-Bench's video questions
                refused[index] = RouteAnswer("", "", (0, 0), (0, 0), {}, (
                    f"{task} document {doc_id}: the neckkit model reads exactly one image per question, got "
                    f"{len(visuals)} visual(s) ({', '.join(type(v).__name__ for v in visuals) or 'none'}); "
                    "answered empty"))
                continue
            images.append(image_to_tensor(visuals[0]))
            prompts.append(context)
            generation.append(self._generation(gen_kwargs))
        routed = iter(self.route.answer(images, prompts, generation) if images else [])
        answered = [refused[index] if index in refused else next(routed) for index in range(len(chunk))]
        self._write_rates(answered, where)
        if refused and not self._warned:
            logger.warning(next(iter(refused.values())).error + " (each such document is counted in the rates file)")
            self._warned = True
        return [_truncate(item.answer, stops) for item, (_, _, _, stops) in zip(answered, where, strict=True)]

    def _generation(self, gen_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        tokens = self.max_new_tokens or gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
        return {"max_new_tokens": int(tokens)}

    def _write_rates(self, answered: list[RouteAnswer], where: list[tuple[str, str, Any, list[str]]]) -> None:
        """One row per question: the image (digest, sizes) and the rates of its file, or the error."""
        route = self.route
        target = rates_path(self.rates_file, self._rank, self._world_size)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as handle:
            for item, (task, split, doc_id, _) in zip(answered, where, strict=True):
                row = {"task": task, "split": split, "doc_id": doc_id, "image": item.image, "height": item.size[0],
                       "width": item.size[1], "coded_height": item.coded_size[0], "coded_width": item.coded_size[1],
                       "path": route.path, "point": route.label, "codec": route.codec_name, "level": route.level,
                       "quality": route.options.get("quality"), "bytes": item.rates.get("bytes"),
                       "bpp": item.rates.get("bpp"), "payload_bpp": item.rates.get("payload_bpp"), "error": item.error}
                handle.write(json.dumps(row, default=str) + "\n")
                self.rows_written += 1


def _stops(gen_kwargs: Mapping[str, Any]) -> list[str]:
    until = gen_kwargs.get("until") or []
    return [until] if isinstance(until, str) else [stop for stop in until if stop]


def _truncate(text: str, stops: Sequence[str]) -> str:
    """The answer up to its first stop sequence (lmms-eval's ``until``)."""
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text
