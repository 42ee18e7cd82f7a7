"""Padding to a codec's multiple and cropping back."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from neckkit.bitstream.padding import Padding, crop_padding, pad_to_multiple


@given(height=st.integers(1, 300), width=st.integers(1, 300), multiple=st.sampled_from([1, 16, 64, 256]))
def test_pad_then_crop_is_identity(height: int, width: int, multiple: int) -> None:
    x = torch.rand(1, 3, height, width)
    padded, padding = pad_to_multiple(x, multiple)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - height < multiple and padded.shape[-1] - width < multiple
    assert torch.equal(crop_padding(padded, padding), x)


def test_padding_is_symmetric_and_zero() -> None:
    padded, padding = pad_to_multiple(torch.ones(1, 3, 10, 13), 16)
    assert padding == Padding(left=1, right=2, top=3, bottom=3)
    assert padded[0, 0, :, 0].sum() == 0 and padded[0, 0, 3, 1] == 1


def test_no_padding_returns_the_same_tensor() -> None:
    x = torch.rand(1, 3, 64, 128)
    padded, padding = pad_to_multiple(x, 64)
    assert padded is x and padding == Padding(0, 0, 0, 0)
