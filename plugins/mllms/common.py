"""What the MLLM plugins share: pairing prompts with a batch of images, ``generate``'s settings, and how
errors about a ``save_pretrained`` folder read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from neckkit.plugin_api import NeckkitError, Wording

GENERATION_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_p", "num_beams")


def saved_model_wording(name: str, hub_id: str) -> Wording:
    """How errors about an MLLM's weights read when they are a hub id or a folder ``save_pretrained`` wrote for
    the model and its processor, with ``random_init`` as the fallback (see ``neckkit.loading.hub.WeightsSource``)."""
    return Wording(
        name=name,
        hub_id=hub_id,
        folder="save_pretrained wrote (model and processor)",
        folder_hint=(
            "The folder must hold what save_pretrained writes for the model and its processor; "
            "pass another with --mllm-weights, or use --mllm-opt random_init=true"
        ),
        flag="--mllm-weights",
        fallback="--mllm-opt random_init=true",
    )


def pair_prompts(prompt: str | Sequence[str], images: int) -> list[str]:
    """The prompts, one per answer: B images and one prompt, one image and P prompts, or B and B."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(text, str) for text in prompts):
        raise NeckkitError("prompt must be a string or a non-empty list of strings")
    if len(prompts) == images or images == 1:
        return prompts
    if len(prompts) == 1:
        return prompts * images
    raise NeckkitError(
        f"got {images} images and {len(prompts)} prompts; pass one prompt, one image, or as many prompts as images"
    )


def repeat_batch(batch: Tensor, count: int) -> Tensor:
    """``batch`` with ``count`` items: one image expanded (not copied) for several prompts, else as it is."""
    return batch if batch.shape[0] == count else batch.expand(count, *batch.shape[1:])


def generation_settings(options: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """``generate`` keywords from :data:`GENERATION_OPTIONS` (checked by the caller); ``max_new_tokens``: the default.

    Greedy unless ``do_sample``; ``temperature`` and ``top_p`` only when sampling (they mean nothing
    to greedy or beam search).
    """
    settings: dict[str, Any] = {
        "max_new_tokens": int(options.get("max_new_tokens") or max_new_tokens),
        "do_sample": bool(options.get("do_sample", False)),
        "num_beams": int(options.get("num_beams") or 1),
    }
    if settings["do_sample"]:
        settings.update({key: float(options[key]) for key in ("temperature", "top_p") if options.get(key) is not None})
    return settings
