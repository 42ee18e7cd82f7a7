"""Odd image files are read right or refused in one line: 16-bit data, EXIF orientation, pixel limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke
from neckkit.bitstream.images import load_image, load_pil_image
from neckkit.bitstream.pixel_limit import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels
from neckkit.config.paper import DataConfig
from neckkit.errors import NeckkitError
from neckkit.training.data import open_image_set


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path: Path) -> None:
    ramp = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)  # 0 .. 65535
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode.startswith("I;16")
    x = load_image(tmp_path / "ramp16.png")
    assert x.shape == (1, 3, 256, 256)
    assert x.mean().item() * 255 == pytest.approx(127.5, abs=0.1)
    assert x[0, 0, 0, 0].item() == 0.0 and x[0, 0, -1, -1].item() == 1.0


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (64, 32), (255, 0, 0))  # stored landscape, red left half, blue right half
    stored.paste((0, 0, 255), (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = load_pil_image(tmp_path / "rotated.jpg")
    assert upright.size == (32, 64)  # shown portrait
    top, bottom = np.asarray(upright)[4, 16], np.asarray(upright)[60, 16]
    assert top[0] > 200 and top[2] < 60  # red on top after a 90-degree clockwise turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_the_pixel_limit_is_checked_before_decoding_and_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 8192 * 8192
    Image.new("RGB", (100, 50)).save(tmp_path / "wide.png")
    monkeypatch.setenv("NECKKIT_MAX_IMAGE_PIXELS", "4999")
    with pytest.raises(NeckkitError, match=r"wide.png is a 100x50 image \(5000 pixels\), more than the 4999 neckkit reads; "
                       "raise NECKKIT_MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "wide.png")
    monkeypatch.setenv("NECKKIT_MAX_IMAGE_PIXELS", "5000")
    assert load_image(tmp_path / "wide.png").shape == (1, 3, 50, 100)
    monkeypatch.setenv("NECKKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(NeckkitError, match="NECKKIT_MAX_IMAGE_PIXELS must be a positive number of pixels, got 'lots'"):
        load_image(tmp_path / "wide.png")


def test_one_long_strip_in_the_data_is_skipped_not_fatal(tmp_path: Path) -> None:
    Image.new("RGB", (300, 300), (0, 128, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (3000, 1), (0, 128, 0)).save(tmp_path / "strip.png")  # 256 x 768000 once resized
    images = open_image_set(tmp_path, DataConfig())
    by_name = {path.name: images[index] for index, path in enumerate(images.paths)}
    assert by_name["strip.png"] is None
    assert by_name["a.png"][0].shape == (3, 256, 256)
    assert len(images.skipped) == 1
    assert "strip.png is 3000x1: resizing its short side to 256 makes 196608000 pixels" in images.skipped[0]


def test_compress_refuses_an_image_over_the_limit_in_one_line(runner, host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (100, 50)).save(tmp_path / "wide.png")
    monkeypatch.setenv("NECKKIT_MAX_IMAGE_PIXELS", "4000")
    result = invoke(runner, host, "compress", "--codec", "tic", "--tiny", str(tmp_path / "wide.png"), "-o", str(tmp_path / "w.nk"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'wide.png'} is a 100x50 image (5000 pixels), more than the 4000 neckkit reads; "
        "raise NECKKIT_MAX_IMAGE_PIXELS to read it"
    ]
    assert not (tmp_path / "w.nk").exists()


def test_a_stray_sub_folder_beside_images_is_refused_not_read_as_labels(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / name)
    (tmp_path / "thumbs").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "thumbs" / "a.png")
    with pytest.raises(NeckkitError) as caught:
        open_image_set(tmp_path)
    assert str(caught.value) == (
        f"data folder {tmp_path} holds both 2 images (e.g. a.png) and 1 sub-folders of images (e.g. thumbs/): a "
        "labelled folder holds only class sub-folders, an unlabelled one only images; move one or the other"
    )
    (tmp_path / "thumbs" / "a.png").unlink()  # an empty sub-folder is no class: unlabelled, both images
    assert len(open_image_set(tmp_path)) == 2


def test_data_loading_starts_at_most_one_worker_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from neckkit.training.data import usable_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert [usable_workers(n) for n in (0, 1, 2, 64)] == [0, 1, 2, 2]
