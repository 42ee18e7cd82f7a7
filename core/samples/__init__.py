"""Small real photos bundled with neckkit (licences in LICENSES.md) for the quick start and tests."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent


def sample_images() -> list[Path]:
    """The bundled photos, sorted by name."""
    return sorted(SAMPLE_DIR.glob("*.jpg"))
