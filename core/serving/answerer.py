"""The served path as one object: load a neck, its codec and an MLLM once, then answer many requests.

``.nk`` bitstream -> entropy decoding (the codec's ``decompress_latent``) -> ``y_hat`` -> the neck ->
tokens entering the MLLM's encoder at ``entry_layer`` -> the LLM -> answers; no image is reconstructed.
``neckkit ask`` is one :meth:`Answerer.answer` call; a server keeps one :class:`Answerer` and hands it
batches (:meth:`Answerer.answer_batch`), or runs the two stages apart: :meth:`Answerer.prepare` per
request as it arrives (reading and entropy decoding), :meth:`Answerer.answer_prepared` per batch (the
neck and the MLLM), so decoding the next requests overlaps the model call of the current batch.

Thread-safety: after :meth:`Answerer.load` returns, :meth:`~Answerer.answer` and
:meth:`~Answerer.answer_batch` may be called from any number of threads at once. Reading and
entropy decoding run concurrently (a batch's requests in the answerer's thread pool); compressing
an image takes one lock (CompressAI's ``compress`` is not thread-safe); the neck and MLLM calls are
serialised by another, since one forward pass at a time uses
the accelerator best and ``generate`` is not documented as re-entrant. :meth:`~Answerer.close`
must not overlap other calls.

Isolation: with ``decode_workers`` (what ``neckkit serve`` uses) entropy decoding runs in worker
processes (:class:`~neckkit.serving.decode_pool.DecodePool`), so a bitstream that crashes or hangs
the decoder costs only its own request; without, it runs in this process (``neckkit ask``). A
batch whose model call raises is split in halves and retried, so a request that breaks it fails
alone.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neckkit.bitstream import NkFile, bpp, check_codec, decode_nk, read_nk, stream_fingerprint
from neckkit.bitstream.coding import compress_image
from neckkit.bitstream.decoding import decode_latent
from neckkit.bitstream.images import load_image
from neckkit.errors import NeckkitError, describe_error
from neckkit.host.manager import PluginHost
from neckkit.host.options import build_component
from neckkit.interfaces import MLLM, Codec, Grid, grid_options
from neckkit.neck.checkpoint import Checkpoint, build_neck, load_checkpoint
from neckkit.neck.regions import latent_view, token_grid_of
from neckkit.neck.transform import TransformNeck
from neckkit.serving.decode_pool import DecodePool, DecodeStats, DecodeWorkers
from neckkit.serving.decode_worker import DecoderSpec, plugin_sources
from neckkit.serving.errors import AnswerFailed
from neckkit.serving.machine_path import SynthesisCounter, check_mllm, check_nk_codec, codec_for_checkpoint
from neckkit.serving.requests import AskRequest, AskResult, is_nk_path
from neckkit.serving.stopwatch import Stopwatch

__all__ = ["Answerer", "Prepared"]


@dataclass
class Prepared:
    """A request after reading and entropy decoding (:meth:`Answerer.prepare`): what the neck takes next."""

    request: AskRequest
    watch: Stopwatch
    inputs: Tensor  # y_hat [1, C, h, w] cropped to the encoder's view (neck path) or pixels [1, 3, H, W]
    nk: NkFile | None = None
    synthesis_calls: int = 0
    compressed_here: bool = False
    grid: Grid | None = None  # a native-resolution encoder's token grid (gh, gw) for the image; None: square

    def batch_key(self) -> tuple[Any, ...]:
        """Requests share one neck and MLLM call when their path, input shape, token grid and generation
        options match (so images of different sizes go in different calls)."""
        return (self.request.uncompressed, tuple(self.inputs.shape), self.grid, self.request.generation_key())


class Answerer:
    """A neck checkpoint, its codec and an MLLM, loaded once, answering questions about bitstreams.

    Build it with :meth:`load`. ``load_seconds`` holds the load stages (``load_mllm``, ``load_neck``);
    each result's ``seconds`` holds its own stages (``read``, ``compress``, ``entropy_decode``,
    ``neck``, ``mllm``). Without a codec and neck (``machine_path=False``) it serves the
    uncompressed baseline only.
    """

    def __init__(
        self,
        checkpoint: Checkpoint | None,
        mllm_name: str,
        mllm: MLLM,
        *,
        codec_name: str | None = None,
        codec: Codec | None = None,
        neck: TransformNeck | None = None,
        load_seconds: Mapping[str, float] | None = None,
        decode_threads: int = 4,
        decode_pool: DecodePool | None = None,
    ) -> None:
        if (codec is None) != (neck is None):
            raise NeckkitError("an answerer needs both the codec and the neck, or neither (uncompressed only)")
        if checkpoint is not None:
            check_mllm(checkpoint, mllm_name, mllm)
        elif neck is not None:
            raise NeckkitError("an answerer with a neck needs the neck's checkpoint")
        self.checkpoint, self.mllm_name, self.mllm = checkpoint, mllm_name, mllm
        self.codec_name, self.codec, self.neck = codec_name, codec, neck
        self.codec_fingerprint = stream_fingerprint(codec) if codec is not None else None
        self.load_seconds = dict(load_seconds or {})
        self._synthesis = SynthesisCounter(codec) if codec is not None else None
        self._decode_pool = decode_pool
        self._device = next(neck.parameters()).device if neck is not None else torch.device("cpu")
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_threads), thread_name_prefix="neckkit-decode")
        self._model_lock = threading.Lock()
        # CompressAI's compress is not thread-safe: two threads coding at once in one model hung in its rANS
        # encoder or wrote streams that do not decode (seen with ELIC). Images are compressed one at a time.
        self._compress_lock = threading.Lock()
        # Codecs build their entropy-coder tables lazily on the first decode: let one thread do it.
        self._first_decode = threading.Lock()
        self._decoded_once = False

    @classmethod
    def load(
        cls,
        host: PluginHost,
        neck: str | os.PathLike[str] | Checkpoint,
        mllm: str,
        mllm_options: Mapping[str, Any],
        *,
        codec_weights: str | None = None,
        machine_path: bool = True,
        device: str | torch.device | None = None,
        decode_threads: int = 4,
        decode_workers: DecodeWorkers | None = None,
    ) -> Answerer:
        """Load everything once, with the checks ``neckkit ask`` makes.

        ``neck``: a checkpoint or run folder. ``mllm_options``: factory options (see
        ``neckkit.cli.components.component_options``). ``codec_weights``: the codec weights the neck
        was trained from, when they are not in the checkpoint. ``device``: where the neck runs
        (default: the device of the MLLM's visual encoder). ``machine_path=False``: no codec and no
        neck (the uncompressed baseline only). The codec always runs on the CPU. ``decode_workers``:
        entropy-decode in that many worker processes (started while the MLLM loads; ``load_decoders``
        in ``load_seconds`` is the wait for them after it), instead of in this process.
        """
        checkpoint = neck if isinstance(neck, Checkpoint) else load_checkpoint(neck)
        seconds: dict[str, float] = {}
        codec_name = codec = neck_module = pool = None
        if machine_path and decode_workers is not None and decode_workers.workers > 0:
            codec_name, codec = codec_for_checkpoint(host, checkpoint, codec_weights)
            weights = codec_weights  # a file, made absolute: the workers' working folder may differ
            if weights is not None and os.path.exists(weights):
                weights = os.path.abspath(weights)
            spec = DecoderSpec(os.path.abspath(checkpoint.path), weights, plugin_sources(host), tuple(sys.path),
                               decode_workers.memory_mb)
            pool = DecodePool(spec, decode_workers, preload=[type(codec).__module__])
        try:
            start = time.perf_counter()
            mllm_name, model = build_component(host, "mllm", mllm, dict(mllm_options))
            seconds["load_mllm"] = time.perf_counter() - start
            check_mllm(checkpoint, mllm_name, model)
            if machine_path:
                if codec is None:
                    codec_name, codec = codec_for_checkpoint(host, checkpoint, codec_weights)
                start = time.perf_counter()
                if device is None:
                    device = next(model.visual_encoder.parameters(), torch.empty(0)).device
                neck_module = build_neck(checkpoint).to(device).eval()
                seconds["load_neck"] = time.perf_counter() - start
            if pool is not None:
                start = time.perf_counter()
                pool.wait_ready(codec_name, stream_fingerprint(codec))
                seconds["load_decoders"] = time.perf_counter() - start
        except BaseException:
            if pool is not None:
                pool.close()
            raise
        return cls(checkpoint, mllm_name, model, codec_name=codec_name, codec=codec, neck=neck_module,
                   load_seconds=seconds, decode_threads=decode_threads, decode_pool=pool)

    @property
    def decode_workers(self) -> int:
        """How many worker processes entropy-decode (0: this process does)."""
        return self._decode_pool.settings.workers if self._decode_pool is not None else 0

    @property
    def entry_layer(self) -> int:
        """The encoder block the neck's tokens enter (from the checkpoint)."""
        if self.checkpoint is None:
            raise NeckkitError("this answerer has no neck (the uncompressed baseline only)")
        return self.checkpoint.meta.entry_layer

    def warm_up_request(self, max_new_tokens: int = 2) -> AskRequest:
        """A blank image's request that takes the whole served path once, so the first client does not pay for it.

        The first call of each stage builds what later calls reuse (entropy-coder tables, kernels, the
        thread's OpenMP team, the tokenizer's and ``generate``'s lazy set-up; on a GPU the CUDA context
        and its libraries): several times a steady request's latency. The image is the codec's smallest
        (``pad_multiple`` pixels a side), so it is compressed here, entropy-decoded where requests are
        decoded, then read by the neck and the MLLM with ``max_new_tokens`` tokens. Without a codec it
        is the uncompressed baseline at the encoder's size.
        """
        if self.codec is None:
            side = self.mllm.visual_encoder.image_size  # native resolution: a typical square
            return AskRequest(torch.zeros(1, 3, side, side), ["warm-up"], {"max_new_tokens": max_new_tokens},
                              uncompressed=True, name="<warm-up>")
        side = self.codec.pad_multiple
        return AskRequest(torch.zeros(1, 3, side, side), ["warm-up"], {"max_new_tokens": max_new_tokens},
                          name="<warm-up>")

    def decode_stats(self) -> DecodeStats | None:
        """The decode workers' crashes, timeouts and replacements (None when decoding in-process)."""
        return self._decode_pool.stats() if self._decode_pool is not None else None

    # -- answering ------------------------------------------------------------------------------------

    def answer(self, request: AskRequest) -> AskResult:
        """One request's answers (a :class:`NeckkitError` for anything wrong with it)."""
        result = self.answer_batch([request])[0]
        assert isinstance(result, AskResult)
        return result

    def answer_batch(
        self, requests: Sequence[AskRequest], *, return_errors: bool = False
    ) -> list[AskResult | NeckkitError]:
        """Answers to several requests, in their order, sharing neck and MLLM calls.

        Reading and entropy decoding run in parallel threads; then the requests whose path, latent
        (or pixel) shape and generation options match go through the neck, the encoder and the LLM
        as one batch. Greedy answers equal those of one request at a time. A request's error is its
        :class:`NeckkitError`: raised (the first, in request order) or, with ``return_errors``, put
        in its place in the list while the other requests are answered. A model call that raises
        is retried on each half of its batch, down to the request that fails alone; with
        ``return_errors`` an unexpected exception of that request becomes its :class:`AnswerFailed`.
        """
        requests = list(requests)
        if len(requests) > 1:
            prepared = list(self._pool.map(self.prepare, requests))
        else:
            prepared = [self.prepare(request) for request in requests]
        return self.answer_prepared(prepared, return_errors=return_errors)

    def prepare(self, request: AskRequest) -> Prepared | NeckkitError:
        """Stage 1 of one request: read it, compress an image, entropy-decode; its error if anything is wrong.

        Thread-safe; with decode workers, the decoding runs in one of them.
        """
        try:
            with torch.no_grad():  # grad mode is per thread
                return self._prepare(request)
        except NeckkitError as error:
            return error

    def answer_prepared(
        self, prepared: Sequence[Prepared | NeckkitError], *, return_errors: bool = False
    ) -> list[AskResult | NeckkitError]:
        """Stage 2: the answers to prepared requests, in their order; errors as in :meth:`answer_batch`."""
        results: list[AskResult | BaseException | None] = [
            item if isinstance(item, NeckkitError) else None for item in prepared
        ]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, item in enumerate(prepared):
            if isinstance(item, Prepared):
                groups.setdefault(item.batch_key(), []).append(index)
        for indices in groups.values():
            answered = self._run_group([prepared[index] for index in indices])  # type: ignore[misc]
            for index, result in zip(indices, answered, strict=True):
                results[index] = result
        for index, result in enumerate(results):
            if isinstance(result, BaseException) and not return_errors:
                raise result
            if isinstance(result, Exception) and not isinstance(result, NeckkitError):
                shown = prepared[index].request.shown_source  # type: ignore[union-attr]
                results[index] = AnswerFailed(f"{shown}: answering failed ({describe_error(result)})")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the decoding threads and worker processes, and remove the codec's hooks."""
        self._pool.shutdown(wait=True)
        if self._decode_pool is not None:
            self._decode_pool.close()
        if self._synthesis is not None:
            self._synthesis.close()

    def __enter__(self) -> Answerer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- stage 1, per request (threads): read, compress, entropy-decode ------------------------------

    def _prepare(self, request: AskRequest) -> Prepared:
        watch, shown = Stopwatch(), request.shown_source
        if request.uncompressed:
            image = self._read_image(request.source, shown, watch)
            with watch.stage("mllm"):  # the encoder's own preprocessing, as part of the MLLM stage
                pixels = self.mllm.visual_encoder.preprocess(image)  # [1, 3, S, S]
            return Prepared(request, watch, pixels)
        if self.codec is None or self._synthesis is None:
            raise NeckkitError("this answerer was loaded for the uncompressed baseline only (no codec, no neck)")
        before, compressed_here = self._synthesis.calls, False
        source = request.source
        if isinstance(source, (NkFile, bytes, bytearray, memoryview)) or is_nk_path(source):
            with watch.stage("read"):
                if isinstance(source, NkFile):
                    nk = source
                elif is_nk_path(source):
                    nk = read_nk(source)
                else:
                    nk = decode_nk(bytes(source), source=shown)
            check_nk_codec(self.checkpoint, nk.codec, shown)
            check_codec(nk, self.codec_name or "", self.codec_fingerprint or "", source=shown)
        else:
            image = self._read_image(source, shown, watch)
            assert self.checkpoint is not None  # a codec comes with its neck's checkpoint
            with watch.stage("compress"), self._compress_lock:  # the image as it is, like `neckkit compress`
                nk = compress_image(self.codec, image, name=self.codec_name or "", fingerprint=self.codec_fingerprint,
                                    options=self.checkpoint.meta.codec.options, level=request.level)
            compressed_here = True
        if self.neck is not None and nk.level is not None:
            try:
                self.neck.check_level(float(nk.level))  # a conditioned neck: inside the levels it was trained on
            except NeckkitError as error:
                raise NeckkitError(f"{shown}: {error}") from None
        with watch.stage("entropy_decode"):
            y_hat, worker_calls = self._decode(nk, shown)  # [1, C, h, w]
        encoder = self.mllm.visual_encoder
        try:
            y_hat = latent_view(y_hat, nk.original_size, nk.padding, encoder)  # the region the baseline sees
            grid = token_grid_of(encoder, nk.original_size)
        except NeckkitError as error:
            raise NeckkitError(f"{shown}: {error}") from None
        return Prepared(request, watch, y_hat, nk, self._synthesis.calls - before + worker_calls, compressed_here,
                        grid)

    @staticmethod
    def _read_image(source: Any, shown: str, watch: Stopwatch) -> Tensor:
        with watch.stage("read"):
            if isinstance(source, Tensor):
                image = source.unsqueeze(0) if source.ndim == 3 else source
                if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3 or not image.is_floating_point():
                    raise NeckkitError(f"{shown}: an image is a float tensor [1, 3, H, W] in [0, 1], "
                                       f"got {source.dtype} {list(source.shape)}")
                return image.float().cpu()
            if isinstance(source, (str, os.PathLike)):
                return load_image(source)
        raise NeckkitError(f"{shown}: the uncompressed baseline needs an image (a file or a tensor), not a bitstream")

    def _decode(self, nk: NkFile, shown: str) -> tuple[Tensor, int]:
        """``y_hat`` and the synthesis calls made elsewhere (a worker's; this thread's are counted here)."""
        if self._decode_pool is not None:
            return self._decode_pool.decode(nk, shown)
        if self._decoded_once:
            return self._entropy_decode(nk, shown), 0
        with self._first_decode:
            y_hat = self._entropy_decode(nk, shown)
            self._decoded_once = True
            return y_hat, 0

    def _entropy_decode(self, nk: NkFile, shown: str) -> Tensor:
        assert self.codec is not None
        return decode_latent(self.codec, nk, source=shown)

    # -- stage 2, per batch (one at a time): neck, encoder, LLM -----------------------------------------

    def _run_group(self, members: list[Prepared]) -> list[AskResult | BaseException]:
        """``_run_batch``, bisected when it raises: the others still get answers, the culprit its error."""
        try:
            return list(self._run_batch(members))
        except Exception as error:  # noqa: BLE001  (kept for the request it belongs to)
            if len(members) == 1:
                return [error]
        half = len(members) // 2
        return self._run_group(members[:half]) + self._run_group(members[half:])

    def _run_batch(self, members: list[Prepared]) -> list[AskResult]:
        counts = [len(member.request.prompts) for member in members]
        prompts = [prompt for member in members for prompt in member.request.prompts]
        first = members[0].request
        repeats = torch.tensor(counts)
        with self._model_lock, torch.no_grad():
            start = time.perf_counter()
            if first.uncompressed:
                pixels = torch.cat([member.inputs for member in members]).repeat_interleave(repeats, dim=0)
                neck_seconds = None
                answers = self.mllm.generate_from_pixels(pixels, prompts, **first.generation)
            else:
                assert self.neck is not None
                y_hat = torch.cat([member.inputs for member in members]).to(self._device)  # [B, C, h, w]
                grid = members[0].grid  # one per batch (batch_key)
                tokens = self._neck_tokens(y_hat, [member.nk.level if member.nk else None for member in members], grid)
                neck_seconds = time.perf_counter() - start
                tokens = tokens.repeat_interleave(repeats.to(tokens.device), dim=0)  # [sum of prompts, T, width]
                answers = self.mllm.generate(tokens, prompts, start=self.entry_layer, **first.generation,
                                             **grid_options(self.mllm.visual_encoder, grid))
            mllm_seconds = time.perf_counter() - start - (neck_seconds or 0.0)
        if len(answers) != len(prompts):
            raise NeckkitError(f"MLLM {self.mllm_name!r} gave {len(answers)} answers to {len(prompts)} prompts")
        results, offset = [], 0
        for member, count in zip(members, counts, strict=True):
            results.append(self._result(member, answers[offset : offset + count], neck_seconds, mllm_seconds,
                                        len(members)))
            offset += count
        return results

    def _neck_tokens(self, y_hat: Tensor, levels: list[int | float | None], grid: Grid | None = None) -> Tensor:
        """[B, T, width] entering block ``entry_layer``; each file's own level goes to the neck (one batch)."""
        assert self.neck is not None
        native = {"grid": grid} if grid is not None else {}  # a native-resolution encoder's token grid
        if all(level is None for level in levels):
            return self.neck(y_hat, **native)
        if any(level is None for level in levels):  # decode_latent gives every file of one codec a level or none
            raise NeckkitError("one batch mixes files with and without a rate level")
        level = torch.tensor([float(value) for value in levels], device=y_hat.device)  # [B]
        return self.neck(y_hat, level=level, **native)

    def _result(self, member: Prepared, answers: list[str], neck_seconds: float | None, mllm_seconds: float,
                batch_size: int) -> AskResult:
        seconds = dict(member.watch.seconds)
        if neck_seconds is not None:
            seconds["neck"] = neck_seconds
        seconds["mllm"] = seconds.get("mllm", 0.0) + mllm_seconds
        request = member.request
        result = AskResult(source=request.shown_source, mllm=self.mllm_name, prompts=list(request.prompts),
                           path="uncompressed" if request.uncompressed else "neck", answers=list(answers),
                           seconds=seconds, compressed_here=member.compressed_here, batch_size=batch_size)
        if member.nk is not None:
            rates = bpp(member.nk)
            result.codec, result.bpp, result.payload_bpp = self.codec_name, rates.file_bpp, rates.payload_bpp
            result.level = member.nk.level
            result.latent_shape, result.synthesis_calls = list(member.inputs.shape), member.synthesis_calls
            grid = member.grid or (self.mllm.visual_encoder.grid,) * 2
            result.token_grid = [int(grid[0]), int(grid[1])]
        return result
