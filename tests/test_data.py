"""Training images: ImageNet-style and named class folders, plain folders, the bundled photos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from neckkit import NeckkitError
from neckkit.bitstream.images import save_image
from neckkit.config import DataConfig
from neckkit.training.data import collate_readable, imagenet_wordnet_ids, open_image_set


def _write(folder: Path, *names: str, size: tuple[int, int] = (40, 60)) -> None:
    for name in names:
        save_image(torch.rand(1, 3, *size), folder / name)


def test_imagenet_wordnet_ids_are_in_class_index_order() -> None:
    wnids = imagenet_wordnet_ids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and wnids[-1] == "n15075141"


def test_wordnet_folders_map_to_imagenet_indices_and_names(tmp_path: Path) -> None:
    _write(tmp_path / "n01440764", "a.png")
    _write(tmp_path / "n15075141", "b.png", "c.jpg")
    images = open_image_set(tmp_path)
    assert images.labelled and images.labels == [0, 999, 999]
    assert len(images.class_names) == 1000 and images.class_names[0] == "tench"
    assert images.class_names[999] == "toilet paper"


def test_other_folder_names_are_the_class_names(tmp_path: Path) -> None:
    _write(tmp_path / "tabby_cat", "a.png")
    _write(tmp_path / "espresso", "b.png")
    images = open_image_set(tmp_path)
    assert images.class_names == ["espresso", "tabby cat"] and images.labels == [0, 1]


def test_plain_folder_is_unlabelled(tmp_path: Path) -> None:
    _write(tmp_path, "a.png", "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = open_image_set(tmp_path)
    assert not images.labelled and [p.name for p in images.paths] == ["a.png", "b.png"]
    image, label = images[0]
    assert image.shape == (3, 256, 256) and label == -1


def test_default_is_the_bundled_photos_cropped_as_in_the_paper() -> None:
    images = open_image_set(None, DataConfig(resize=64, crop=48))
    assert len(images) == 4 and not images.labelled
    image, _ = images[0]
    assert image.shape == (3, 48, 48) and 0 <= image.min() and image.max() <= 1


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    _write(tmp_path, "a.png", "c.png")
    (tmp_path / "b.png").write_bytes(b"broken")
    images = open_image_set(tmp_path, DataConfig(resize=32, crop=32))
    batches = list(DataLoader(images, batch_size=3, collate_fn=collate_readable))
    [(batch, labels, skipped)] = batches
    assert batch.shape == (2, 3, 32, 32) and labels.tolist() == [-1, -1] and skipped == 1
    assert len(images.skipped) == 1 and "b.png is not a readable image" in images.skipped[0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [("missing", "does not exist"), ("empty", "holds no images"), ("bad-wnid", "n99999999 is not an ImageNet-1k WordNet id")],
)
def test_bad_data_folders_are_one_clear_error(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "data"
    if setup == "empty":
        folder.mkdir()
    elif setup == "bad-wnid":
        _write(folder / "n99999999", "a.png")
    with pytest.raises(NeckkitError, match=message):
        open_image_set(folder)
