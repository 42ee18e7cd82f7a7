"""neckkit_caption: one COCO-style caption per bundled photo, scored corpus-level against hand-written references.

BLEU-4 and CIDEr-D come from :func:`neckkit.evaluation.text_metrics.score_captions` with its pure-Python
tokenizer (no Java). CIDEr's IDF is taken from these four photos' references, as the COCO evaluation does
over its own test set.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from neckkit.evaluation.text_metrics import CaptionScores, score_captions
from neckkit.samples import SAMPLE_DIR

PROMPT = "Provide a one-sentence caption for the provided image."


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    """The doc's photo, RGB."""
    with Image.open(SAMPLE_DIR / doc["image"]) as image:
        return [image.convert("RGB")]


def doc_to_text(doc: dict[str, Any]) -> str:
    """The same caption request for every photo."""
    return PROMPT


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """The candidate caption with its photo and references, for the corpus-level aggregations."""
    item = {"image": doc["image"], "caption": results[0], "references": doc["captions"]}
    return {"bleu4": item, "cider": item}


def _scores(items: list[dict[str, Any]]) -> CaptionScores:
    candidates = {item["image"]: item["caption"] for item in items}
    references = {item["image"]: item["references"] for item in items}
    return score_captions(candidates, references, tokenizer="simple", meteor=False, spice=False)


def aggregate_bleu4(items: list[dict[str, Any]]) -> float:
    """Corpus BLEU-4 (COCO caption evaluation)."""
    return _scores(items).bleu4


def aggregate_cider(items: list[dict[str, Any]]) -> float:
    """CIDEr-D, the mean over photos (COCO caption evaluation)."""
    return _scores(items).cider
