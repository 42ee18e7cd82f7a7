"""Shared helpers: weight fingerprints, seeded init, image preprocessing, lazy factories."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neckkit import PluginError
from neckkit.host.registry import lazy_factory
from neckkit.interfaces.preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    normalize,
    resize_center_crop_normalize,
    resize_square_normalize,
)
from neckkit.loading.weights import few_names, fingerprint, seeded_init, state_dict_mismatches


def test_fingerprint_follows_values_names_and_dtypes_only() -> None:
    with seeded_init(1):
        a = nn.Linear(4, 3)
    with seeded_init(1):
        b = nn.Linear(4, 3)
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 16
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) != fingerprint(a.to(torch.float64))
    assert fingerprint(nn.Sequential(a)) != fingerprint(a)  # names count: "0.weight" vs "weight"


def test_seeded_init_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded_init(0):
        first = torch.rand(2)
    with seeded_init(0):
        second = torch.rand(2)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_next)


def test_center_crop_keeps_the_middle_of_the_short_side_resized_image() -> None:
    image = torch.zeros(1, 3, 100, 300)
    image[..., 50:250] = 1.0  # white around the middle third, black at the sides
    pixels = resize_center_crop_normalize(image, 50, (0, 0, 0), (1, 1, 1))
    assert pixels.shape == (1, 3, 50, 50)
    torch.testing.assert_close(pixels, torch.ones(1, 3, 50, 50))


def test_square_resize_keeps_the_whole_image() -> None:
    image = torch.zeros(1, 3, 100, 300)
    image[..., 100:200] = 1.0
    pixels = resize_square_normalize(image, 30, (0, 0, 0), (1, 1, 1))
    assert pixels.shape == (1, 3, 30, 30)
    assert pixels[0, 0, 0, 0] == 0 and pixels[0, 0, 0, 15] == 1 and pixels[0, 0, 0, 29] == 0


def test_normalize_uses_openai_statistics_and_clamps_overshoot() -> None:
    x = torch.tensor([1.2, 0.5, -0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    expected = [(1.0 - OPENAI_MEAN[0]) / OPENAI_STD[0], (0.5 - OPENAI_MEAN[1]) / OPENAI_STD[1], -OPENAI_MEAN[2] / OPENAI_STD[2]]
    torch.testing.assert_close(normalize(x, OPENAI_MEAN, OPENAI_STD)[0, :, 0, 0], torch.tensor(expected))


@pytest.mark.parametrize("shape", [(3, 10, 10), (1, 1, 10, 10), (1, 4, 10, 10)])
def test_preprocessing_rejects_non_rgb_batches(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected images \\[B, 3, H, W\\]"):
        resize_center_crop_normalize(torch.zeros(shape), 8, OPENAI_MEAN, OPENAI_STD)


def test_lazy_factory_imports_on_call_and_binds_keywords() -> None:
    factory = lazy_factory("collections:OrderedDict", a=1)
    assert factory(b=2) == {"a": 1, "b": 2}
    assert factory.__name__ == "lazy(collections:OrderedDict)"
    with pytest.raises(PluginError, match="must look like 'package.module:function'"):
        lazy_factory("collections.OrderedDict")


def test_state_dict_mismatches_name_each_kind_of_problem() -> None:
    expected = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1), "table": torch.zeros(5)}
    state = {"a": torch.zeros(2), "b": torch.zeros(4), "extra": torch.zeros(1), "table": torch.zeros(9)}
    assert state_dict_mismatches(expected, state, skip=lambda key: key == "table") == [
        "missing c",
        "unexpected extra",
        "wrong shape b [4] (expected [3])",
    ]
    assert state_dict_mismatches(expected, {**expected}) == []
    assert few_names([f"k{i}" for i in range(5)]) == "k0, k1, k2 (+2 more)"
