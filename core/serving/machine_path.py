"""What serving a trained neck needs besides the pipeline: its codec and encoder rebuilt, and the checks.

The latent is entropy-decoded only; the codec's synthesis transform never runs
(:class:`SynthesisWatch`, and per thread while serving :class:`SynthesisCounter`, count its calls,
so callers can prove it). The pipeline itself is :class:`neckkit.serving.answerer.Answerer`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.host.options import build_recorded
from neckkit.interfaces import MLLM, Codec, VisualEncoder
from neckkit.neck.checkpoint import Checkpoint, ComponentRef, restore_codec_state


def _check_fingerprint(kind: str, ref: ComponentRef, built: str, checkpoint: Checkpoint) -> None:
    """Refuse a rebuilt component whose weights are not the ones recorded in ``meta.json``."""
    if ref.fingerprint is not None and built != ref.fingerprint:
        raise NeckkitError(
            f"the {kind} {ref.name!r} built for {checkpoint.path} has weights {built}, but the neck was trained "
            f"on weights {ref.fingerprint}; pass the {kind} weights it was trained with (--{kind}-weights)"
        )


def carried_codec_weights(host: PluginHost, checkpoint: Checkpoint) -> str | None:
    """The checkpoint's own ``codec.safetensors`` when its options name no weights source, else ``None``.

    A checkpoint whose codec was loaded from a file (an imported release, a run on ``--codec-weights``)
    records no path (paths are local), but it carries the codec's whole state: it is used as the weights,
    so the folder stands alone. Options that choose weights themselves (``quality``, ``tiny``,
    ``random_init``) are left alone: the state is restored over that build.
    """
    from neckkit.host.options import WEIGHT_CHOICES, accepted_options
    from neckkit.neck.checkpoint import CODEC_FILE

    ref = checkpoint.meta.codec
    if not checkpoint.codec_state or any(ref.options.get(key) not in (None, False) for key in WEIGHT_CHOICES):
        return None
    component = host.components("codec").get(ref.name)
    if "weights" not in accepted_options(component.info):
        return None
    return str(checkpoint.path / CODEC_FILE)


def codec_for_checkpoint(host: PluginHost, checkpoint: Checkpoint, weights: str | None = None) -> tuple[str, Codec]:
    """The codec the neck was trained on: its registered name and options, its weights restored.

    ``weights`` replaces random-init options (a codec trained from a weights file); without it, a
    checkpoint that carries its codec's weights uses them (:func:`carried_codec_weights`). The result's
    fingerprint must equal the one in ``meta.json``, so a neck never reads another codec's latent.
    """
    from neckkit.bitstream.container import codec_fingerprint

    ref = checkpoint.meta.codec
    if weights is None:
        weights = carried_codec_weights(host, checkpoint)
    name, codec = build_recorded(host, "codec", ref.name, ref.options, f"{checkpoint.path}/meta.json", weights=weights)
    restore_codec_state(codec, checkpoint)
    codec.eval()
    _check_fingerprint("codec", ref, codec_fingerprint(codec), checkpoint)
    return name, codec


def encoder_for_checkpoint(
    host: PluginHost, checkpoint: Checkpoint, weights: str | None = None
) -> tuple[str, VisualEncoder]:
    """The encoder the neck was trained for, checked against the fingerprint in ``meta.json``."""
    from neckkit.loading.weights import fingerprint

    ref = checkpoint.meta.encoder
    name, encoder = build_recorded(host, "encoder", ref.name, ref.options, f"{checkpoint.path}/meta.json", weights=weights)
    encoder.eval()
    _check_fingerprint("encoder", ref, fingerprint(encoder), checkpoint)
    return name, encoder


def check_mllm(checkpoint: Checkpoint, mllm_name: str, mllm: MLLM) -> None:
    """Refuse a neck trained for another encoder than the one the MLLM reads, naming both."""
    trained_for = checkpoint.meta.encoder.name
    if trained_for != mllm.encoder:
        raise NeckkitError(
            f"the neck in {checkpoint.path} was trained for encoder {trained_for!r}, but MLLM {mllm_name!r} "
            f"reads encoder {mllm.encoder!r}; train a neck with --encoder {mllm.encoder}"
        )
    width = getattr(mllm.visual_encoder, "width", None)
    if width is not None and checkpoint.meta.neck.width != width:  # the same family at another size (qwen3-vl 2b vs 8b)
        options = ", ".join(f"{key}={value}" for key, value in checkpoint.meta.encoder.options.items()) or "none"
        raise NeckkitError(
            f"the neck in {checkpoint.path} gives {checkpoint.meta.neck.width}-wide tokens (encoder {trained_for!r}, "
            f"options {options}), but MLLM {mllm_name!r}'s vision tower is {width} wide: use the MLLM size the neck was "
            "trained for"
        )


def check_nk_codec(checkpoint: Checkpoint, nk_codec: str, source: str) -> None:
    """Refuse a bitstream from another codec than the neck's, naming both."""
    if nk_codec != checkpoint.meta.codec.name:
        raise NeckkitError(
            f"{source} was compressed with codec {nk_codec!r}, but the neck in {checkpoint.path} reads "
            f"codec {checkpoint.meta.codec.name!r}'s latent"
        )


def watched_synthesis(codec: Codec) -> list[nn.Module]:
    """The codec's synthesis modules to count calls of; none for a codec that does not name them."""
    try:
        return codec.synthesis_modules()
    except NeckkitError:
        return []


class SynthesisWatch:
    """Counts forward calls of a codec's synthesis modules (0 on the machine path)."""

    def __init__(self) -> None:
        self.calls = 0

    @contextmanager
    def watching(self, codec: Codec) -> Iterator[SynthesisWatch]:
        handles = [module.register_forward_hook(self._count) for module in watched_synthesis(codec)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _count(self, *_args: Any) -> None:
        self.calls += 1


class SynthesisCounter:
    """Counts a codec's synthesis calls per thread, for as long as it is served (until :meth:`close`).

    Hooks are installed once, so requests decoded at the same time in different threads each see
    only their own calls: read :attr:`calls` before and after a request, in the thread that runs it.
    """

    def __init__(self, codec: Codec) -> None:
        self._local = threading.local()
        self._handles = [module.register_forward_hook(self._count) for module in watched_synthesis(codec)]

    @property
    def calls(self) -> int:
        """Synthesis calls made so far by the calling thread."""
        return getattr(self._local, "calls", 0)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _count(self, *_args: Any) -> None:
        self._local.calls = self.calls + 1
