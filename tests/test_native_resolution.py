"""Native-resolution core: a neck with interpolated positions, token grids, and one image region on every path."""

from __future__ import annotations

import json

import pytest
import torch

from neckkit.bitstream.padding import Padding, pad_to_multiple
from neckkit.cli.bench import parse_size
from neckkit.config.paper import NeckConfig
from neckkit.errors import NeckkitError
from neckkit.host.options import build_component
from neckkit.interfaces import grid_options
from neckkit.interfaces.preprocess import resize_cover_crop
from neckkit.neck.checkpoint import NeckShape
from neckkit.neck.regions import latent_box, latent_view, token_grid_of
from neckkit.neck.transform import TransformNeck

TINY = NeckConfig(num_heads=2)


def interpolated_neck(grid: int = 4) -> TransformNeck:
    torch.manual_seed(0)
    return TransformNeck(8, 32, grid, class_token=False, config=TINY, positions="interpolated").eval()


# -- the neck ---------------------------------------------------------------------------------------


def test_an_interpolated_neck_reads_a_latent_of_any_size_one_token_per_cell() -> None:
    neck = interpolated_neck()
    for height, width in ((4, 4), (6, 10), (2, 12)):
        tokens = neck(torch.randn(2, 8, height, width))
        assert tokens.shape == (2, height * width, 32)
    assert neck.class_embedding is None and neck.positions == "interpolated"


def test_interpolated_positions_are_the_table_at_its_own_grid_and_resampled_elsewhere() -> None:
    neck = interpolated_neck()
    assert neck.position_table((4, 4)) is neck.positional_embedding
    with torch.no_grad():
        neck.positional_embedding.copy_(torch.arange(32.0).expand(16, 32))  # the same vector at every cell
    torch.testing.assert_close(neck.position_table((3, 7)), torch.arange(32.0).expand(21, 32))
    with torch.no_grad():  # a table rising down the rows stays ordered after resampling
        neck.positional_embedding.copy_(torch.arange(4.0).repeat_interleave(4)[:, None].expand(16, 32))
    column = neck.position_table((8, 3))[::3, 0]
    assert torch.all(column[1:] >= column[:-1]) and column[0] < column[-1]


def test_a_grid_other_than_the_latents_resamples_the_latent() -> None:
    neck = interpolated_neck()
    y_hat = torch.randn(1, 8, 6, 10)
    assert neck(y_hat, grid=(3, 5)).shape == (1, 15, 32)
    resampled = torch.nn.functional.interpolate(y_hat, size=(3, 5), mode="bicubic", align_corners=False)
    torch.testing.assert_close(neck(y_hat, grid=(3, 5)), neck(resampled))


def test_a_square_neck_refuses_another_grid_and_interpolation_refuses_a_class_token() -> None:
    torch.manual_seed(0)
    square = TransformNeck(8, 32, 4, config=TINY)
    assert square(torch.randn(1, 8, 6, 10)).shape == (1, 17, 32)  # resampled to its square, as before
    with pytest.raises(NeckkitError, match="4x4 token grid only"):
        square.position_table((3, 5))
    with pytest.raises(NeckkitError, match="gives a 4x4 token grid, not \\(3, 5\\)"):
        square(torch.randn(1, 8, 4, 4), grid=(3, 5))
    with pytest.raises(NeckkitError, match="no class token"):
        TransformNeck(8, 32, 4, class_token=True, config=TINY, positions="interpolated")
    with pytest.raises(NeckkitError, match="positions must be one of fixed, interpolated"):
        TransformNeck(8, 32, 4, config=TINY, positions="rotary")


def test_the_checkpoint_shape_keeps_interpolated_positions_and_writes_square_necks_as_before() -> None:
    native = NeckShape.of_neck(interpolated_neck())
    assert json.loads(native.model_dump_json())["positions"] == "interpolated"
    assert NeckShape.model_validate_json(native.model_dump_json()).positions == "interpolated"
    torch.manual_seed(0)
    square = NeckShape.of_neck(TransformNeck(8, 32, 4, config=TINY))
    assert "positions" not in json.loads(square.model_dump_json())
    assert NeckShape.model_validate_json(square.model_dump_json()).positions == "fixed"


# -- regions ----------------------------------------------------------------------------------------


class SquareView:
    """The default VisualEncoder view (CLIP's centre square), without building a model."""

    native_resolution = False
    grid = 24

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        side = min(height, width)
        return (height - side) / 2, (width - side) / 2, side, side


