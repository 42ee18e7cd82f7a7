"""Every built-in codec, on any image file: RGB, grayscale or RGBA, 1x1 up to 700x500.

The decoded latent of the bitstream must equal what analyze() gives for the same padded image:
that equality is what lets a neck trained on analyze() serve real bitstreams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from neckkit.bitstream.images import load_image
from neckkit.bitstream.padding import crop_padding, pad_to_multiple
from neckkit.host.manager import PluginHost

CODECS = ["elic", "tic", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"]


@pytest.fixture(scope="module")
def codecs() -> dict[str, torch.nn.Module]:
    host = PluginHost(env={})
    host.load_builtins()
    registry = host.components("codec")
    return {name: registry.get(name).build(tiny=True).eval() for name in CODECS}


@pytest.mark.parametrize("name", CODECS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 500),
    width=st.integers(1, 700),
    mode=st.sampled_from(["RGB", "L", "RGBA"]),
    seed=st.integers(0, 2**16),
)
def test_bitstream_latent_equals_analysis_for_any_image(
    codecs: dict[str, torch.nn.Module], tmp_path: Path, name: str, height: int, width: int, mode: str, seed: int
) -> None:
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    path = tmp_path / f"{name}-{mode}.png"
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(path)
    x = load_image(path)
    assert x.shape == (1, 3, height, width)
    codec = codecs[name]
    padded, padding = pad_to_multiple(x, codec.pad_multiple)
    with torch.no_grad():
        analysis = codec.analyze(padded)
        decoded = codec.decompress_latent(codec.compress(padded))
        assert torch.equal(decoded, analysis.y_hat)
        assert decoded.shape[-2:] == (padded.shape[-2] // codec.stride, padded.shape[-1] // codec.stride)
        assert crop_padding(codec.synthesize(decoded), padding).shape == x.shape
