"""neckkit_yesno: MME-style yes/no questions over neckkit's bundled photos, in pairs (one yes, one no).

``accuracy`` is the fraction of questions answered right; ``accuracy_plus`` (MME's acc+) the fraction of
pairs with both questions right, so a model that always says "yes" scores 0.5 and 0.0.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from neckkit.samples import SAMPLE_DIR

_FIRST_WORD = re.compile(r"[^a-z]*(yes|no)\b")


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    """The doc's photo, RGB."""
    with Image.open(SAMPLE_DIR / doc["image"]) as image:
        return [image.convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, str] | None = None) -> str:
    """The question between the task's (or the model's) pre- and post-prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def parse_answer(text: str) -> str:
    """``"yes"`` or ``"no"`` when the answer starts with that word (case and leading punctuation aside), else ``"other"``."""
    match = _FIRST_WORD.match(text.strip().lower())
    return match.group(1) if match else "other"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """Whether the answer is right, with its pair (``score`` only for ``accuracy``: lmms-eval's per-question
    standard errors, clustered by ``pair_id``, would be wrong for acc+)."""
    right = parse_answer(results[0]) == doc["answer"]
    return {"accuracy": {"pair_id": doc["pair_id"], "score": float(right)},
            "accuracy_plus": {"pair_id": doc["pair_id"], "right": right}}


def aggregate_accuracy(items: list[dict[str, Any]]) -> float:
    """Fraction of questions answered right."""
    return sum(item["score"] for item in items) / len(items)


def aggregate_accuracy_plus(items: list[dict[str, Any]]) -> float:
    """MME's acc+: fraction of pairs whose questions (both, unless ``--limit`` cut a pair) are all right."""
    pairs: dict[str, bool] = {}
    for item in items:
        pairs[item["pair_id"]] = pairs.get(item["pair_id"], True) and item["right"]
    return sum(pairs.values()) / len(pairs)
