"""Image files in and out: modes converted to RGB, clear errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neckkit import NeckkitError
from neckkit.bitstream.images import find_images, load_image, save_image, tensor_to_image


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("RGB", (255, 0, 0), (1.0, 0.0, 0.0)),
        ("L", 51, (0.2, 0.2, 0.2)),
        ("RGBA", (0, 0, 255, 255), (0.0, 0.0, 1.0)),
        ("RGBA", (0, 0, 0, 0), (1.0, 1.0, 1.0)),  # transparent over white
        ("LA", (0, 255), (0.0, 0.0, 0.0)),
        ("CMYK", (0, 0, 0, 0), (1.0, 1.0, 1.0)),
    ],
)
def test_every_mode_loads_as_rgb_in_unit_range(tmp_path: Path, mode: str, color, expected) -> None:
    path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    Image.new(mode, (5, 3), color).save(path)
    x = load_image(path)
    assert x.shape == (1, 3, 3, 5) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 1, 2], torch.tensor(expected))


def test_png_round_trip_is_exact_on_8_bit_values(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (1, 3, 7, 9)).float() / 255
    path = save_image(x, tmp_path / "out" / "image.png")
    assert torch.equal(load_image(path), x)
    assert [item.name for item in path.parent.iterdir()] == ["image.png"]  # no temporary left


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_non_image_files_are_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(NeckkitError, match=r"photo.png is not a readable image") as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_missing_image_says_so(tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_unknown_output_suffix_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match=r"unknown image suffix '.xyz'"):
        save_image(torch.zeros(1, 3, 2, 2), tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.png"
    save_image(torch.ones(1, 3, 2, 2), path)
    before = path.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.zeros(1, 3, 2, 2), path)
    assert path.read_bytes() == before
    assert [item.name for item in tmp_path.iterdir()] == ["keep.png"]


def test_tensor_to_image_rounds_and_clamps() -> None:
    x = torch.tensor([[[[-0.5, 0.5 / 255, 1.5 / 255, 2.0]]]]).expand(1, 3, 1, 4)
    assert np.asarray(tensor_to_image(x))[0, :, 0].tolist() == [0, 0, 2, 255]


def test_find_images_lists_image_files_recursively(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "sub/c.webp", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == ["a.JPG", "b.png", "sub/c.webp"]