class WholeView(SquareView):
    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        return 0.0, 0.0, height, width


def test_the_latent_box_is_the_centre_square_of_a_landscape_photo_without_the_padding() -> None:
    padding = pad_to_multiple(torch.zeros(1, 3, 400, 600), 64)[1]  # 448 x 640 padded: 24 + 24 rows, 20 + 20 cols
    assert padding == Padding(20, 20, 24, 24)
    rows, cols = 448 // 16, 640 // 16
    # The centre 400 x 400 starts at column 100 + 20 padding = 120 px = cell 7.5 -> 8; rows 24 px -> cell 1.5 -> 2.
    assert latent_box((400, 600), padding, (rows, cols), SquareView()) == (2, 27, 8, 33)
    assert latent_box((400, 600), padding, (rows, cols), WholeView()) == (2, 27, 1, 39)
    assert latent_box((256, 256), (0, 0, 0, 0), (16, 16), SquareView()) == (0, 16, 0, 16)


def test_the_latent_view_is_the_box_and_the_whole_latent_when_nothing_is_cropped() -> None:
    y_hat = torch.randn(1, 8, 28, 40)
    view = latent_view(y_hat, (400, 600), (20, 20, 24, 24), SquareView())
    torch.testing.assert_close(view, y_hat[..., 2:27, 8:33])
    whole = torch.randn(1, 8, 16, 16)
    assert latent_view(whole, (256, 256), (0, 0, 0, 0), SquareView()) is whole
    with pytest.raises(NeckkitError, match="does not tile"):
        latent_view(torch.randn(1, 8, 27, 40), (400, 600), (20, 20, 24, 24), SquareView())


def test_a_square_encoder_gets_no_grid_keyword() -> None:
    assert token_grid_of(SquareView(), (400, 600)) is None
    assert grid_options(SquareView(), None) == {}


@pytest.mark.parametrize("height, width", [(300, 451), (451, 300), (336, 336)])
def test_clip_l_336_neck_path_sees_the_pixels_its_baseline_sees(host, height: int, width: int) -> None:
    """The latent cells the neck reads cover, to within half a 16-px cell, the region CLIP's preprocessing crops."""
    _, encoder = build_component(host, "encoder", "clip-l-336", {"tiny": True})
    padding = pad_to_multiple(torch.zeros(1, 3, height, width), 64)[1]
    rows, cols = (height + padding.top + padding.bottom) // 16, (width + padding.left + padding.right) // 16
    row0, row1, col0, col1 = latent_box((height, width), padding, (rows, cols), encoder)
    top, left, box_h, box_w = encoder.view_box(height, width)
    seen = (row0 * 16 - padding.top, col0 * 16 - padding.left, row1 * 16 - padding.top, col1 * 16 - padding.left)
    for got, want in zip(seen, (top, left, top + box_h, left + box_w), strict=True):
        assert abs(got - want) <= 8
    # What the baseline shows: CLIP's geometric preprocessing is that box, resized to 336.
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    image = torch.stack([rows / 451, cols / 451, 0.5 + 0.4 * torch.sin((rows + cols) / 40)])[None]  # smooth
    crop = image[..., round(top) : round(top + box_h), round(left) : round(left + box_w)]
    shown = encoder.geometric_preprocess(image)
    assert shown.shape[-2:] == (encoder.image_size, encoder.image_size)
    torch.testing.assert_close(shown, encoder.geometric_preprocess(crop), atol=0.02, rtol=0)


# -- bench sizes and crops --------------------------------------------------------------------------


def test_bench_size_is_a_side_or_width_by_height() -> None:
    assert parse_size("256") == (256, 256)
    assert parse_size("768x512") == (512, 768)
    for bad in ("12", "768x", "axb", "1x2x3"):
        with pytest.raises(NeckkitError, match="--size takes a side or WIDTHxHEIGHT"):
            parse_size(bad)


def test_a_cover_crop_has_the_asked_shape_and_keeps_the_centre() -> None:
    image = torch.zeros(1, 3, 100, 300)
    image[..., :, 100:200] = 1.0  # a white centre square
    crop = resize_cover_crop(image, 64, 96)
    assert crop.shape == (1, 3, 64, 96)
    assert crop[..., 32, 48].min() == pytest.approx(1.0) and crop[..., 32, 0].max() < 0.05
