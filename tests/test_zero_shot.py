"""Zero-shot classifiers: the paper's construction, ImageNet metadata, the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neckkit import NeckkitError
from neckkit.plugins.encoders.clip import build_clip
from neckkit.training.zero_shot import (
    build_text_classifier,
    cache_dir,
    cached_text_classifier,
    classifier_key,
    imagenet_class_names,
    openai_templates,
)

CLIP = build_clip("clip-l", tiny=True)


def test_imagenet_metadata_comes_from_open_clip() -> None:
    names, templates = imagenet_class_names(), openai_templates()
    assert (len(names), len(templates)) == (1000, 80)
    assert names[0] == "tench" and names[999] == "toilet paper"
    assert templates[0] == "a bad photo of a {}." and all("{}" in template for template in templates)


def test_classifier_column_is_renormalised_mean_of_normalised_template_embeddings() -> None:
    names, templates = ["cat", "dog", "goldfish"], openai_templates()
    classifier = build_text_classifier(CLIP.encode_text, names, templates)
    for column, name in enumerate(names):
        embeddings = CLIP.encode_text([template.format(name) for template in templates])
        mean = torch.nn.functional.normalize(embeddings, dim=-1).mean(dim=0)
        torch.testing.assert_close(classifier[:, column], mean / mean.norm())


def test_tiny_clip_imagenet_classifier_is_cached_and_read_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path))
    encoder = build_clip("clip-l", tiny=True)
    names, templates = imagenet_class_names(), openai_templates()[:2]
    classifier = encoder.text_classifier(names, templates)
    assert classifier.shape == (encoder.embed_dim, 1000)
    torch.testing.assert_close(classifier.norm(dim=0), torch.ones(1000))
    [cached] = (tmp_path / "classifiers").iterdir()
    assert cached.suffix == ".safetensors"

    def no_text_forward(texts: list[str]) -> torch.Tensor:
        raise AssertionError("the second call must read the cache")

    monkeypatch.setattr(encoder, "encode_text", no_text_forward)
    assert torch.equal(encoder.text_classifier(names, templates), classifier)


def test_cache_key_changes_with_weights_names_and_templates() -> None:
    base = classifier_key("abc", ["cat"], ["a {}."])
    assert base == classifier_key("abc", ["cat"], ["a {}."])
    assert len({base, classifier_key("abd", ["cat"], ["a {}."]), classifier_key("abc", ["dog"], ["a {}."]),
                classifier_key("abc", ["cat"], ["the {}."]), classifier_key("abc", ["cat", "a {}."], [])}) == 5


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    calls = []

    def encode(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return torch.ones(len(texts), 4)

    first = cached_text_classifier(encode, "fp", ["a"], ["{}"], directory=tmp_path)
    [entry] = (tmp_path / "classifiers").iterdir()
    entry.write_bytes(b"not safetensors")
    second = cached_text_classifier(encode, "fp", ["a"], ["{}"], directory=tmp_path)
    assert calls == [1, 1] and torch.equal(first, second)
    torch.testing.assert_close(first, torch.full((4, 1), 0.5))


def test_empty_classes_or_templates_are_an_error() -> None:
    with pytest.raises(NeckkitError, match="at least one class name and one template"):
        build_text_classifier(CLIP.encode_text, [], ["a {}."])


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("NECKKIT_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "neckkit"
