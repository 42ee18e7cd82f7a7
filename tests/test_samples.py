"""The bundled sample photos: present, readable, and each with its licence noted."""

from __future__ import annotations

from neckkit.bitstream.images import load_image
from neckkit.samples import SAMPLE_DIR, sample_images


def test_four_real_photos_ship_with_the_package() -> None:
    assert [path.name for path in sample_images()] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    sizes = {path.stem: tuple(load_image(path).shape) for path in sample_images()}
    assert sizes == {
        "astronaut": (1, 3, 512, 512),
        "chelsea": (1, 3, 300, 451),
        "coffee": (1, 3, 400, 600),
        "rocket": (1, 3, 427, 640),
    }


def test_every_photo_has_its_licence_noted() -> None:
    licences = (SAMPLE_DIR / "LICENSES.md").read_text()
    for path in sample_images():
        row = next(line for line in licences.splitlines() if line.startswith(f"| `{path.name}`"))
        assert "public domain" in row or "CC0" in row
