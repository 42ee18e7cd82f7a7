"""Zero-shot text classifiers for the cross-entropy loss, computed once and cached on disk.

The ImageNet class names and OpenAI's 80 prompt templates come from open_clip's bundled
metadata. A classifier column is the mean of the L2-normalised template embeddings of one
class, renormalised (paper: CLIP zero-shot classification).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from neckkit.errors import NeckkitError
from neckkit.files import atomic_path

TextEncoder = Callable[[list[str]], Tensor]  # texts -> [N, embed_dim]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (open_clip's metadata)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def openai_templates() -> list[str]:
    """OpenAI's 80 ImageNet prompt templates as format strings (``"a photo of a {}."``)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


def cache_dir() -> Path:
    """``$NECKKIT_CACHE_DIR``, else ``~/.cache/neckkit``."""
    return Path(os.environ.get("NECKKIT_CACHE_DIR") or Path.home() / ".cache" / "neckkit")


@torch.no_grad()
def build_text_classifier(
    encode_text: TextEncoder, class_names: Sequence[str], templates: Sequence[str], batch_size: int = 512
) -> Tensor:
    """Classifier [embed_dim, num_classes] with unit-norm columns."""
    if not class_names or not templates:
        raise NeckkitError("a text classifier needs at least one class name and one template")
    texts = [template.format(name) for name in class_names for template in templates]
    embeddings = torch.cat([encode_text(texts[i : i + batch_size]).float() for i in range(0, len(texts), batch_size)])
    embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)  # [C * T, D]
    mean = embeddings.view(len(class_names), len(templates), -1).mean(dim=1)  # [C, D]
    return (mean / mean.norm(dim=-1, keepdim=True)).T.contiguous()  # [D, C]


def classifier_key(weights_fingerprint: str, class_names: Sequence[str], templates: Sequence[str]) -> str:
    """Cache key: the text tower's weights, the class names and the templates."""
    digest = hashlib.sha256(weights_fingerprint.encode())
    for text in (*class_names, "\0", *templates):
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:24]


def cached_text_classifier(
    encode_text: TextEncoder,
    weights_fingerprint: str,
    class_names: Sequence[str],
    templates: Sequence[str],
    directory: Path | None = None,
) -> Tensor:
    """Load the classifier from the cache, or build it with ``encode_text`` and store it."""
    key = classifier_key(weights_fingerprint, class_names, templates)
    path = (directory or cache_dir()) / "classifiers" / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["classifier"]
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    classifier = build_text_classifier(encode_text, class_names, templates)
    with atomic_path(path) as temporary:
        save_file({"classifier": classifier.contiguous().cpu()}, str(temporary))
    return classifier
