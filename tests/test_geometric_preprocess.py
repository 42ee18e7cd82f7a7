"""Every encoder's ``geometric_preprocess`` is the region its ``preprocess`` shows: the crop a benchmark compresses."""

from __future__ import annotations

import pytest
import torch

from neckkit.host.options import build_component
from neckkit.host.testing import host_for_tests
from neckkit.interfaces.preprocess import preprocessing, resize_center_crop, resize_square
from neckkit.plugins.encoders.openclip import build_openclip

ENCODERS = ("clip-l", "clip-l-336", "eva02-l", "eva-g-blip2")
NATIVE_RESOLUTION_ENCODERS = ("qwen3-vl-vit", "qwen2.5-vl-vit")


@pytest.fixture(scope="module")
def host():
    return host_for_tests()


def photo_like(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("size", [(300, 451), (427, 640), (512, 512), (90, 200)])
def test_preprocess_of_the_region_equals_preprocess_of_the_image(host, name: str, size: tuple[int, int]) -> None:
    _, encoder = build_component(host, "encoder", name, {"tiny": True})
    image = photo_like(*size)
    region = encoder.geometric_preprocess(image)
    assert region.shape == (1, 3, encoder.image_size, encoder.image_size)
    assert 0.0 <= float(region.min()) and float(region.max()) <= 1.0
    torch.testing.assert_close(encoder.preprocess(region), encoder.preprocess(image), rtol=0, atol=0)


@pytest.mark.parametrize("name", NATIVE_RESOLUTION_ENCODERS)
@pytest.mark.parametrize("size", [(300, 451), (427, 640), (512, 512), (90, 200)])
def test_native_resolution_encoders_show_the_whole_image_at_its_input_size(host, name: str, size: tuple[int, int]) -> None:
    """The region is the processor's resize clamped to [0, 1]: ``preprocess`` of it equals ``preprocess`` of the
    image bitwise wherever the bicubic resize stayed in [0, 1], and differs by the clamped overshoot elsewhere."""
    from torchvision.transforms.v2 import functional as tvF

    _, encoder = build_component(host, "encoder", name, {"tiny": True})
    image = photo_like(*size)
    region = encoder.geometric_preprocess(image)
    assert region.shape == (1, 3, *encoder.input_size(*size)) and encoder.view_box(*size) == (0.0, 0.0, *size)
    resized = tvF.resize(image, list(encoder.input_size(*size)), interpolation=tvF.InterpolationMode.BICUBIC,
                         antialias=True)
    torch.testing.assert_close(region, resized.clamp(0.0, 1.0), rtol=0, atol=0)
    inside = (resized >= 0) & (resized <= 1)
    assert inside.all() == (region.shape[-2:] == size)  # resized noise rings, so the clamp matters
    ours, theirs = encoder.preprocess(region), encoder.preprocess(image)
    torch.testing.assert_close(ours[inside], theirs[inside], rtol=0, atol=0)
    std = torch.tensor(encoder.processor.std).view(1, 3, 1, 1).expand_as(resized)
    overshoot = (resized - resized.clamp(0.0, 1.0)) / std
    torch.testing.assert_close(theirs - ours, overshoot, rtol=0, atol=1e-5)
    smooth = 0.25 + 0.5 * torch.nn.functional.interpolate(image, scale_factor=1 / 8, mode="area")
    smooth = torch.nn.functional.interpolate(smooth, size=size, mode="bilinear")  # no edges: no overshoot
    torch.testing.assert_close(encoder.preprocess(encoder.geometric_preprocess(smooth)), encoder.preprocess(smooth),
                               rtol=0, atol=0)


def test_squashing_and_cropping_encoders_show_different_regions(host) -> None:
    image = photo_like(300, 600)  # 2:1: a crop keeps the middle half, a squash the whole width
    _, clip = build_component(host, "encoder", "clip-l", {"tiny": True})
    _, blip = build_component(host, "encoder", "eva-g-blip2", {"tiny": True})
    torch.testing.assert_close(clip.geometric_preprocess(image), resize_center_crop(image, 224, 224), rtol=0, atol=0)
    torch.testing.assert_close(blip.geometric_preprocess(image), resize_square(image, blip.image_size), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["neckkit", "paper"])
def test_open_clip_squash_mode_squashes(mode: str) -> None:
    encoder = build_openclip(model="ViT-B-16", tiny=True)
    encoder.resize_mode = "squash"
    image = photo_like(120, 300)
    with preprocessing(mode):
        region = encoder.geometric_preprocess(image)
        torch.testing.assert_close(encoder.preprocess(region), encoder.preprocess(image), rtol=0, atol=0)
    assert region.shape[-2:] == (encoder.image_size, encoder.image_size)
